"""A local Ray for the tests of llmrec.distributed: started on loopback only, shut down
at the end of the module, and a count of the actors still alive.

Ray binds to the machine's network address unless it has none but loopback, so these
tests run only inside a private network namespace (``unshare -n sh -c 'ip link set lo
up && pytest ...'``) and skip elsewhere. ``address="local"`` makes ``ray.init`` start a
new cluster even where another process has left its address in /tmp/ray.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

NUM_CPUS = 2


def require_loopback_only() -> None:
    """Skip unless the only network interface is loopback."""
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        pytest.skip("Ray tests run only in a network namespace with loopback alone "
                    f"(found interfaces {names}): unshare -n sh -c 'ip link set lo up && pytest ...'")


def start_local(ray) -> str:
    """Start a local Ray if none is running in this process; return the id of the
    running session (a new one after every restart)."""
    require_loopback_only()
    if not ray.is_initialized():
        # Workers import the tests' helper modules too (objects of theirs travel).
        tests_dir = os.path.dirname(os.path.abspath(__file__))
        path = os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p)
        ray.init(address="local", num_cpus=NUM_CPUS, include_dashboard=False,
                 log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    return ray.get_runtime_context().get_node_id()


def live_actors(ray, class_name: str, ignore: frozenset = frozenset()) -> int:
    """How many actors of ``class_name`` are alive now, leaving out the ids in ``ignore``
    (hex actor ids of actors a fixture keeps)."""
    from ray._private import state

    return sum(1 for actor_id, actor in state.actors().items()
               if actor["ActorClassName"] == class_name and actor["State"] != "DEAD"
               and actor_id not in ignore)


def actor_ids(handles) -> frozenset:
    """Hex ids of actor handles, for ``ignore``."""
    return frozenset(handle._actor_id.hex() for handle in handles)


def wait_until_no_live_actors(ray, class_name: str, seconds: float = 30.0,
                              ignore: frozenset = frozenset()) -> int:
    """Poll (ray.kill is asynchronous) until no ``class_name`` actor lives, at most
    ``seconds``; return how many still live."""
    deadline = time.monotonic() + seconds
    while True:
        alive = live_actors(ray, class_name, ignore)
        if alive == 0 or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)
