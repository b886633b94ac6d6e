"""GET /metrics: the service's counters in the Prometheus text format, through `prometheus_client`, each app with a
registry of its own (two services in one process never share counts).

    finetune_http_requests_total{route,method,status}       requests answered (route: the path template, e.g.
                                                            /v2/models/{name}/infer; "unmatched" for unknown paths)
    finetune_http_request_duration_seconds{route}          request latency (histogram)
    finetune_batch_inputs                                  inputs per model call (histogram of dynamic batches)
    finetune_texts_processed_total                         inputs (texts or sentences) predicted
    finetune_queue_depth                                   requests waiting for a batch
    finetune_model_load_seconds                            how long loading the model took (serve.py measures it)

Tokens are not counted: how an input becomes tokens is the task's (windows, words), and serving knows no task.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from utils.serving.batching import DynamicBatcher

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServiceMetrics:
    """The metrics of one app, in its own registry; the batcher reports every model call's size to it."""

    def __init__(self, batcher: DynamicBatcher, load_seconds: float | None = None):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "finetune_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "finetune_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by route template.",
            ["route"],
            registry=self.registry,
        )
        self.batch_inputs = Histogram(
            "finetune_batch_inputs", "Inputs per model call.", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.texts = Counter(
            "finetune_texts_processed", "Inputs (texts or sentences) predicted.", registry=self.registry
        )
        Gauge("finetune_queue_depth", "Requests waiting for a batch.", registry=self.registry).set_function(
            batcher.waiting
        )
        load = Gauge("finetune_model_load_seconds", "Seconds taken to load the model.", registry=self.registry)
        if load_seconds is not None:
            load.set(load_seconds)
        batcher.observers.append(self.batch_ran)

    def batch_ran(self, inputs: int) -> None:
        self.batch_inputs.observe(inputs)
        self.texts.inc(inputs)


def route_of(app: FastAPI, scope: Scope) -> str:
    """The path template of the route `scope` reaches (few values, whatever the paths asked for)."""
    partial = None
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", "unmatched")
        if match == Match.PARTIAL and partial is None:
            partial = getattr(route, "path", None)  # the path matches, the method does not (a 405)
    return partial or "unmatched"


class MetricsMiddleware:
    """Counts every HTTP request by route, method and status, and times it (plain ASGI: streaming is untouched)."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, metrics: ServiceMetrics):
        self.app, self.fastapi_app, self.metrics = app, fastapi_app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500  # an exception that escapes is answered 500 further out

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_of(self.fastapi_app, scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def add_metrics(app: FastAPI, batcher: DynamicBatcher, load_seconds: float | None = None) -> ServiceMetrics:
    """GET /metrics on `app`, and the middleware that counts its requests."""
    metrics = ServiceMetrics(batcher, load_seconds)
    app.add_middleware(MetricsMiddleware, fastapi_app=app, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def exposition() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
