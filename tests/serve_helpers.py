"""Shared pieces of the server tests: a small fitted model saved to a directory, a real
uvicorn server on 127.0.0.1 (in a thread, or as a subprocess), bounded waits."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# Every server test module imports this first: without the [serve] extra it skips whole.
pytest.importorskip("fastapi", reason="the [serve] extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the [serve] extra (uvicorn) is not installed")
pytest.importorskip("prometheus_client", reason="the [serve] extra (prometheus-client) is not installed")
import httpx  # noqa: E402

from llmrec import Recommender  # noqa: E402

from recommender_helpers import WordEncoder, small_data  # noqa: E402

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
START_TIMEOUT_S = 60.0


def fit_small(encoder=True, n_users: int = 200, n_items: int = 150) -> tuple[Recommender, tuple]:
    data = small_data(n_users, n_items)
    interactions, items, _ = data
    rec = Recommender(encoder=WordEncoder() if encoder else None, random_state=0, validation=0.0,
                      regularization=10.0, factors=16, iterations=4, num_threads=1)
    return rec.fit(interactions, items=items), data


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def thread_server(app):
    """``app`` served by uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn

    sock = free_socket()
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        wait_healthy(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive(), "the test server did not stop"


def wait_healthy(url: str, process: subprocess.Popen | None = None) -> dict:
    deadline = time.monotonic() + START_TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            response = httpx.get(f"{url}/health", timeout=2.0)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError as error:
            last = error
        time.sleep(0.1)
    raise AssertionError(f"the server at {url} did not answer in {START_TIMEOUT_S} s ({last})")


def start_cli_server(model_dir: Path, key_file: Path, log_path: Path,
                     *options: str) -> tuple[subprocess.Popen, str]:
    """``python -m llmrec serve`` (with ``options``) on a free port of 127.0.0.1; returns
    (process, url)."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # the server binds it again at once (a clash fails the start, not the test's checks)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "llmrec", "serve", str(model_dir), "--port",
                                    str(port), "--api-key-file", str(key_file), *options], stdout=out,
                                   stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
    except BaseException:
        process.kill()
        process.wait(30)
        raise
    return process, url


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(30)


__all__ = ["AUTH", "KEY", "fit_small", "start_cli_server", "stop", "thread_server", "wait_healthy"]
