"""``llmrec serve``: a saved Recommender behind HTTP (the ``serve`` extra: FastAPI, uvicorn,
prometheus-client).

* :func:`create_app` — the application (endpoints in :mod:`.app`, bodies and their caps
  in :mod:`.schemas` / :mod:`.limits`, the key in :mod:`.auth`, metrics in
  :mod:`.metrics`, the model and its reload in :mod:`.holder`, the write log in
  :mod:`.journal`, the page in ``page.html``);
* :func:`run` — the server (uvicorn, one process, requests on threads; SIGHUP reloads).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "run"]


def _require() -> None:
    missing = []
    for name in ("fastapi", "uvicorn", "prometheus_client", "orjson"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"llmrec serve needs {', '.join(missing)}: pip install 'llmrec[serve]'")


def create_app(*args: Any, **kwargs: Any) -> Any:
    """See :func:`llmrec.serve.app.create_app`."""
    _require()
    from llmrec.serve.app import create_app as create

    return create(*args, **kwargs)


def run(*args: Any, **kwargs: Any) -> int:
    """See :func:`llmrec.serve.server.run`."""
    _require()
    from llmrec.serve.server import run as serve

    return serve(*args, **kwargs)
