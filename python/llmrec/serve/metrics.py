"""Prometheus metrics (``GET /metrics``, text format): requests by endpoint and status,
latency histograms by endpoint, the sizes of the batches reads were answered in
(:mod:`.batching`), and the model's version, items and users.

Each server has its own registry (several apps in one process, as in the tests, do not
share counters). Endpoint labels are the route paths, or "other" for paths the server
does not have, and methods the standard ones or "other" (a scan of random URLs or
methods adds no label values).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class Metrics:
    """The server's registry; ``state()`` returns (version, items, users) when scraped."""

    def __init__(self, state: Callable[[], tuple[int, int, int]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("llmrec_requests", "HTTP requests by endpoint and status",
                                ("endpoint", "method", "status"), registry=self.registry)
        self.latency = Histogram("llmrec_request_seconds", "request latency (seconds)",
                                 ("endpoint",), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.reloads = Counter("llmrec_reloads", "model reloads by outcome", ("outcome",),
                               registry=self.registry)
        self.batch_sizes = Histogram("llmrec_read_batch_size", "requests answered by one call of the model",
                                     ("endpoint",), buckets=BATCH_BUCKETS, registry=self.registry)
        self.writes = Counter("llmrec_writes", "writes applied and logged, by operation", ("op",),
                              registry=self.registry)
        for name, doc, i in (("llmrec_model_version", "served model version (1 at start, +1 per reload)", 0),
                             ("llmrec_items", "items in the served catalogue", 1),
                             ("llmrec_users", "users known to the served model", 2)):
            Gauge(name, doc, registry=self.registry).set_function(_field(state, i))

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _field(state: Callable[[], tuple[int, int, int]], i: int) -> Callable[[], float]:
    return lambda: float(state()[i])


class MetricsMiddleware:
    """ASGI middleware counting every HTTP request and timing it."""

    def __init__(self, app: Any, *, metrics: Metrics, paths: Iterable[str]) -> None:
        self.app, self.metrics, self.paths = app, metrics, frozenset(paths)
        self._counts: dict[tuple[str, str, int], Any] = {}  # labelled children: a lookup
        self._latency: dict[str, Any] = {}                  # each costs microseconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in self.paths else "other"
        method = scope["method"] if scope["method"] in METHODS else "other"
        status = [500]

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            latency = self._latency.get(endpoint)
            if latency is None:
                latency = self._latency[endpoint] = self.metrics.latency.labels(endpoint)
            latency.observe(elapsed)
            key = (endpoint, method, status[0])
            count = self._counts.get(key)
            if count is None:
                count = self._counts[key] = self.metrics.requests.labels(endpoint, method, str(status[0]))
            count.inc()


__all__ = ["BATCH_BUCKETS", "LATENCY_BUCKETS", "METHODS", "Metrics", "MetricsMiddleware"]
