"""What every distributed entry point shares: Ray present and connected, bounded waits,
actors cleaned up."""

from __future__ import annotations

import contextlib
import time
from typing import Any
from collections.abc import Iterable, Iterator

from llmrec._checks import check_real

#: Seconds a single wait on the cluster may take unless the caller says otherwise.
DEFAULT_TIMEOUT = 600.0


def require_ray() -> Any:
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
    return None if timeout is None else check_real(timeout, "timeout", low=0.0, low_open=True)


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
def killed_on_error(actors: list[Any]) -> Iterator[list[Any]]:
    """Yield ``actors`` (a list the body may append to); kill them all if the body raises."""
    try:
        yield actors
    except BaseException:
        kill(actors)
        raise


def get_each(refs: list[Any], timeout: float | None, names: list[str]) -> list[Any]:
    """``ray.get`` of each ref in turn, all within one ``timeout``; a task that raised
    re-raises its exception's type with ``names[i]`` in front of the message (Ray's own
    actor errors pass through unchanged, for callers that recover from them)."""
    ray = require_ray()
    deadline = None if timeout is None else time.monotonic() + timeout
    out = []
    for ref, name in zip(refs, names):
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            out.append(ray.get(ref, timeout=left))
        except ray.exceptions.GetTimeoutError as exc:
            raise TimeoutError(f"{name}: no answer from the Ray cluster within {timeout} s "
                               "(see the timeout argument)") from exc
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if not isinstance(cause, Exception):
                raise RuntimeError(f"{name} failed: {exc}") from exc
            try:
                renamed = type(cause)(f"{name} failed: {cause}")
            except Exception:  # an exception type with another constructor
                renamed = RuntimeError(f"{name} failed: {type(cause).__name__}: {cause}")
            raise renamed from cause
    return out


def resolve_timeout(timeout: float | None) -> float:
    """A caller's timeout where None means :data:`DEFAULT_TIMEOUT` (so no wait is unbounded)."""
    return DEFAULT_TIMEOUT if timeout is None else check_real(timeout, "timeout", low=0.0, low_open=True)


def actor_died_message(exc: BaseException) -> str:
    """The first line of a Ray actor-death error, for an exception message of our own."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


_ACTOR_CLASSES: dict[type, Any] = {}


def actor_class(cls: type) -> Any:
    """``ray.remote(cls)``, made once per class (on first use, so importing needs no Ray)."""
    remote = _ACTOR_CLASSES.get(cls)
    if remote is None:
        import ray

        remote = _ACTOR_CLASSES[cls] = ray.remote(cls)
    return remote
