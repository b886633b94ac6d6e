"""What a request to the service may be: its limits, and its JSON body read into a `Job` of `Example`s or refused
with a `RequestError` (status and JSON body). Which fields a model takes is its task's (`task.serving.input_kinds`);
nothing here knows a task."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from utils.core.errors import FinetuneError
from utils.core.examples import PAIR, TEXT, TOKENS, Example, taken_kinds
from utils.core.task import Task
from utils.serving.batching import DynamicBatcher, Job, ShuttingDown

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
    shutdown_grace_seconds: float | None = None  # SIGTERM: how long requests in flight may go on (serve.py sets it)

    @property
    def max_body_bytes(self) -> int:
        """Enough for max_texts texts of max_chars characters each, every one escaped as \\uXXXX in JSON."""
        return self.max_texts * (self.max_chars * 6 + 16) + 65_536


class RequestError(Exception):
    """A bad request: its status and the JSON body of the answer."""

    def __init__(self, status: int, message: str, **details: Any):
        super().__init__(message)
        self.status, self.body = status, {"error": message, **details}


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
            raise RequestError(422, f"'{name}[{index}]' must be a string, got {type(item).__name__}.", field=name)
    return value


def check_length(text: str, name: str, index: int, limits: Limits) -> None:
    if len(text) > limits.max_chars:
        raise RequestError(
            413,
            f"'{name}[{index}]' has {len(text)} characters; the limit is {limits.max_chars} characters per text.",
            limit=limits.max_chars,
            field=name,
        )


def not_taken(name: str, task: Task) -> RequestError:
    return RequestError(
        422,
        f"'{name}' are not for this model ({task.name}): it takes {taken_kinds(task.serving.input_kinds)}.",
        field=name,
    )


def check_content_type(request: Request) -> None:
    """A body that says it is something other than JSON is refused (415) before it is read; no Content-Type at all is
    read as JSON."""
    declared = request.headers.get("content-type")
    if declared is None:
        return
    media = declared.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise RequestError(
            415,
            f"Content-Type {media or '(empty)'!r}: the body must be JSON, sent as application/json "
            "(curl: --json '{...}', or -H 'Content-Type: application/json').",
        )


def printable(text: str) -> str:
    """`text` with lone surrogates written as \\udXXX escapes, so an error message can quote it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def lone_surrogate(value: Any) -> str | None:
    """Where a string of decoded JSON holds a lone surrogate (`"\\ud800"` decodes to one, and no UTF-8 encoder
    takes it): the path of the first one, e.g. `texts[2]`, or None. A loop, not recursion: the nesting is the
    client's."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return path or "the body"
        elif isinstance(item, list):
            stack.extend((f"{path}[{index}]", element) for index, element in reversed(list(enumerate(item))))
        elif isinstance(item, dict):
            for key, element in reversed(list(item.items())):
                name = printable(key)
                stack.append((f"{path}.{name}" if path else name, element))
                stack.append((f"a key of {path or 'the body'}", key))
    return None


def decode_json(body: bytes) -> Any:
    """The body's JSON, or a 400 that says what is wrong with it: where it is broken, not UTF-8, nested deeper than
    the parser goes, a number too long to read, or a string that is not Unicode text (a lone surrogate)."""
    try:
        value = json.loads(body.decode("utf-8"))  # JSON is UTF-8 (RFC 8259); json.loads(bytes) would guess
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise RequestError(400, f"the body is not valid JSON ({err.msg} at {where}).") from None
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not valid JSON (not UTF-8).") from None
    except RecursionError:
        raise RequestError(
            400, "the body is not valid JSON for this service (nested too deeply: a request nests at most 4 levels)."
        ) from None
    except ValueError as err:  # an integer of more than 4,300 digits
        reason = str(err).split(";")[0]
        raise RequestError(400, f"the body is not valid JSON for this service ({reason}).") from None
    where = lone_surrogate(value)
    if where is not None:
        raise RequestError(
            400,
            f"the body is not valid JSON text: '{where}' holds a lone surrogate (a \\uD800-\\uDFFF escape "
            "without its pair), which is no character; send text as UTF-8.",
            field=where,
        )
    return value


def parse_job(body: bytes, limits: Limits, task: Task) -> Job:
    """A /predict body as a `Job`, or the `RequestError` that says what is wrong with it."""
    return job_from_request(decode_json(body), limits, task)


def job_from_request(request: Any, limits: Limits, task: Task) -> Job:
    """A request in /predict's fields (texts or tokens, text_pairs, document_ids) as a `Job`; the Open Inference
    Protocol's tensors are read into the same fields, so both routes share every check. What the model takes is its
    task's (`task.serving.input_kinds`)."""
    kinds = task.serving.input_kinds
    if not isinstance(request, dict):
        raise RequestError(
            422,
            'the body must be a JSON object: {"texts": ["..."]}'
            + (' or {"tokens": [["...", "..."]]}.' if TOKENS in kinds else "."),
        )
    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
        raise RequestError(422, f"unknown field(s) {unknown}; a request takes {list(REQUEST_KEYS)}.", field=unknown[0])
    if ("texts" in request) == ("tokens" in request):
        raise RequestError(
            422, "give exactly one of 'texts' (a list of strings) or 'tokens' (a list of lists of words)."
        )
    name = "texts" if "texts" in request else "tokens"
    value = request[name]
    if isinstance(value, list) and len(value) > limits.max_texts:
        raise RequestError(
            413,
            f"{len(value)} {name}; the limit is {limits.max_texts} per request.",
            limit=limits.max_texts,
            field=name,
        )
    pairs = None
    if name == "tokens":
        if TOKENS not in kinds:
            raise not_taken("tokens", task)
        if not isinstance(value, list):
            raise RequestError(
                422, f"'tokens' must be a list of lists of words, got {type(value).__name__}.", field="tokens"
            )
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
                raise RequestError(
                    422, f"{len(value)} texts but {len(pairs)} text_pairs; give one pair per text.", field="text_pairs"
                )
            for index, pair in enumerate(pairs):
                check_length(pair, "text_pairs", index, limits)
    documents = request.get("document_ids")
    if documents is not None:
        if not isinstance(documents, list) or len(documents) != len(value):
            raise RequestError(
                422, f"'document_ids' must be a list with one id per input ({len(value)}).", field="document_ids"
            )
        for index, document in enumerate(documents):
            if document is not None and (isinstance(document, bool) or not isinstance(document, (str, int))):
                raise RequestError(
                    422, f"'document_ids[{index}]' must be a string, a whole number or null.", field="document_ids"
                )
        documents = [None if document is None else str(document) for document in documents]  # as predict.py
    documents = documents or [None] * len(value)
    if name == "tokens":
        return Job(
            [
                Example(text=" ".join(words), tokens=tuple(words), document=document)
                for words, document in zip(value, documents, strict=True)
            ]
        )
    return Job(
        [
            Example(text=text, text_pair=None if pairs is None else pairs[index], document=documents[index])
            for index, text in enumerate(value)
        ]
    )


async def answer_job(request: Request, batcher: DynamicBatcher, limits: Limits, parse: Callable[[bytes], Job]) -> list:
    """The results for a request's body (read within the byte limit, `parse`d into a `Job`) from the shared batcher;
    a `RequestError` for a bad body, a refused input (422) or a service shutting down (503)."""
    check_content_type(request)
    batcher.arriving += 1  # the batcher waits for batchmates while requests are being read
    try:
        job = parse(await read_body(request, limits.max_body_bytes))
    finally:
        batcher.arriving -= 1
    if not job.size:
        return []
    try:
        return await batcher.submit(job)
    except ShuttingDown as err:
        raise RequestError(503, str(err)) from None
    except FinetuneError as err:  # the predictor refused this input
        raise RequestError(422, str(err)) from None


def request_schema(limits: Limits, task: Task) -> dict[str, Any]:
    """The JSON schema of a request to a model of `task`: only the fields of the input kinds it takes."""
    strings = {
        "type": "array",
        "items": {"type": "string", "maxLength": limits.max_chars},
        "maxItems": limits.max_texts,
    }
    fields_by_kind = {
        TEXT: {**strings, "description": "Raw texts (entities get character offsets into them)."},
        TOKENS: {
            "type": "array",
            "maxItems": limits.max_texts,
            "items": {"type": "array", "items": {"type": "string"}},
            "description": "Pre-split sentences (spans are word indices).",
        },
        PAIR: {**strings, "description": "Sentence pairs: the second text of each (with texts)."},
    }
    properties = {
        KIND_FIELDS[kind]: schema for kind, schema in fields_by_kind.items() if kind in task.serving.input_kinds
    }
    properties["document_ids"] = {
        "type": "array",
        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
        "description": "Document context: the document of each input (null: alone).",
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "example": {"texts": ["Angela Merkel met Emmanuel Macron in Paris."]},
    }
