"""The HTTP service of `serve.py`: FastAPI on uvicorn, in front of one `Predictor` and a `DynamicBatcher`.

    POST /predict   {"texts": [...]}, or for models that take pre-split words {"tokens": [[...], ...]}; optional
                    "document_ids" (one per input: document context) and, for models of sentence pairs,
                    "text_pairs". Which of these a model takes is its task's (`task.serving.input_kinds`).
                    Answers {"results": [...]}, each result the line predict.py writes for it (the task's).
    GET  /health    {"status": "ok", batching counters}
    GET  /info      task, labels, base model, backend, settings and limits
    GET  /          a page to paste text into and see the entities highlighted, or the label probabilities as bars
    GET  /docs      the OpenAPI documentation (/openapi.json)

Every error is a JSON object {"error": message, ...} with a 4xx status: 400 for a body that is not JSON, 413 for more
texts, characters or bytes than the limits (the answer says which limit), 422 for JSON of the wrong shape; a failure
inside the model is a 500 for that request only. The body is read up to its byte limit and no further.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from utils.core.errors import FinetuneError
from utils.core.examples import PAIR, TEXT, TOKENS, Example, taken_kinds
from utils.core.task import Task
from utils.serving.batching import DynamicBatcher, Job

logger = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page.html")
REQUEST_KEYS = ("texts", "tokens", "text_pairs", "document_ids")

#: The request field that carries each kind of input (`utils.core.examples`).
KIND_FIELDS = {TEXT: "texts", TOKENS: "tokens", PAIR: "text_pairs"}


@dataclass(frozen=True)
class Limits:
    """What one request may hold, and how requests are gathered into batches."""

    max_texts: int = 256  # texts (or sentences) per request
    max_chars: int = 20_000  # characters per text (a sentence's words joined by spaces)
    max_batch_size: int = 64  # inputs gathered into one model call
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others

    @property
    def max_body_bytes(self) -> int:
        """Enough for max_texts texts of max_chars characters each, every one escaped as \\uXXXX in JSON."""
        return self.max_texts * (self.max_chars * 6 + 16) + 65_536


class RequestError(Exception):
    """A bad request: its status and the JSON body of the answer."""

    def __init__(self, status: int, message: str, **details: Any):
        super().__init__(message)
        self.status, self.body = status, {"error": message, **details}


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


def service_info(predictor, directory: str, limits: Limits) -> dict[str, Any]:
    """What /info answers: the model, its settings (the shared ones and the task's), and the service's limits."""
    kinds = predictor.task.serving.input_kinds
    return {
        "task": predictor.task.name, "labels": list(predictor.labels.names),
        "inputs": [field for kind, field in KIND_FIELDS.items() if kind in kinds],
        "base_model": model_card_base(directory) or getattr(predictor.config, "_name_or_path", None) or None,
        "backend": predictor.backend, "batch_dependent": predictor.batch_dependent,
        "model": str(directory), "device": str(predictor.device), "settings": predictor.settings(),
        "limits": {"max_texts_per_request": limits.max_texts, "max_chars_per_text": limits.max_chars,
                   "max_body_bytes": limits.max_body_bytes, "max_batch_size": limits.max_batch_size,
                   "max_wait_ms": limits.max_wait_ms},
    }


# ---------------------------------------------------------------- requests


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to be longer than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"Content-Length {declared!r} is not a number of bytes.")
        if int(declared) > limit:
            raise RequestError(413, f"the body is {declared} bytes; the limit is {limit} bytes.", limit=limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is over the limit of {limit} bytes.", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list):
        raise RequestError(422, f"'{name}' must be a list of strings, got {type(value).__name__}.", field=name)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise RequestError(422, f"'{name}[{index}]' must be a string, got {type(item).__name__}.",
                               field=name)
    return value


def check_length(text: str, name: str, index: int, limits: Limits) -> None:
    if len(text) > limits.max_chars:
        raise RequestError(413, f"'{name}[{index}]' has {len(text)} characters; the limit is {limits.max_chars} "
                           "characters per text.", limit=limits.max_chars, field=name)


def not_taken(name: str, task: Task) -> RequestError:
    return RequestError(422, f"'{name}' are not for this model ({task.name}): it takes "
                        f"{taken_kinds(task.serving.input_kinds)}.", field=name)


def parse_job(body: bytes, limits: Limits, task: Task) -> Job:
    """A request body as a `Job`, or the `RequestError` that says what is wrong with it. What the model takes is
    its task's (`task.serving.input_kinds`)."""
    kinds = task.serving.input_kinds
    try:
        request = json.loads(body.decode("utf-8"))  # JSON is UTF-8 (RFC 8259); json.loads(bytes) would guess
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f" at line {err.lineno} column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
        reason = err.msg if isinstance(err, json.JSONDecodeError) else "not UTF-8"
        raise RequestError(400, f"the body is not valid JSON ({reason}{where}).") from None
    if not isinstance(request, dict):
        raise RequestError(422, 'the body must be a JSON object: {"texts": ["..."]}' +
                           (' or {"tokens": [["...", "..."]]}.' if TOKENS in kinds else "."))
    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
        raise RequestError(422, f"unknown field(s) {unknown}; a request takes {list(REQUEST_KEYS)}.", field=unknown[0])
    if ("texts" in request) == ("tokens" in request):
        raise RequestError(422, "give exactly one of 'texts' (a list of strings) or 'tokens' (a list of lists of "
                           "words).")
    name = "texts" if "texts" in request else "tokens"
    value = request[name]
    if isinstance(value, list) and len(value) > limits.max_texts:
        raise RequestError(413, f"{len(value)} {name}; the limit is {limits.max_texts} per request.",
                           limit=limits.max_texts, field=name)
    pairs = None
    if name == "tokens":
        if TOKENS not in kinds:
            raise not_taken("tokens", task)
        if not isinstance(value, list):
            raise RequestError(422, f"'tokens' must be a list of lists of words, got {type(value).__name__}.",
                               field="tokens")
        for index, words in enumerate(value):
            string_list(words, f"tokens[{index}]")
            check_length(" ".join(words), "tokens", index, limits)
        if "text_pairs" in request:
            raise RequestError(422, "'text_pairs' go with 'texts', not 'tokens'.", field="text_pairs")
    else:
        if TEXT not in kinds:
            raise not_taken("texts", task)
        for index, text in enumerate(string_list(value, "texts")):
            check_length(text, "texts", index, limits)
        if request.get("text_pairs") is not None:
            if PAIR not in kinds:
                raise not_taken("text_pairs", task)
            pairs = string_list(request["text_pairs"], "text_pairs")
            if len(pairs) != len(value):
                raise RequestError(422, f"{len(value)} texts but {len(pairs)} text_pairs; give one pair per text.",
                                   field="text_pairs")
            for index, pair in enumerate(pairs):
                check_length(pair, "text_pairs", index, limits)
    documents = request.get("document_ids")
    if documents is not None:
        if not isinstance(documents, list) or len(documents) != len(value):
            raise RequestError(422, f"'document_ids' must be a list with one id per input ({len(value)}).",
                               field="document_ids")
        for index, document in enumerate(documents):
            if document is not None and (isinstance(document, bool) or not isinstance(document, (str, int))):
                raise RequestError(422, f"'document_ids[{index}]' must be a string, a whole number or null.",
                                   field="document_ids")
        documents = [None if document is None else str(document) for document in documents]  # as predict.py
    documents = documents or [None] * len(value)
    if name == "tokens":
        return Job([Example(text=" ".join(words), tokens=tuple(words), document=document)
                    for words, document in zip(value, documents, strict=True)])
    return Job([Example(text=text, text_pair=None if pairs is None else pairs[index], document=documents[index])
                for index, text in enumerate(value)])


# ---------------------------------------------------------------- the app


def request_schema(limits: Limits, task: Task) -> dict[str, Any]:
    """The JSON schema of a request to a model of `task`: only the fields of the input kinds it takes."""
    strings = {"type": "array", "items": {"type": "string", "maxLength": limits.max_chars},
               "maxItems": limits.max_texts}
    fields_by_kind = {
        TEXT: {**strings, "description": "Raw texts (entities get character offsets into them)."},
        TOKENS: {"type": "array", "maxItems": limits.max_texts, "items": {"type": "array", "items": {
            "type": "string"}}, "description": "Pre-split sentences (spans are word indices)."},
        PAIR: {**strings, "description": "Sentence pairs: the second text of each (with texts)."},
    }
    properties = {KIND_FIELDS[kind]: schema for kind, schema in fields_by_kind.items()
                  if kind in task.serving.input_kinds}
    properties["document_ids"] = {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"},
                                                                       {"type": "null"}]},
                                  "description": "Document context: the document of each input (null: alone)."}
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "example": {"texts": ["Angela Merkel met Emmanuel Macron in Paris."]}}


ERROR_RESPONSES = {
    status: {"description": description, "content": {"application/json": {"example": {"error": example}}}}
    for status, description, example in (
        (400, "The body is not JSON.", "the body is not valid JSON (Expecting value at line 1 column 1)."),
        (413, "Over a limit (texts, characters, bytes).", "300 texts; the limit is 256 per request."),
        (422, "JSON of the wrong shape.", "'texts[0]' must be a string, got int."),
        (503, "Shutting down.", "the service is shutting down"),
    )
}


def create_app(predictor, directory: str, limits: Limits | None = None) -> FastAPI:
    """The service for `predictor` (loaded from `directory`)."""
    limits = limits or Limits()
    batcher = DynamicBatcher(predictor, limits.max_batch_size, limits.max_wait_ms)
    info = service_info(predictor, directory, limits)
    page = PAGE.read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        logger.info("Serving %s (%s, %s backend)", directory, predictor.task.name, predictor.backend)
        yield
        await batcher.stop()  # uvicorn has finished the requests in flight by now
        logger.info("Stopped after %s", json.dumps(batcher.stats.as_dict()))

    app = FastAPI(title="finetune-kit prediction service", version="1", lifespan=lifespan,
                  description=f"{info['task']} model `{directory}` ({predictor.backend} backend). "
                  "POST /predict with {\"texts\": [...]}; every result is the line predict.py writes for it.")
    app.state.batcher = batcher

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return error_response(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        logger.exception("Request to %s failed", request.url.path)
        return error_response(500, f"internal error: {type(err).__name__}")

    @app.post("/predict", responses=ERROR_RESPONSES, openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": request_schema(limits, predictor.task)}}}})
    async def predict(request: Request) -> JSONResponse:
        """One result per input, in order: what predict.py writes for each (entities, or label and probabilities)."""
        batcher.arriving += 1
        try:
            try:
                job = parse_job(await read_body(request, limits.max_body_bytes), limits, predictor.task)
            finally:
                batcher.arriving -= 1
            if not job.size:
                return JSONResponse({"results": []})
            try:
                results = await batcher.submit(job)
            except RuntimeError as err:
                raise RequestError(503, str(err)) from None
            except FinetuneError as err:  # the predictor refused this input
                raise RequestError(422, str(err)) from None
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


def serve(predictor, directory: str, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          log_level: str = "info", access_log: bool = False, graceful_seconds: float = 30.0, http: str = "auto",
          loop: str = "auto") -> None:
    """Run the service until SIGINT/SIGTERM, which stop new connections and finish the requests in flight."""
    import uvicorn

    app = create_app(predictor, directory, limits)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log, http=http,
                            loop=loop, timeout_graceful_shutdown=graceful_seconds, limit_concurrency=4096,
                            lifespan="on")
    uvicorn.Server(config).run()


def server_notes(http: str, loop: str) -> Sequence[str]:
    """A warning when uvicorn runs its pure-Python HTTP parser or event loop."""
    slow = [name for name in (http, loop) if name in ("h11", "asyncio")]
    return [f"Serving on {' and '.join(slow)} (pure Python): pip install 'uvicorn[standard]' for httptools and "
            "uvloop, 14% more requests per second under load (docs/serving.md)."] if slow else []


def hosts_note(host: str) -> Sequence[str]:
    """A warning for addresses beyond this machine (the service has no authentication)."""
    return [] if host in {"127.0.0.1", "localhost", "::1"} else [
        f"--host {host} exposes the service beyond this machine; it has no authentication or TLS."]
