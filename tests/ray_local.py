"""A local Ray for the tests of llmrec.distributed: started on loopback only, shut down
at the end of the module, and a count of the actors still alive.

Ray binds to the machine's network address unless it has none but loopback, so these
tests run only inside a private network namespace (``unshare -n sh -c 'ip link set lo
up && pytest ...'``) and skip elsewhere. ``address="local"`` makes ``ray.init`` start a
new cluster even where another process has left its address in /tmp/ray.
"""

from __future__ import annotations

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


def start_local(ray) -> None:
    """Start a local Ray (if none is running in this process)."""
    require_loopback_only()
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=NUM_CPUS, include_dashboard=False,
                 log_to_driver=False)


def live_actors(ray, class_name: str) -> int:
    """How many actors of ``class_name`` are alive now."""
    from ray._private import state

    return sum(1 for actor in state.actors().values()
               if actor["ActorClassName"] == class_name and actor["State"] != "DEAD")


def wait_until_no_live_actors(ray, class_name: str, seconds: float = 30.0) -> int:
    """Poll (ray.kill is asynchronous) until no ``class_name`` actor lives, at most
    ``seconds``; return how many still live."""
    deadline = time.monotonic() + seconds
    while True:
        alive = live_actors(ray, class_name)
        if alive == 0 or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)
