"""serve.py's Open Inference Protocol (KServe v2 REST) through a real client of the protocol, Triton's
`tritonclient.http` (requirements-dev.txt), and its /metrics read back with `prometheus_client`'s own parser.

The NER service is a `serve.py` subprocess (the tiny exported model of tests/test_export.py, --model_name given); the
classifier runs in this process, on uvicorn in a thread or through starlette's TestClient."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from tritonclient.utils import InferenceServerException

from tests.conftest import ROOT
from tests.test_export import exported_ner_run, random_classifier
from tests.test_serve import NER_OPTIONS, Service, free_port, sample_texts, served_in_thread, wait_until_up
from utils.core.errors import ConfigError
from utils.serving.arguments import ServeArguments
from utils.serving.http import Limits, create_app
from utils.serving.predictor import Predictor

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module")
def ner_service(tiny_model, tmp_path_factory):
    model = exported_ner_run(tiny_model, tmp_path_factory)
    port = free_port()
    log = tmp_path_factory.mktemp("oip-log") / "serve.log"
    command = [sys.executable, str(ROOT / "serve.py"), "--model", model, *NER_OPTIONS]
    command += ["--port", str(port), "--model_name", "tiny-ner", "--max_texts_per_request", "64"]
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    service = Service(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_up(service.url, process, log)
        yield service
    finally:
        process.kill()
        process.wait(30)


@pytest.fixture(scope="module")
def classifier(tiny_model, tmp_path_factory) -> tuple[str, Predictor]:
    directory = random_classifier(tiny_model, tmp_path_factory.mktemp("oip-classifier"), LABELS)
    return directory, Predictor.from_pretrained(directory, device="cpu", backend="torch")


def client_for(service: Service) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=service.url.removeprefix("http://"), network_timeout=120)


def strings(name: str, values: list[str]) -> triton.InferInput:
    tensor = triton.InferInput(name, [len(values)], "BYTES")
    tensor.set_data_from_numpy(np.array(values, dtype=object), binary_data=False)
    return tensor


def infer(client: triton.InferenceServerClient, model: str, **tensors: list[str]) -> list[dict]:
    """The results through the protocol: each element of the output tensor `result` read back from JSON."""
    answer = client.infer(
        model,
        [strings(name, values) for name, values in tensors.items()],
        outputs=[triton.InferRequestedOutput("result", binary_data=False)],
        request_id="req-1",
    )
    assert answer.get_response()["id"] == "req-1" and answer.get_response()["model_name"] == model
    return [json.loads(element) for element in answer.as_numpy("result")]


def test_tritonclient_speaks_to_the_ner_service_and_gets_predicts_results(ner_service):
    client = client_for(ner_service)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tiny-ner")
    assert not client.is_model_ready("other")
    assert client.get_server_metadata()["name"] == "finetune-kit"
    metadata = client.get_model_metadata("tiny-ner")
    assert metadata["name"] == "tiny-ner" and metadata["platform"] == "finetune-kit_onnx-fp32"
    assert metadata["inputs"] == [
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
        {"name": "document_id", "datatype": "BYTES", "shape": [-1]},  # NER takes no sentence pairs
    ]
    assert metadata["outputs"] == [{"name": "result", "datatype": "BYTES", "shape": [-1]}]
    texts = sample_texts()
    expected = ner_service.results({"texts": texts})
    assert infer(client, "tiny-ner", text=texts) == expected and sum(len(r["entities"]) for r in expected) > 0
    documents = [f"doc{i // 4}" for i in range(len(texts))]
    assert infer(client, "tiny-ner", text=texts, document_id=documents) == ner_service.results(
        {"texts": texts, "document_ids": documents}
    )
    with pytest.raises(InferenceServerException, match="'text_pairs' are not for this model") as refused:
        infer(client, "tiny-ner", text=["a"], text_pair=["b"])
    assert refused.value.status() == "400"
    with pytest.raises(InferenceServerException, match="unknown model 'other'") as unknown:
        infer(client, "other", text=["a"])
    assert unknown.value.status() == "404"
    client.close()
    load = next(
        family
        for family in text_string_to_metric_families(httpx.get(f"{ner_service.url}/metrics").text)
        if family.name == "finetune_model_load_seconds"
    )
    assert 0 < load.samples[0].value < 600  # serve.py timed the load


def test_sentence_pairs_and_the_default_name_with_tritonclient(classifier):
    directory, predictor = classifier
    name = directory.rstrip("/").rsplit("/", 1)[-1]  # the directory's basename
    with served_in_thread(create_app(predictor, directory, Limits(max_texts=8))) as service:
        client = client_for(service)
        assert client.is_model_ready(name)
        metadata = client.get_model_metadata(name)
        assert [tensor["name"] for tensor in metadata["inputs"]] == ["text", "text_pair", "document_id"]
        texts, pairs = ["a warm and funny film", "", "dull"], ["it was fine", "nothing", ""]
        results = infer(client, name, text=texts, text_pair=pairs)
        assert results == service.results({"texts": texts, "text_pairs": pairs})
        assert [r["text_pair"] for r in results] == pairs and set(results[0]["probabilities"]) == set(LABELS)
        assert infer(client, name, text=texts) == predictor.predict(texts)
        client.close()


BAD_INFERS = [
    # (body, status, what the error says)
    (b"{", 400, "not valid JSON"),
    (
        b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["\\ud800"]}]}',
        400,
        "'inputs[0].data[0]' holds a lone surrogate",
    ),
    ({"inputs": "text"}, 400, "a list of 'inputs'"),
    ({"inputs": []}, 400, "the input 'text' is required"),
    ({"inputs": [{"name": "texts", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}, 400, "unknown input 'texts'"),
    ({"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}, 400, "datatype BYTES"),
    ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a"]}]}, 400, "shape [2] must be [1]"),
    ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [["a"]]}]}, 400, "flat list of strings"),
    (
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 5}}]},
        400,
        "binary tensor data is not supported",
    ),
    (
        {
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
            "outputs": [{"name": "result", "parameters": {"binary_data": True}}],
        },
        400,
        "binary tensor data is not supported",
    ),
    (
        {
            "inputs": [
                {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
                {"name": "text_pair", "datatype": "BYTES", "shape": [1], "data": ["c"]},
            ]
        },
        400,
        "2 texts but 1 text_pairs",
    ),
    ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [9], "data": ["a"] * 9}]}, 413, "limit is 8 per"),
]


def test_bad_infer_requests_readiness_and_metrics_counted_exactly(classifier):
    """Every bad infer request is a JSON 400 (413 over a limit); the service is ready only while its batcher runs;
    and /metrics counts exactly the requests, inputs and batches sent (a fresh app: its own registry)."""
    directory, predictor = classifier
    app = create_app(predictor, directory, Limits(max_texts=8), model_name="clf", load_seconds=1.25)
    idle = TestClient(app)  # the lifespan has not run: the batcher is not started
    assert idle.get("/v2/health/live").status_code == 200
    assert idle.get("/v2/health/ready").status_code == 503 and idle.get("/v2/health/ready").json() == {"ready": False}
    assert idle.get("/v2/models/clf/ready").status_code == 503
    sizes = [1, 2, 3, 1, 4, 2, 5]
    with TestClient(app) as client:
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert client.get("/v2/models/clf/ready").status_code == 200
        assert (
            client.get("/v2/models/nope").status_code == 404
            and "unknown model" in client.get("/v2/models/nope").json()["error"]
        )
        for body, status, message in BAD_INFERS:
            answer = client.post("/v2/models/clf/infer", content=body if isinstance(body, bytes) else json.dumps(body))
            assert answer.status_code == status and message in answer.json()["error"], (body, answer.text)
        metrics_before = families(client.get("/metrics").text)
        for size in sizes:
            assert client.post("/predict", json={"texts": ["good film"] * size}).status_code == 200
        for size in (3, 1, 2):
            body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [size], "data": ["bad film"] * size}]}
            assert len(client.post("/v2/models/clf/infer", json=body).json()["outputs"][0]["data"]) == size
        assert client.post("/predict", json={"texts": [1]}).status_code == 422
        assert client.post("/v2/models/clf/infer", json={"inputs": []}).status_code == 400
        metrics = families(client.get("/metrics").text)
    assert TestClient(app).get("/v2/health/ready").status_code == 503  # stopped
    assert metrics_before[("finetune_texts_processed_total", ())] == 0
    infer_route = "/v2/models/{name}/infer"
    assert (
        metrics[("finetune_http_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "200")))] == 7
    )
    assert (
        metrics[("finetune_http_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "422")))] == 1
    )
    assert (
        metrics[("finetune_http_requests_total", (("method", "POST"), ("route", infer_route), ("status", "200")))] == 3
    )
    bad = metrics[("finetune_http_requests_total", (("method", "POST"), ("route", infer_route), ("status", "400")))]
    assert bad == 1 + sum(status == 400 for _, status, _ in BAD_INFERS)
    assert (
        metrics[
            ("finetune_http_requests_total", (("method", "GET"), ("route", "/v2/models/{name}"), ("status", "404")))
        ]
        == 2
    )
    assert metrics[("finetune_http_request_duration_seconds_count", (("route", "/predict"),))] == 8
    assert metrics[("finetune_texts_processed_total", ())] == sum(sizes) + 6
    assert metrics[("finetune_batch_inputs_count", ())] == 10  # one request at a time: one model call each
    assert metrics[("finetune_batch_inputs_sum", ())] == sum(sizes) + 6
    assert metrics[("finetune_batch_inputs_bucket", (("le", "2.0"),))] == 6  # 1, 2, 1, 2; the infers of 1 and 2
    assert metrics[("finetune_queue_depth", ())] == 0 and metrics[("finetune_model_load_seconds", ())] == 1.25


def families(exposition: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus exposition by name and sorted labels, parsed by prometheus_client's parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


@pytest.mark.parametrize("name", ["", "org/model"])
def test_a_model_name_with_a_slash_or_empty_is_refused(name):
    with pytest.raises(ConfigError, match="must be a non-empty name without '/'"):
        ServeArguments(model_name=name)
