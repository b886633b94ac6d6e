"""The Open Inference Protocol (KServe v2 REST) beside serve.py's own routes, so KServe, Triton clients and other
platforms that speak it can call the model. Its requests go through the same `DynamicBatcher`, checks and limits as
/predict, and its results are /predict's (predict.py's lines), each as a JSON string.

    GET  /v2                          server metadata (name, version, extensions: none)
    GET  /v2/health/live              200 while the process answers
    GET  /v2/health/ready             200 while the batcher runs; 503 before it starts and once it stops
    GET  /v2/models/{name}            model metadata: name, versions, platform, inputs and outputs
    GET  /v2/models/{name}/ready      as /v2/health/ready, for the model
    POST /v2/models/{name}/infer      inference

The model's name is the served directory's basename unless serve.py's --model_name gives another. Tensors (JSON
`data` only; the binary tensor extension is refused):

    inputs   text         BYTES [N]   one text per element (required)
             text_pair    BYTES [N]   the second text of each sentence pair (only for tasks that take pairs)
             document_id  BYTES [N]   the document of each text (document context), as /predict's document_ids
    output   result       BYTES [N]   each element the JSON string of the result /predict gives for that text

Errors are JSON {"error": message} (the protocol's shape): 400 for a bad infer request, 413 over a limit, 404 for
an unknown model, 503 while the service is not ready or is shutting down, 500 for a failure inside the model.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from utils.core.examples import PAIR
from utils.serving.batching import DynamicBatcher, Job
from utils.serving.requests import Limits, RequestError, answer_job, decode_json, job_from_request

#: The input tensors, and the /predict field each is read into.
INPUT_FIELDS = {"text": "texts", "text_pair": "text_pairs", "document_id": "document_ids"}
OUTPUT = "result"
VERSION = "1"


def tensor_metadata(name: str) -> dict[str, Any]:
    return {"name": name, "datatype": "BYTES", "shape": [-1]}


def model_metadata(predictor, name: str) -> dict[str, Any]:
    """What GET /v2/models/{name} answers: the inputs this model's task takes, and the one output."""
    inputs = ["text", *(["text_pair"] if PAIR in predictor.task.serving.input_kinds else []), "document_id"]
    return {
        "name": name,
        "versions": [VERSION],
        "platform": f"finetune-kit_{predictor.backend}",
        "inputs": [tensor_metadata(tensor) for tensor in inputs],
        "outputs": [tensor_metadata(OUTPUT)],
    }


def bytes_tensor(tensor: Any, index: int) -> tuple[str, list[str]]:
    """An input tensor's name and its strings, or a 400 that says what is wrong with it."""
    if not isinstance(tensor, dict):
        raise RequestError(400, f"'inputs[{index}]' must be an object with name, shape, datatype and data.")
    name = tensor.get("name")
    if name not in INPUT_FIELDS:
        raise RequestError(400, f"unknown input {name!r}; this model takes {list(INPUT_FIELDS)}.")
    if tensor.get("datatype") != "BYTES":
        raise RequestError(400, f"input {name!r} must have datatype BYTES, got {tensor.get('datatype')!r}.")
    if (tensor.get("parameters") or {}).get("binary_data_size") is not None:
        raise RequestError(400, "binary tensor data is not supported; send the strings in 'data'.")
    data, shape = tensor.get("data"), tensor.get("shape")
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise RequestError(400, f"input {name!r}: 'data' must be a flat list of strings.")
    if shape != [len(data)]:
        raise RequestError(400, f"input {name!r}: shape {shape} must be [{len(data)}], one element per string.")
    return name, data


def infer_request(body: bytes, limits: Limits, predictor) -> tuple[Job, dict[str, Any]]:
    """An infer body as a `Job` (through /predict's checks) and what the answer echoes (id, requested outputs)."""
    request = decode_json(body)
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise RequestError(400, "an infer request is a JSON object with a list of 'inputs'.")
    fields: dict[str, list[str]] = {}
    for index, tensor in enumerate(request["inputs"]):
        name, data = bytes_tensor(tensor, index)
        if INPUT_FIELDS[name] in fields:
            raise RequestError(400, f"input {name!r} is given twice.")
        fields[INPUT_FIELDS[name]] = data
    if "texts" not in fields:
        raise RequestError(400, "the input 'text' is required.")
    for output in request.get("outputs") or []:
        if not isinstance(output, dict) or output.get("name") != OUTPUT:
            raise RequestError(400, f"unknown output {output!r}; this model gives {OUTPUT!r}.")
        if (output.get("parameters") or {}).get("binary_data"):
            raise RequestError(400, "binary tensor data is not supported; ask for the output with binary_data false.")
    try:
        job = job_from_request(fields, limits, predictor.task)
    except RequestError as err:  # /predict's checks name its fields; the protocol answers 400 for a bad request
        raise RequestError(413 if err.status == 413 else 400, str(err)) from None
    return job, {"id": request["id"]} if isinstance(request.get("id"), str) else {}


def add_open_inference_routes(
    app: FastAPI, predictor, batcher: DynamicBatcher, limits: Limits, model_name: str
) -> None:
    """The protocol's routes on `app`, answering for the one model `model_name`."""
    metadata = model_metadata(predictor, model_name)

    def unknown(name: str) -> JSONResponse | None:
        if name == model_name:
            return None
        return JSONResponse({"error": f"unknown model {name!r}; this server has {model_name!r}."}, status_code=404)

    def readiness() -> JSONResponse:
        ready = batcher.running
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/v2", tags=["open inference"])
    async def server_metadata() -> dict[str, Any]:
        """The server's name, version and protocol extensions (none)."""
        return {"name": "finetune-kit", "version": VERSION, "extensions": []}

    @app.get("/v2/health/live", tags=["open inference"])
    async def live() -> dict[str, bool]:
        """Live while the process answers."""
        return {"live": True}

    @app.get("/v2/health/ready", tags=["open inference"])
    async def ready() -> JSONResponse:
        """Ready while the batcher runs (503 before the service starts and once it starts stopping)."""
        return readiness()

    @app.get("/v2/models/{name}", tags=["open inference"])
    async def model(name: str) -> JSONResponse:
        """The model's name, versions, platform, and its tensors."""
        return unknown(name) or JSONResponse(metadata)

    @app.get("/v2/models/{name}/ready", tags=["open inference"])
    async def model_ready(name: str) -> JSONResponse:
        """Whether the model takes requests."""
        return unknown(name) or readiness()

    @app.post("/v2/models/{name}/infer", tags=["open inference"])
    async def infer(name: str, request: Request) -> JSONResponse:
        """Texts in (BYTES tensor `text`), each result /predict gives as a JSON string out (BYTES tensor `result`)."""
        refused = unknown(name)
        if refused is not None:
            return refused
        echoed: dict[str, Any] = {}

        def parse(body: bytes) -> Job:
            job, extra = infer_request(body, limits, predictor)
            echoed.update(extra)
            return job

        try:
            results = await answer_job(request, batcher, limits, parse)
        except RequestError as err:
            return JSONResponse(err.body, status_code=400 if err.status == 422 else err.status)
        data = [json.dumps(result, ensure_ascii=False) for result in results]
        output = {"name": OUTPUT, "datatype": "BYTES", "shape": [len(data)], "data": data}
        return JSONResponse({"model_name": model_name, "model_version": VERSION, **echoed, "outputs": [output]})
