"""What every distributed entry point shares: Ray present and connected, bounded waits,
actors cleaned up."""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

#: Seconds a single wait on the cluster may take unless the caller says otherwise.
DEFAULT_TIMEOUT = 600.0


def require_ray():
    """Return the ``ray`` module, connected; raise a clear error where it cannot be used."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("llmrec.distributed needs Ray: pip install 'llmrec[ray]'") from exc
    if not ray.is_initialized():
        raise RuntimeError(
            "llmrec.distributed needs a running Ray: call ray.init() (one machine) or "
            "ray.init(address='auto') (a cluster) first")
    return ray


def check_timeout(timeout: float | None) -> float | None:
    """Validate a caller's timeout: None (wait forever) or a positive finite number of seconds."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (0 < timeout < float("inf")):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    return float(timeout)


def get(refs: Any, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
    """``ray.get`` with a timeout; a task that raised re-raises its own exception here."""
    ray = require_ray()
    try:
        return ray.get(refs, timeout=timeout)
    except ray.exceptions.GetTimeoutError as exc:
        raise TimeoutError(f"the Ray cluster did not answer within {timeout} s") from exc
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        raise cause from None


def kill(actors: Iterable[Any]) -> None:
    """Kill actors, ignoring ones that are already gone."""
    ray = require_ray()
    for actor in actors:
        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)


@contextlib.contextmanager
def killed_on_error(actors: list) -> Iterator[list]:
    """Yield ``actors`` (a list the body may append to); kill them all if the body raises."""
    try:
        yield actors
    except BaseException:
        kill(actors)
        raise


def resolve_timeout(timeout: float | None) -> float:
    """A caller's timeout where None means :data:`DEFAULT_TIMEOUT` (so no wait is unbounded)."""
    return DEFAULT_TIMEOUT if timeout is None else check_timeout(timeout)


def actor_died_message(exc: BaseException) -> str:
    """The first line of a Ray actor-death error, for an exception message of our own."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
