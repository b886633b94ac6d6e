"""What serve.py promises beyond answering (issue #27, item 5): the default service answers concurrent, mixed
requests exactly as predict.py with its defaults; SIGTERM lets requests in flight finish within a grace period, then
answers the rest with a JSON 503 and stops the work; a port in use is one error line before the model loads; /info
and /openapi.json name no path of the machine; /docs works with no network.

The model is the tiny NER run of tests/test_export.py, exported with int8 (the default backend: the int8 graph)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import predict
from tests.conftest import ROOT
from tests.test_export import exported_ner_run
from tests.test_serve import LONG, NER_DATA, Service, free_port, served_in_thread, wait_until_up
from utils.core.conll import read_conll
from utils.serving.arguments import ServePredictorArguments
from utils.serving.http import Limits, create_app, public_name
from utils.serving.lifecycle import grace_seconds, largest_text_seconds


@pytest.fixture(scope="module")
def ner_model(tiny_model, tmp_path_factory) -> str:
    return exported_ner_run(tiny_model, tmp_path_factory)


def start_service(model: str, log: Path, *flags: str) -> Service:
    """serve.py on a free loopback port with `flags` beside --model and --port; up and answering."""
    port = free_port()
    command = [sys.executable, str(ROOT / "serve.py"), "--model", model, "--port", str(port), *flags]
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    service = Service(f"http://127.0.0.1:{port}", process, log)
    wait_until_up(service.url, process, log)
    return service


def stop(service: Service) -> None:
    if service.process.poll() is None:
        service.process.kill()
        service.process.wait(30)


def predict_py_lines(model: str, path: Path, output: Path) -> list[dict]:
    """predict.py's lines for an input file, every setting its default."""
    predict.main(["--model", model, "--input", str(path), "--output", str(output)])
    return [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- the default backend answers as predict.py


def mixed_requests() -> list[dict]:
    """Requests of 1-4 texts or pre-split sentences, some with a text longer than a window, in no order."""
    sentences = read_conll(NER_DATA / "test.conll").tokens
    requests = []
    for index in range(96):
        start, size = (index * 11) % (len(sentences) - 4), 1 + index % 4
        chosen = sentences[start : start + size]
        if index % 3 == 0:
            requests.append({"tokens": chosen})
        else:
            texts = [" ".join(words) for words in chosen]
            if index % 7 == 1:
                texts.append(LONG)
            requests.append({"texts": texts})
    return requests


def test_the_default_service_answers_concurrent_mixed_requests_exactly_as_default_predict_py(ner_model, tmp_path):
    """No --backend, no --row_parallel on either side: the int8 export. 96 requests from 32 concurrent clients are
    gathered into batches of mixed requests; every answer equals predict.py's lines, byte for byte."""
    requests = mixed_requests()
    texts = [text for body in requests for text in body.get("texts", [])]
    sentences = [words for body in requests for words in body.get("tokens", [])]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    lines = "\n".join(json.dumps({"tokens": words}) for words in sentences) + "\n"
    (tmp_path / "tokens.jsonl").write_text(lines, encoding="utf-8")
    expected_texts = iter(predict_py_lines(ner_model, tmp_path / "texts.txt", tmp_path / "texts.out"))
    expected_tokens = iter(predict_py_lines(ner_model, tmp_path / "tokens.jsonl", tmp_path / "tokens.out"))
    expected = [
        [next(expected_tokens if "tokens" in body else expected_texts) for _ in body.get("tokens", body.get("texts"))]
        for body in requests
    ]
    service = start_service(ner_model, tmp_path / "serve.log", "--max_wait_ms", "20")
    try:
        info = httpx.get(f"{service.url}/info").json()
        assert info["backend"] == "onnx-int8" and info["batch_dependent"] is None

        async def clients() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
            async with httpx.AsyncClient(base_url=service.url, timeout=120, limits=limits) as client:
                queue, answers = list(enumerate(requests)), {}

                async def client_loop() -> None:
                    while queue:
                        index, body = queue.pop()
                        answers[index] = await client.post("/predict", json=body)

                await asyncio.gather(*(client_loop() for _ in range(32)))
                return [answers[index] for index in range(len(requests))]

        answers = asyncio.run(clients())
        health = httpx.get(f"{service.url}/health").json()
    finally:
        stop(service)
    assert [answer.status_code for answer in answers] == [200] * len(requests)
    assert [answer.json()["results"] for answer in answers] == expected
    # the requests were gathered: batches of several requests, with texts and sentences side by side
    assert health["requests"] == len(requests) and health["batches"] < len(requests) / 2, health
    assert sum(len(line["entities"]) for lines in expected for line in lines) > 0


def test_int8_rows_run_alone_unless_asked_otherwise(ner_model):
    assert ServePredictorArguments(ner_model, device="cpu").load().settings()["row_parallel"] >= 1
    batched = ServePredictorArguments(ner_model, device="cpu", row_parallel=False).load()
    assert batched.settings()["row_parallel"] == 0 and "one scale per batch" in batched.batch_dependent
    fp32 = ServePredictorArguments(ner_model, device="cpu", backend="onnx-fp32").load()
    assert fp32.settings()["row_parallel"] == 0 and fp32.batch_dependent is None


# ---------------------------------------------------------------- SIGTERM


def test_the_grace_period_covers_the_largest_request():
    assert grace_seconds(0.5, 256) == 2.0 * 0.5 * 256 + 5.0
    assert grace_seconds(0.0, 256) == 5.0


def test_sigterm_answers_what_outlives_the_grace_period_with_a_json_503_and_stops_the_work(ner_model, tmp_path):
    """Ten requests of 64 long texts (far more work than 1 s) in flight when SIGTERM comes, with a grace period of 1 s:
    each gets JSON (200 if it finished in time, else a 503 that says why), the model stops working, the process exits
    cleanly without having predicted them all."""
    service = start_service(
        ner_model,
        tmp_path / "serve.log",
        "--shutdown_grace_seconds",
        "1",
        "--max_texts_per_request",
        "64",
        "--max_chars_per_text",
        "5000",
    )
    body = {"texts": [(LONG * 3)[:5000]] * 64}
    answers: list[httpx.Response] = []
    try:
        assert httpx.get(f"{service.url}/info").json()["limits"]["shutdown_grace_seconds"] == 1.0

        def send() -> None:
            answers.append(service.post(body))

        senders = [threading.Thread(target=send) for _ in range(10)]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 60
        while httpx.get(f"{service.url}/health").json()["requests"] < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        service.process.send_signal(signal.SIGTERM)
        for sender in senders:
            sender.join(120)
        status = service.process.wait(120)
    finally:
        stop(service)
    assert len(answers) == 10 and {answer.headers["content-type"] for answer in answers} == {"application/json"}
    refused = [answer for answer in answers if answer.status_code == 503]
    assert refused and all(answer.status_code in (200, 503) for answer in answers)
    assert all("did not finish within the 1 s grace period" in answer.json()["error"] for answer in refused), refused[
        0
    ].text
    assert status in (0, -signal.SIGTERM)
    log = service.log.read_text(encoding="utf-8")
    assert f"Grace period over: {len(refused)} request(s) answered 503" in log and "Traceback" not in log
    stopped = json.loads(re.search(r"Stopped after (\{.*\})", log).group(1))
    assert stopped["inputs"] < 10 * 64  # the work stopped: not every input was predicted


def test_the_grace_period_is_measured_on_the_model_when_not_given(ner_model, tmp_path):
    predictor = ServePredictorArguments(ner_model, device="cpu").load()
    assert largest_text_seconds(predictor, 5000) > 0
    service = start_service(ner_model, tmp_path / "serve.log", "--max_chars_per_text", "5000")
    try:
        grace = httpx.get(f"{service.url}/info").json()["limits"]["shutdown_grace_seconds"]
    finally:
        stop(service)
    assert grace >= 5.0  # the margin, plus twice the measured time of 256 such texts
    assert "requests in flight get" in service.log.read_text(encoding="utf-8")


# ---------------------------------------------------------------- the port, paths, the docs page


def test_a_port_in_use_is_one_error_line_before_the_model_loads(ner_model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = subprocess.run(
            [sys.executable, str(ROOT / "serve.py"), "--model", ner_model, "--port", str(port)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines()[-1] == (
        f"error: --port {port}: 127.0.0.1:{port} is already in use (another serve.py?); choose another --port, or "
        "stop what listens there."
    )
    assert "Loaded" not in completed.stderr and "Traceback" not in completed.stderr


def strings(value) -> list[str]:
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (key, *strings(item))]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return [value] if isinstance(value, str) else []


def test_info_and_openapi_name_no_path_of_the_machine(ner_model, tmp_path_factory):
    predictor = ServePredictorArguments(ner_model, device="cpu").load()
    with served_in_thread(create_app(predictor, ner_model, Limits())) as service:
        info = httpx.get(f"{service.url}/info").json()
        spec = httpx.get(f"{service.url}/openapi.json").json()
    root = str(tmp_path_factory.getbasetemp())
    for document in (info, spec):
        assert not [text for text in strings(document) if root in text or text.startswith(("/tmp", "/home"))]
    # the run's model card names its base model by the absolute path it was trained from: only its last part shows
    assert info["model"] == Path(ner_model).name and info["base_model"].startswith("onnx-ner-base")
    assert Path(ner_model).name in spec["info"]["description"]


def test_public_name_keeps_hub_ids_and_shortens_local_paths():
    assert public_name("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert public_name("bert-base-cased") == "bert-base-cased"
    assert public_name("/home/me/models/base/") == "base"
    assert public_name("~/models/base") == "base"
    assert public_name("./runs/ner") == "ner"
    assert public_name("C:\\models\\base") == "base"
    assert public_name("") is None and public_name(None) is None


def test_docs_work_with_no_network(ner_model):
    """Every script and style sheet of /docs (and /redoc) is served by the service itself."""
    predictor = ServePredictorArguments(ner_model, device="cpu").load()
    with served_in_thread(create_app(predictor, ner_model, Limits())) as service:
        for page in ("/docs", "/redoc"):
            html = httpx.get(f"{service.url}{page}").text
            assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
            assert assets and "http" not in " ".join(assets), assets
            for asset in assets:
                answer = httpx.get(f"{service.url}{asset}")
                assert answer.status_code == 200 and len(answer.content) > 1000, asset
        assert "/openapi.json" in httpx.get(f"{service.url}/docs").text
        assert "SwaggerUIBundle" in httpx.get(f"{service.url}/docs").text
