"""serve.py over real HTTP on a free loopback port: results equal to predict.py's, concurrent clients, every bad
request, the page (in headless Chromium where installed), and SIGTERM finishing the requests in flight.

The NER service is a `serve.py` subprocess on the tiny model of tests/test_export.py (ONNX fp32 backend, document
context on, small limits); the classification service runs in this process (uvicorn in a thread, PyTorch backend)."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest

import predict
import serve
from tests.conftest import ROOT
from tests.test_export import exported_ner_run, random_classifier
from utils.core.conll import read_conll
from utils.core.errors import ConfigError
from utils.serving.http import Limits, create_app
from utils.serving.predictor import Predictor

NER_DATA = ROOT / "data" / "ner"
#: Debian's chromium package installs /usr/bin/chromium (.ci/run installs it where apt can); elsewhere any chromium on
#: PATH serves.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MAX_TEXTS, MAX_CHARS = 64, 5000
NER_OPTIONS = ["--backend", "onnx-fp32", "--context_size", "8"]
LONG = " ".join(["Officials in Brussels and Washington met in Geneva ."] * 40)  # over 512 tokens: windowed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(
    url: str, process: subprocess.Popen | None = None, log: Path | None = None, seconds: float = 240
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the server at {url} did not come up in {seconds} s")


class Service:
    def __init__(self, url: str, process: subprocess.Popen | None = None, log: Path | None = None):
        self.url, self.process, self.log = url, process, log

    def post(self, body, **kwargs) -> httpx.Response:
        if isinstance(body, (bytes, str)):
            return httpx.post(f"{self.url}/predict", content=body, timeout=120, **kwargs)
        return httpx.post(f"{self.url}/predict", json=body, timeout=120, **kwargs)

    def results(self, body) -> list[dict]:
        answer = self.post(body)
        assert answer.status_code == 200, answer.text
        return answer.json()["results"]


@pytest.fixture(scope="module")
def ner_model(tiny_model, tmp_path_factory) -> str:
    return exported_ner_run(tiny_model, tmp_path_factory)


@pytest.fixture(scope="module")
def ner_service(ner_model, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    command = [
        sys.executable,
        str(ROOT / "serve.py"),
        "--model",
        ner_model,
        *NER_OPTIONS,
        "--port",
        str(port),
        "--max_texts_per_request",
        str(MAX_TEXTS),
        "--max_chars_per_text",
        str(MAX_CHARS),
        "--max_batch_size",
        "32",
        "--max_wait_ms",
        "20",
    ]
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    service = Service(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_up(service.url, process, log)
        yield service
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


@pytest.fixture(scope="module")
def classifier_service(tiny_model, tmp_path_factory):
    """A random tiny sentiment classifier saved as a run saves it, served by uvicorn in a thread of this process."""
    directory = random_classifier(
        tiny_model, tmp_path_factory.mktemp("served-classifier"), ["negative", "neutral", "positive"]
    )
    predictor = Predictor.from_pretrained(directory, device="cpu", backend="torch")
    with served_in_thread(create_app(predictor, directory, Limits(max_texts=8))) as service:
        service.predictor = predictor
        yield service


@contextlib.contextmanager
def served_in_thread(app):
    """`app` on uvicorn in a thread of this process, on the pure-Python HTTP stack (h11, asyncio); the NER service
    subprocess runs uvicorn's default, httptools and uvloop (requirements.txt), so both are tested."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, http="h11", loop="asyncio", host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        service = Service(f"http://127.0.0.1:{port}")
        wait_until_up(service.url, seconds=60)
        yield service
    finally:
        server.should_exit = True
        thread.join(30)


def sample_texts() -> list[str]:
    return [" ".join(tokens) for tokens in read_conll(NER_DATA / "test.conll").tokens[:40]] + ["", LONG, "Zürich !"]


def entity_spans(results: list[dict]) -> list[list[tuple]]:
    return [[(e["label"], e["start"], e["end"]) for e in r["entities"]] for r in results]


# ---------------------------------------------------------------- what it answers


def test_health_info_docs_and_the_page(ner_service):
    assert httpx.get(f"{ner_service.url}/health").json()["status"] == "ok"
    info = httpx.get(f"{ner_service.url}/info").json()
    assert info["task"] == "ner" and info["backend"] == "onnx-fp32" and info["labels"][0] == "O"
    assert info["batch_dependent"] is None and info["settings"]["row_parallel"] == 0  # fp32: whatever the batch
    assert info["base_model"] and info["settings"]["context_size"] == 8 and info["inputs"] == ["texts", "tokens"]
    assert info["limits"]["max_texts_per_request"] == MAX_TEXTS and info["limits"]["max_chars_per_text"] == MAX_CHARS
    assert info["limits"]["max_batch_size"] == 32 and info["limits"]["max_wait_ms"] == 20
    spec = httpx.get(f"{ner_service.url}/openapi.json").json()
    schema = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"texts", "tokens", "document_ids"} <= set(schema["properties"]) and schema["properties"]["texts"][
        "maxItems"
    ] == MAX_TEXTS
    assert "text_pairs" not in schema["properties"]  # the request schema is the task's: NER takes no pairs
    assert {"400", "413", "422"} <= set(spec["paths"]["/predict"]["post"]["responses"])
    assert httpx.get(f"{ner_service.url}/docs").status_code == 200
    page = httpx.get(ner_service.url)
    assert page.headers["content-type"].startswith("text/html") and '<textarea id="input"' in page.text


def test_results_equal_predict_py(ner_service, ner_model, tmp_path):
    texts = sample_texts()
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    predict.main(
        [
            "--model",
            ner_model,
            *NER_OPTIONS,
            "--input",
            str(tmp_path / "in.txt"),
            "--output",
            str(tmp_path / "out.jsonl"),
        ]
    )
    expected = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert ner_service.results({"texts": texts}) == expected
    assert sum(len(r["entities"]) for r in expected) > 0
    # pre-split words with documents: the JSONL predict.py reads
    corpus = read_conll(NER_DATA / "test.conll")
    tokens, documents = corpus.tokens[:24], [f"doc{i // 5}" for i in range(24)]
    lines = [json.dumps({"tokens": t, "document_id": d}) for t, d in zip(tokens, documents)]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    predict.main(
        [
            "--model",
            ner_model,
            *NER_OPTIONS,
            "--input",
            str(tmp_path / "in.jsonl"),
            "--output",
            str(tmp_path / "out.jsonl"),
        ]
    )
    expected = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert ner_service.results({"tokens": tokens, "document_ids": documents}) == expected
    assert ner_service.results({"texts": []}) == []


def test_int8_rows_alone_answer_concurrent_clients_as_predict_py(ner_model, tmp_path):
    """With --row_parallel the int8 graph's answers do not depend on batchmates: 48 single-sentence requests sent
    at once, gathered into batches as they come, equal predict.py's lines for the same sentences exactly."""
    texts = [" ".join(tokens) for tokens in read_conll(NER_DATA / "test.conll").tokens[:48]]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    predict.main(
        [
            "--model",
            ner_model,
            "--backend",
            "onnx-int8",
            "--row_parallel",
            "--input",
            str(tmp_path / "in.txt"),
            "--output",
            str(tmp_path / "out.jsonl"),
        ]
    )
    expected = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    predictor = Predictor.from_pretrained(
        ner_model, device="cpu", backend="onnx-int8", batch_size=8, row_parallel=True
    )
    with served_in_thread(create_app(predictor, ner_model, Limits(max_wait_ms=20))) as service:
        info = httpx.get(f"{service.url}/info").json()
        assert info["backend"] == "onnx-int8" and info["batch_dependent"] is None
        assert info["settings"]["row_parallel"] >= 1

        async def clients() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=service.url, timeout=120) as client:
                return await asyncio.gather(*(client.post("/predict", json={"texts": [text]}) for text in texts))

        answers = asyncio.run(clients())
        health = httpx.get(f"{service.url}/health").json()
    assert [answer.json()["results"][0] for answer in answers] == expected
    assert health["batches"] < len(texts)  # the requests were gathered
    assert sum(len(line["entities"]) for line in expected) > 0


def test_concurrent_clients_get_their_own_results(ner_service):
    """64 clients at once; requests reuse the same document ids, which must not mix across requests."""
    corpus = read_conll(NER_DATA / "test.conll").tokens
    requests = []
    for index in range(128):
        start = (index * 7) % (len(corpus) - 3)
        size = 1 + index % 3
        if index % 2:
            requests.append({"tokens": corpus[start : start + size], "document_ids": ["same"] * size})
        else:
            requests.append({"texts": [" ".join(t) for t in corpus[start : start + size]]})
    expected = [ner_service.results(body) for body in requests[:32]]  # one at a time
    before = httpx.get(f"{ner_service.url}/health").json()

    async def clients() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=ner_service.url, timeout=120, limits=limits) as client:
            queue = list(enumerate(requests))
            answers: dict[int, httpx.Response] = {}

            async def client_loop() -> None:
                while queue:
                    index, body = queue.pop()
                    answers[index] = await client.post("/predict", json=body)

            await asyncio.gather(*(client_loop() for _ in range(64)))
            return [answers[i] for i in range(len(requests))]

    answers = asyncio.run(clients())
    assert [a.status_code for a in answers] == [200] * len(requests)
    for body, answer, alone in zip(requests, answers, expected):
        got = answer.json()["results"]
        assert len(got) == len(body.get("texts") or body["tokens"])
        assert entity_spans(got) == entity_spans(alone)
        assert [e["score"] for r in got for e in r["entities"]] == pytest.approx(
            [e["score"] for r in alone for e in r["entities"]], abs=2e-4
        )
    after = httpx.get(f"{ner_service.url}/health").json()
    batches, requests_served = after["batches"] - before["batches"], after["requests"] - before["requests"]
    assert requests_served == len(requests) and batches < requests_served / 2, after  # they were gathered


BAD_REQUESTS = [
    # (body, content type, status, what the error says)
    (b'{"texts": ["a"', "application/json", 400, "not valid JSON"),
    (b"\xff\xfe{}", "application/json", 400, "not valid JSON (not UTF-8)"),
    (b"texts=a", "application/x-www-form-urlencoded", 415, "Content-Type 'application/x-www-form-urlencoded': the"),
    (b'{"texts": ["a"]}', "text/plain", 415, "the body must be JSON, sent as application/json"),
    (b'{"texts": ["ok", "a\\ud800b"]}', "application/json", 400, "'texts[1]' holds a lone surrogate"),
    (b'{"texts": ["\\udc00"]}', "application/json; charset=utf-8", 400, "'texts[0]' holds a lone surrogate"),
    (b'{"tokens": [["a", "\\ud83d"]]}', "application/json", 400, "'tokens[0][1]' holds a lone surrogate"),
    (b'{"\\ud800": 1}', "application/json", 400, "'a key of the body' holds a lone surrogate"),
    (b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json", 400, "nested too deeply"),
    (b'{"texts": ["a"], "document_ids": [' + b"9" * 5000 + b"]}", "application/json", 400, "Exceeds the limit"),
    (b"", "application/json", 400, "not valid JSON"),
    (b'["a"]', "application/json", 422, "must be a JSON object"),
    (b"{}", "application/json", 422, "give exactly one of 'texts'"),
    (b'{"texts": ["a"], "tokens": [["a"]]}', "application/json", 422, "give exactly one of"),
    (b'{"texts": "a"}', "application/json", 422, "'texts' must be a list of strings, got str"),
    (b'{"texts": ["a", 3]}', "application/json", 422, "'texts[1]' must be a string, got int"),
    (b'{"texts": [null]}', "application/json", 422, "'texts[0]' must be a string, got NoneType"),
    (b'{"tokens": ["a b"]}', "application/json", 422, "'tokens[0]' must be a list of strings"),
    (b'{"tokens": [["a", 1]]}', "application/json", 422, "'tokens[0][1]' must be a string"),
    (b'{"text": ["a"]}', "application/json", 422, "unknown field(s) ['text']"),
    (b'{"texts": ["a"], "document_ids": [1, 2]}', "application/json", 422, "one id per input (1)"),
    (b'{"texts": ["a"], "document_ids": [true]}', "application/json", 422, "must be a string, a whole number"),
    (b'{"texts": ["a"], "text_pairs": ["b"]}', "application/json", 422, "'text_pairs' are not for this model (ner)"),
    (
        json.dumps({"texts": ["a"] * (MAX_TEXTS + 1)}).encode(),
        "application/json",
        413,
        f"{MAX_TEXTS + 1} texts; the limit is {MAX_TEXTS} per request",
    ),
    (
        json.dumps({"texts": ["ok", "x" * (MAX_CHARS + 1)]}).encode(),
        "application/json",
        413,
        f"'texts[1]' has {MAX_CHARS + 1} characters; the limit is {MAX_CHARS}",
    ),
    (json.dumps({"tokens": [["y" * 100] * 60]}).encode(), "application/json", 413, "'tokens[0]' has 6059 characters"),
    (
        b'{"texts": ["' + b"z" * (Limits(MAX_TEXTS, MAX_CHARS).max_body_bytes + 1) + b'"]}',
        "application/json",
        413,
        f"the limit is {Limits(MAX_TEXTS, MAX_CHARS).max_body_bytes} bytes",
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    BAD_REQUESTS,
    ids=[f"{status}-{message[:30]}" for _, _, status, message in BAD_REQUESTS],
)
def test_every_bad_request_gets_a_json_4xx_and_the_server_keeps_serving(
    ner_service, body, content_type, status, message
):
    answer = ner_service.post(body, headers={"content-type": content_type})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json" and message in answer.json()["error"]
    if status == 413 and "limit" in answer.json():
        assert isinstance(answer.json()["limit"], int)
    assert ner_service.results({"texts": ["Kyoto is in Japan ."]})[0]["text"] == "Kyoto is in Japan ."


def test_other_bad_requests(ner_service):
    limit = Limits(MAX_TEXTS, MAX_CHARS).max_body_bytes

    def chunks():  # no Content-Length: the body is refused once it is over the limit, not read to the end
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    answer = httpx.post(f"{ner_service.url}/predict", content=chunks(), timeout=60)
    assert answer.status_code == 413 and f"over the limit of {limit} bytes" in answer.json()["error"]
    for method, path, status in (("GET", "/predict", 405), ("POST", "/nowhere", 404), ("PUT", "/info", 405)):
        answer = httpx.request(method, f"{ner_service.url}{path}")
        assert answer.status_code == status and answer.json()["error"]
    port = int(ner_service.url.rsplit(":", 1)[1])
    for garbage in (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n", b"\x00\x01 not HTTP\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(garbage)
            assert raw.recv(100).startswith(b"HTTP/1.1 400")  # h11 refuses it before the app sees it
    assert httpx.get(f"{ner_service.url}/health").json()["status"] == "ok"


def test_classification_service(classifier_service):
    texts = ["a warm and funny film", "", "dull and far too long " * 30]
    results = classifier_service.results({"texts": texts})
    assert results == classifier_service.predictor.predict(texts)
    assert set(results[0]["probabilities"]) == {"negative", "neutral", "positive"} and results[1]["label"] is None
    pairs = classifier_service.results({"texts": ["a", "b"], "text_pairs": ["c", "d"]})
    assert [r["text_pair"] for r in pairs] == ["c", "d"]
    for body, status, message in (
        ({"tokens": [["a"]]}, 422, "'tokens' are not for this model (classification): it takes texts and sentence"),
        ({"texts": ["a", "b"], "text_pairs": ["c"]}, 422, "2 texts but 1 text_pairs"),
        ({"texts": ["a"] * 9}, 413, "the limit is 8 per request"),
    ):
        answer = classifier_service.post(body)
        assert answer.status_code == status and message in answer.json()["error"]
    info = httpx.get(f"{classifier_service.url}/info").json()
    assert info["task"] == "classification" and info["backend"] == "torch"
    assert info["settings"]["problem_type"] == "single_label_classification"


# ---------------------------------------------------------------- the page, in a real browser


def rendered(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium (`profile`: a fresh user-data folder)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(
            f"no chromium on PATH nor at {CHROMIUM}: the page test needs a headless browser (Debian: apt-get "
            "install chromium, which .ci/run does where apt-get runs as root)"
        )
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_the_page_highlights_entities_in_a_browser(ner_service, tmp_path):
    texts = [t for t, r in zip(sample_texts(), ner_service.results({"texts": sample_texts()})) if r["entities"]]
    assert texts, "the tiny model tags no entity in the sample"
    text = texts[0]
    entities = ner_service.results({"texts": [text]})[0]["entities"]
    dom = rendered(f"{ner_service.url}/?text={urllib.parse.quote(text)}", tmp_path)
    assert 'data-state="done"' in dom, dom[-2000:]
    marks = re.findall(r'<mark class="entity" data-label="([^"]+)"[^>]*>(.*?)<sup>', dom)
    assert [(label, html.unescape(inner)) for label, inner in marks] == [(e["label"], e["text"]) for e in entities]
    assert "ner model" in dom and "onnx-fp32" in dom  # the /info line


def test_the_page_shows_probabilities_as_bars_in_a_browser(classifier_service, tmp_path):
    dom = rendered(f"{classifier_service.url}/?text={urllib.parse.quote('a warm and funny film')}", tmp_path)
    assert 'data-state="done"' in dom, dom[-2000:]
    bars = re.findall(r'<div class="bar( chosen)?" data-label="([^"]+)">', dom)
    assert sorted(label for _, label in bars) == ["negative", "neutral", "positive"]
    chosen = [label for mark, label in bars if mark]
    assert chosen == [classifier_service.predictor.predict(["a warm and funny film"])[0]["label"]]


# ---------------------------------------------------------------- shutdown (last: it stops the NER service)


def test_sigterm_finishes_the_requests_in_flight_then_stops(ner_service):
    body = {"texts": [LONG * 2] * 24}  # about a second of work: in flight when the signal comes
    outcome: dict = {}

    def send() -> None:
        outcome["answer"] = ner_service.post(body)
        outcome["at"] = time.monotonic()

    before = httpx.get(f"{ner_service.url}/health").json()
    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = httpx.get(f"{ner_service.url}/health").json()
        if now["requests"] > before["requests"]:
            break
        time.sleep(0.01)
    assert now["batches"] == before["batches"], "the request finished before the signal could be sent"
    signalled = time.monotonic()
    ner_service.process.send_signal(signal.SIGTERM)
    sender.join(120)
    assert outcome["answer"].status_code == 200 and outcome["at"] > signalled
    assert len(outcome["answer"].json()["results"]) == 24
    # uvicorn (0.29+) re-raises the signal once it has shut down cleanly, so the exit status is the signal's
    assert ner_service.process.wait(60) in (0, -signal.SIGTERM)
    log = ner_service.log.read_text(encoding="utf-8")
    assert "Waiting for application shutdown" in log and "Finished server process" in log and "Traceback" not in log
    assert '"failed_requests": 0' in log  # the batcher's counters, logged once it stopped
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{ner_service.url}/health", timeout=5)


def test_bad_flags_are_errors_before_the_model_loads(tmp_path):
    for flags, message in (
        (["--port", "70000"], "--port 70000 is not a port number"),
        (["--max_batch_size", "0"], "--max_batch_size must be positive"),
        (["--max_wait_ms", "-1"], "--max_wait_ms must be 0 or more"),
        (["--shutdown_grace_seconds", "-1"], "--shutdown_grace_seconds must be 0 or more seconds"),
    ):
        with pytest.raises(ConfigError, match=message):
            serve.main(["--model", str(tmp_path / "missing"), *flags])
    with pytest.raises(ConfigError, match="does not exist"):
        serve.main(["--model", str(tmp_path / "missing"), "--port", "0"])


def test_the_http_stack_is_the_fastest_installed_and_a_missing_one_is_an_error(monkeypatch, tmp_path):
    from utils.serving import arguments
    from utils.serving.http import server_notes

    args = arguments.ServeArguments()
    assert (args.http, args.loop) == ("httptools", "uvloop")  # uvicorn[standard], in requirements.txt
    assert server_notes(args.http, args.loop) == []
    monkeypatch.setattr(arguments, "installed", lambda package: False)
    args = arguments.ServeArguments()
    assert (args.http, args.loop) == ("h11", "asyncio")
    (note,) = server_notes(args.http, args.loop)
    assert "h11 and asyncio" in note and "pip install 'uvicorn[standard]'" in note
    for flags, message in (
        (["--http", "httptools"], "--http httptools: httptools is not installed"),
        (["--loop", "uvloop"], "--loop uvloop: uvloop is not installed"),
    ):
        with pytest.raises(ConfigError, match=message):
            serve.main(["--model", str(tmp_path / "missing"), *flags])
