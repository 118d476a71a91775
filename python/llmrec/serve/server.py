"""Running the application: uvicorn in this process, requests on a thread pool, SIGHUP
to reload the model directory."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import uvicorn

from llmrec.serve.app import create_app
from llmrec.serve.auth import load_api_key, readable_by_others
from llmrec.serve.holder import CHECKPOINT_EVERY
from llmrec.serve.memory import map_large_blocks

log = logging.getLogger("llmrec.serve")


def run(model_dir: Any, *, host: str = "127.0.0.1", port: int = 8000, workers: int | None = None,
        api_key_file: Any = None, encoder: Any = "saved", log_level: str = "info",
        checkpoint_every: int | None = CHECKPOINT_EVERY) -> int:
    """Serve the model saved in ``model_dir`` until interrupted. ``workers``: reads
    served at once, on threads of this one process (None: two per core; the native work
    releases the GIL, and one process keeps one model, one write log and one write
    order). uvicorn runs on uvloop and httptools where they are installed (the ``serve``
    extra installs them). ``checkpoint_every``: write-log records after which the model is
    saved into ``model_dir`` with an empty log (None: never). Returns 0."""
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api_key = None
    if api_key_file is not None:
        api_key = load_api_key(api_key_file)
        if readable_by_others(api_key_file):
            log.warning("the api key file %s can be read by other users", api_key_file)
    else:
        log.warning("no --api-key-file: writes (/events, /items) and /admin/* are refused")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: reachable beyond this machine", host)
    map_large_blocks()  # before the model is loaded: resident memory flat over reloads
    app = create_app(Path(model_dir), api_key=api_key, encoder=encoder, threads=workers,
                     checkpoint_every=checkpoint_every)
    holder = app.state.holder

    def reload_in_background(_signum: int, _frame: Any) -> None:
        def reload() -> None:
            try:
                holder.reload()
                app.state.metrics.reloads.labels("ok").inc()
            except Exception:  # noqa: BLE001 - logged; the old model stays
                app.state.metrics.reloads.labels("failed").inc()
                log.exception("reload on SIGHUP failed; still serving version %s", holder.version)

        threading.Thread(target=reload, name="llmrec-reload", daemon=True).start()

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, reload_in_background)
    # No proxy headers: the server does not use the client's address, and reading
    # X-Forwarded-* on every request costs CPU for nothing.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            server_header=False, proxy_headers=False)
    uvicorn.Server(config).run()
    return 0


__all__ = ["run"]
