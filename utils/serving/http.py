"""The HTTP service of `serve.py`: FastAPI on uvicorn, in front of one `Predictor` and a `DynamicBatcher`.

    POST /predict   {"texts": [...]}, or for models that take pre-split words {"tokens": [[...], ...]}; optional
                    "document_ids" (one per input: document context) and, for models of sentence pairs,
                    "text_pairs". Which of these a model takes is its task's (`task.serving.input_kinds`).
                    Answers {"results": [...]}, each result the line predict.py writes for it (the task's).
    GET  /health    {"status": "ok", batching counters}
    GET  /info      task, labels, base model, backend, settings and limits
    GET  /          a page to paste text into and see the entities highlighted, or the label probabilities as bars
    GET  /docs      the OpenAPI documentation (/openapi.json): Swagger UI from the installed fastapi-offline package,
                    so it works with no network (FastAPI's own /docs loads it from a CDN); /redoc likewise
    GET  /metrics   Prometheus counters (utils/serving/metrics.py)
    /v2/...         the Open Inference Protocol, KServe v2 REST (utils/serving/open_inference.py)

Every error is a JSON object {"error": message, ...} with a 4xx status: 400 for a body that is not JSON (nor valid
Unicode text: a lone surrogate; nor nested deeper than the parser goes), 413 for more texts, characters or bytes than
the limits (the answer says which limit), 415 for a Content-Type other than JSON, 422 for JSON of the wrong shape, 503
once the service is stopping; a failure inside the model is a 500 for that request only. The body is read up to its
byte limit and no further. Neither /info nor /openapi.json names a path of the machine: the model is named by its
directory's basename, a base model given as a local path by its basename.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException

from utils.serving.batching import DynamicBatcher
from utils.serving.metrics import add_metrics
from utils.serving.open_inference import add_open_inference_routes
from utils.serving.requests import KIND_FIELDS, Limits, RequestError, answer_job, parse_job, request_schema

logger = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page.html")


def error_response(status: int, message: str, **details: Any) -> JSONResponse:
    return JSONResponse({"error": message, **details}, status_code=status)


def model_card_base(directory: str) -> str | None:
    """The `base_model:` of the run's model card (README.md front matter), if any."""
    for folder in (Path(directory), Path(directory).parent):
        card = folder / "README.md"
        if card.is_file():
            lines = card.read_text(encoding="utf-8", errors="replace").splitlines()
            if lines and lines[0].strip() == "---":
                for line in lines[1:]:
                    if line.strip() == "---":
                        break
                    if line.startswith("base_model:"):
                        return line.split(":", 1)[1].strip() or None
    return None


#: A path of this machine, as a config's `_name_or_path` or a model card may hold one (POSIX, ~, or a Windows drive).
LOCAL_PATH = re.compile(r"^(/|~|\.{1,2}/|[A-Za-z]:[\\/]|\\\\)")


def public_name(name: str | None) -> str | None:
    """A model name as the service may show it: a Hub id as it is, a local path by its last part (a client has no use
    for the server's directories, and should not learn them)."""
    if not name:
        return None
    if LOCAL_PATH.match(name) or os.path.isdir(name):
        return Path(name.rstrip("/\\").replace("\\", "/")).name or None
    return name


def service_info(predictor, directory: str, limits: Limits, model_name: str | None = None) -> dict[str, Any]:
    """What /info answers: the model, its settings (the shared ones and the task's), and the service's limits."""
    kinds = predictor.task.serving.input_kinds
    return {
        "task": predictor.task.name,
        "labels": list(predictor.labels.names),
        "inputs": [field for kind, field in KIND_FIELDS.items() if kind in kinds],
        "base_model": public_name(model_card_base(directory) or getattr(predictor.config, "_name_or_path", None)),
        "backend": predictor.backend,
        "batch_dependent": predictor.batch_dependent,
        "model": model_name or Path(directory).resolve().name,
        "device": str(predictor.device),
        "settings": predictor.settings(),
        "limits": {
            "max_texts_per_request": limits.max_texts,
            "max_chars_per_text": limits.max_chars,
            "max_body_bytes": limits.max_body_bytes,
            "max_batch_size": limits.max_batch_size,
            "max_wait_ms": limits.max_wait_ms,
            "shutdown_grace_seconds": limits.shutdown_grace_seconds,
        },
    }


# ---------------------------------------------------------------- the app


ERROR_RESPONSES = {
    status: {"description": description, "content": {"application/json": {"example": {"error": example}}}}
    for status, description, example in (
        (400, "The body is not JSON.", "the body is not valid JSON (Expecting value at line 1 column 1)."),
        (413, "Over a limit (texts, characters, bytes).", "300 texts; the limit is 256 per request."),
        (415, "A Content-Type other than JSON.", "Content-Type 'text/plain': the body must be JSON, sent as ..."),
        (422, "JSON of the wrong shape.", "'texts[0]' must be a string, got int."),
        (503, "Shutting down.", "the service is shutting down"),
    )
}


def create_app(
    predictor,
    directory: str,
    limits: Limits | None = None,
    model_name: str | None = None,
    load_seconds: float | None = None,
) -> FastAPI:
    """The service for `predictor` (loaded from `directory`, in `load_seconds`): its own routes, the Open Inference
    Protocol's for the model `model_name` (default: the directory's basename) and /metrics."""
    limits = limits or Limits()
    model_name = model_name or Path(directory).resolve().name
    batcher = DynamicBatcher(predictor, limits.max_batch_size, limits.max_wait_ms)
    info = service_info(predictor, directory, limits, model_name)
    page = PAGE.read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        logger.info("Serving %s (%s, %s backend)", directory, predictor.task.name, predictor.backend)
        yield
        await batcher.stop()  # uvicorn has finished the requests in flight by now
        logger.info("Stopped after %s", json.dumps(batcher.stats.as_dict()))

    app = FastAPIOffline(  # FastAPI, with Swagger UI and ReDoc served from the installed package (no CDN)
        title="finetune-kit prediction service",
        version="1",
        lifespan=lifespan,
        description=f"{info['task']} model `{info['model']}` ({predictor.backend} backend). "
        'POST /predict with {"texts": [...]}; every result is the line predict.py writes for it.',
    )
    app.state.batcher = batcher
    app.state.metrics = add_metrics(app, batcher, load_seconds)
    add_open_inference_routes(app, predictor, batcher, limits, model_name)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return error_response(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        logger.exception("Request to %s failed", request.url.path)
        return error_response(500, f"internal error: {type(err).__name__}")

    @app.post(
        "/predict",
        responses=ERROR_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request_schema(limits, predictor.task)}},
            }
        },
    )
    async def predict(request: Request) -> JSONResponse:
        """One result per input, in order: what predict.py writes for each (entities, or label and probabilities)."""
        try:
            results = await answer_job(request, batcher, limits, lambda body: parse_job(body, limits, predictor.task))
        except RequestError as err:
            return JSONResponse(err.body, status_code=err.status)
        return JSONResponse({"results": results})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Whether the service is up, and its batching counters."""
        return {"status": "ok", **batcher.stats.as_dict()}

    @app.get("/info")
    async def model_info() -> dict[str, Any]:
        """The task, labels, base model, backend, settings and limits."""
        return info

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    return app


def serve(
    predictor,
    directory: str,
    sock: socket.socket,
    limits: Limits,
    log_level: str = "info",
    access_log: bool = False,
    http: str = "auto",
    loop: str = "auto",
    model_name: str | None = None,
    load_seconds: float | None = None,
) -> None:
    """Run the service on the bound socket `sock` (`lifecycle.bind_socket`) until SIGINT/SIGTERM, which stop new
    connections and give the requests in flight `limits.shutdown_grace_seconds` before a JSON 503
    (`lifecycle.GracefulServer`)."""
    import uvicorn

    from utils.serving.lifecycle import BACKSTOP_SECONDS, GracefulServer

    grace = limits.shutdown_grace_seconds if limits.shutdown_grace_seconds is not None else 30.0
    app = create_app(predictor, directory, limits, model_name, load_seconds)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        http=http,
        loop=loop,
        timeout_graceful_shutdown=grace + BACKSTOP_SECONDS,
        limit_concurrency=4096,
        lifespan="on",
    )
    where = f"[{host}]" if ":" in host else host
    logger.info("Listening on http://%s:%d (Ctrl-C or SIGTERM to stop)", where, port)
    GracefulServer(config, app.state.batcher, grace).run(sockets=[sock])


def server_notes(http: str, loop: str) -> Sequence[str]:
    """A warning when uvicorn runs its pure-Python HTTP parser or event loop."""
    slow = [name for name in (http, loop) if name in ("h11", "asyncio")]
    return (
        [
            f"Serving on {' and '.join(slow)} (pure Python): pip install 'uvicorn[standard]' for httptools and "
            "uvloop, 14% more requests per second under load (docs/serving.md)."
        ]
        if slow
        else []
    )


def hosts_note(host: str) -> Sequence[str]:
    """A warning for addresses beyond this machine (the service has no authentication)."""
    return (
        []
        if host in {"127.0.0.1", "localhost", "::1"}
        else [f"--host {host} exposes the service beyond this machine; it has no authentication or TLS."]
    )
