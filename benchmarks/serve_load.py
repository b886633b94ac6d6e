"""A bounded load test of serve.py over loopback, per backend: N concurrent clients, a fixed number of requests.

    python benchmarks/serve_load.py --model /tmp/conll_ner --backends torch,onnx-fp32,onnx-int8 \\
        --clients 64 --requests 2000 --output benchmarks/results/serve_load.json

For each backend a fresh `serve.py` listens on a free 127.0.0.1 port. The texts are the first --requests sentences
of the CoNLL-2003 test file (words joined by spaces), one text per request. After a warm-up it measures:
- one request at a time (one client, --sequential_requests requests): throughput and latency;
- --clients concurrent clients sending --requests requests in total: throughput, p50/p95/p99 latency, errors
  (a status other than 200, a broken connection, a timeout), and the server's batching counters;
- the two phases --rounds times in turn (this virtual machine's speed drifts by up to a third between minutes, so
  the ratio of the two phases is taken from rounds that alternate, and each round's ratio is given too);
- the model alone, in this process once the server has stopped (the ceiling of what gathering requests can gain on
  this machine): `Predictor.predict` with one text per call against calls of --max_batch_size texts, and the
  forward pass alone on rows of the texts' median token length, one row against one pass of --max_batch_size rows;
- agreement with predict.py run on the same texts with the same backend: the fraction of results equal to its line
  (every field the same, numbers within SCORE_TOLERANCE: a score printed with 4 decimals can round the other way
  when the batch, and so the padding, differs), identical to it byte for byte, and with the same entities or label.
The clients speak plain HTTP/1.1 over keep-alive asyncio connections, so they cost the shared CPUs little. Every
loop is bounded by a count and by --max_seconds; only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.reporting import machine, write_results  # noqa: E402

HOST = "127.0.0.1"  # loopback only
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class Connection:
    """One keep-alive HTTP/1.1 connection: POST a JSON body, read the status and the JSON answer."""

    def __init__(self, port: int):
        self.port, self.reader, self.writer = port, None, None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "connection" and value.strip().lower() == "close":
                close = True
        answer = await self.reader.readexactly(length)
        if close:
            await self.close()
        return int(status_line.split()[1]), answer

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))] if ordered else 0.0


async def load(port: int, texts: list[str], clients: int, timeout: float, deadline: float) -> dict:
    """`clients` connections sending one request per text (each text once), as fast as answers come."""
    queue = list(reversed(range(len(texts))))
    latencies, errors, results = [], [], {}

    async def client() -> None:
        connection = Connection(port)
        try:
            while queue and time.monotonic() < deadline:
                index = queue.pop()
                body = json.dumps({"texts": [texts[index]]}).encode()
                started = time.perf_counter()
                try:
                    status, answer = await asyncio.wait_for(connection.request("POST", "/predict", body), timeout)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as err:
                    errors.append(f"{type(err).__name__}: {err}")
                    await connection.close()
                    continue
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors.append(f"HTTP {status}: {answer[:200]!r}")
                else:
                    results[index] = json.loads(answer)["results"][0]
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return {
        "clients": clients,
        "seconds": time.perf_counter() - started,
        "latencies": latencies,
        "errors": errors,
        "results": results,
    }


def phase_summary(phases: list[dict]) -> dict:
    """The rounds of one phase together: requests per second over their total time, latency percentiles over all
    their requests, and each round's own requests per second (how much the machine drifted)."""
    latencies = [latency for phase in phases for latency in phase["latencies"]]
    errors = [error for phase in phases for error in phase["errors"]]
    seconds = sum(phase["seconds"] for phase in phases)
    return {
        "clients": phases[0]["clients"],
        "rounds": len(phases),
        "requests": len(latencies) + sum(not e.startswith("HTTP") for e in errors),
        "answered": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:5],
        "seconds": seconds,
        "requests_per_second": len(latencies) / seconds if seconds else 0.0,
        "requests_per_second_by_round": [len(phase["latencies"]) / phase["seconds"] for phase in phases],
        "latency_ms": {
            "mean": 1000 * sum(latencies) / len(latencies) if latencies else None,
            "p50": 1000 * percentile(latencies, 50),
            "p95": 1000 * percentile(latencies, 95),
            "p99": 1000 * percentile(latencies, 99),
            "max": 1000 * max(latencies, default=0.0),
        },
    }


async def health(port: int) -> dict:
    connection = Connection(port)
    try:
        status, answer = await connection.request("GET", "/health")
        return json.loads(answer) if status == 200 else {}
    finally:
        await connection.close()


def wait_until_up(port: int, process: subprocess.Popen, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"error: serve.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if asyncio.run(health(port)).get("status") == "ok":
                return
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    sys.exit(f"error: serve.py did not come up in {seconds} s")


ROWS = "+rows"  # a --backends entry like onnx-int8+rows: that backend with --row_parallel (each row alone)
BATCHED = "+batched"  # onnx-int8+batched: that backend with --row_parallel false (rows in padded batches)
DEFAULT = "default"  # no --backend and no --row_parallel: what serve.py and predict.py do when not told


def backend_settings(backend: str) -> tuple[str, bool | None]:
    """A --backends entry as Predictor's backend and row_parallel (None: the default for that backend)."""
    if backend == DEFAULT:
        return "auto", None
    if backend.endswith(ROWS):
        return backend.removesuffix(ROWS), True
    if backend.endswith(BATCHED):
        return backend.removesuffix(BATCHED), False
    return backend, None


def backend_flags(backend: str) -> list[str]:
    """predict.py / serve.py flags for a --backends entry."""
    name, rows = backend_settings(backend)
    return [
        *(["--backend", name] if backend != DEFAULT else []),
        *(["--row_parallel", str(rows).lower()] if rows is not None else []),
    ]


def predict_py(args: argparse.Namespace, backend: str, texts_file: Path, workdir: str) -> list[dict]:
    """predict.py's lines for the same texts with the same backend (the reference the answers must equal)."""
    out = Path(workdir) / f"predict-{backend}.jsonl"
    command = [
        sys.executable,
        str(ROOT / "predict.py"),
        "--model",
        args.model,
        *backend_flags(backend),
        "--input",
        str(texts_file),
        "--output",
        str(out),
        "--input_format",
        "text",
        "--device",
        "cpu",
    ]
    completed = subprocess.run(command, env=ENV, capture_output=True, text=True, cwd=ROOT)
    if completed.returncode != 0:
        sys.exit(f"error: predict.py failed for {backend}:\n{completed.stderr[-3000:]}")
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


SCORE_TOLERANCE = 1e-4  # one unit in the last decimal predict.py prints


def equal_within(ours: object, theirs: object, tolerance: float = SCORE_TOLERANCE) -> bool:
    """JSON values equal, numbers (not booleans) within `tolerance` of each other."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(equal_within(ours[k], theirs[k], tolerance) for k in ours)
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(equal_within(a, b, tolerance) for a, b in zip(ours, theirs))
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (ours, theirs))
    # 0.8123 - 0.8122 is 1.00000000000655e-04 in binary floating point: one unit of the last decimal must count
    return abs(ours - theirs) <= tolerance * (1 + 1e-9) if numbers else ours == theirs


def spans(result: dict) -> list:
    return [(e["label"], e["start"], e["end"]) for e in result.get("entities", [])] or result.get("label")


def per_second(work, items: int, repeats: int = 1) -> float:
    """Items per second of `work()`, run `repeats` times after one warm-up call."""
    work()
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    return items * repeats / (time.perf_counter() - started)


def model_alone(args: argparse.Namespace, backend: str, texts: list[str]) -> dict:
    """What batching gains without HTTP: the predictor and its forward pass, one input against many."""
    import statistics

    from utils.serving.arguments import ServePredictorArguments

    batch_size = args.batch_size or ServePredictorArguments.__dataclass_fields__["batch_size"].default
    predictor = ServePredictorArguments(
        args.model,
        backend=backend_settings(backend)[0],
        device="cpu",
        batch_size=batch_size,
        row_parallel=backend_settings(backend)[1],
    ).load()
    singles, many = texts[: args.sequential_requests], args.max_batch_size

    def one_at_a_time() -> None:
        for text in singles:
            predictor.predict([text])

    def gathered() -> None:
        for start in range(0, len(texts), many):
            predictor.predict(texts[start : start + many])

    length = round(statistics.median(len(ids) for ids in predictor.tokenizer(texts[:500])["input_ids"]))
    row = [predictor.tokenizer.cls_token_id or 0] * length

    def forward(rows: int):
        inputs = {"input_ids": [row] * rows, "attention_mask": [[1] * length] * rows}

        def run() -> None:
            for _ in predictor.forward(inputs):
                pass

        return run

    report = {
        "predict_one_text_per_call": per_second(one_at_a_time, len(singles)),
        f"predict_{many}_texts_per_call": per_second(gathered, len(texts)),
        "median_tokens": length,
        "forward_1_row": per_second(forward(1), 1, 200),
    }
    # one forward pass of `many` rows, whatever the predictor's batch settings
    predictor.forward.batch_size = many
    if getattr(predictor.forward, "max_tokens", None) is not None:
        predictor.forward.max_tokens = many * length
    report[f"forward_{many}_rows_in_one_batch"] = per_second(forward(many), many, 20)
    report["predict_gain"] = report[f"predict_{many}_texts_per_call"] / report["predict_one_text_per_call"]
    report["forward_gain"] = report[f"forward_{many}_rows_in_one_batch"] / report["forward_1_row"]
    return report


def run_backend(args: argparse.Namespace, backend: str, texts: list[str], texts_file: Path, workdir: str) -> dict:
    port = free_port()
    log = Path(workdir) / f"serve-{backend}.log"
    command = [
        sys.executable,
        str(ROOT / "serve.py"),
        "--model",
        args.model,
        *backend_flags(backend),
        "--host",
        HOST,
        "--port",
        str(port),
        "--max_batch_size",
        str(args.max_batch_size),
        "--max_wait_ms",
        str(args.max_wait_ms),
        "--device",
        "cpu",
        "--log_level",
        "warning",
    ]
    if args.batch_size:
        command += ["--batch_size", str(args.batch_size)]
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT)
    try:
        wait_until_up(port, process, 300, log)
        deadline = time.monotonic() + args.max_seconds
        asyncio.run(load(port, texts[: args.warmup], 4, args.timeout, deadline))
        sequential, concurrent, busy, batches, inputs = [], [], 0.0, 0, 0
        for _ in range(args.rounds):  # the phases alternate, so a drift of the machine's speed hits both
            sequential.append(asyncio.run(load(port, texts[: args.sequential_requests], 1, args.timeout, deadline)))
            before = asyncio.run(health(port))
            concurrent.append(asyncio.run(load(port, texts, args.clients, args.timeout, deadline)))
            after = asyncio.run(health(port))
            busy += after.get("busy_seconds", 0) - before.get("busy_seconds", 0)
            batches += after.get("batches", 0) - before.get("batches", 0)
            inputs += after.get("inputs", 0) - before.get("inputs", 0)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            exit_status = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            exit_status = "killed"
    alone = model_alone(args, backend, texts)
    reference = predict_py(args, backend, texts_file, workdir)
    answered = [(index, result) for phase in concurrent for index, result in phase["results"].items()]
    exact = sum(result == reference[i] for i, result in answered)
    equal = sum(equal_within(result, reference[i]) for i, result in answered)
    same = sum(spans(result) == spans(reference[i]) for i, result in answered)
    one, many = phase_summary(sequential), phase_summary(concurrent)
    return {
        "backend": backend,
        "sequential": one,
        "concurrent": many,
        "speedup_over_sequential": many["requests_per_second"] / one["requests_per_second"]
        if one["requests_per_second"]
        else None,
        "speedup_by_round": [
            b / a for a, b in zip(one["requests_per_second_by_round"], many["requests_per_second_by_round"]) if a
        ],
        "model_alone": alone,
        "server_batches": batches,
        "mean_batch_size": inputs / batches if batches else None,
        "server_busy_fraction": busy / many["seconds"] if many["seconds"] else None,
        "equal_to_predict_py": equal / len(answered) if answered else None,
        "identical_to_predict_py": exact / len(answered) if answered else None,
        "same_entities_as_predict_py": same / len(answered) if answered else None,
        "exit_status_after_sigterm": exit_status,
    }


def markdown(report: dict) -> str:
    lines = [
        f"`{report['model']}`, {report['requests']} requests of one CoNLL-2003 test sentence each, "
        f"{report['clients']} concurrent clients over loopback; server --max_batch_size "
        f"{report['max_batch_size']} --max_wait_ms {report['max_wait_ms']} --batch_size "
        f"{report['batch_size'] or 'default'}; one request at a time: "
        f"{report['sequential_requests']} requests; the two phases alternate {report['rounds']} times (the "
        "figures count every round; x per round in brackets). "
        f"Load average {report['load_average']:.2f} before the runs "
        f"({report['machine']['cpu_count']} CPUs).",
        "",
        "| backend | req/s, 1 at a time | p50 ms | req/s, concurrent | x 1 at a time | p50 ms | p95 ms | "
        "p99 ms | errors | mean batch | equal to predict.py (±1e-4) | byte-identical | same entities |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        one, many = run["sequential"], run["concurrent"]
        lines.append(
            f"| {run['backend']} | {one['requests_per_second']:.1f} | {one['latency_ms']['p50']:.1f} | "
            f"{many['requests_per_second']:.1f} | {run['speedup_over_sequential']:.2f}x ("
            f"{', '.join(f'{x:.2f}' for x in run['speedup_by_round'])}) | "
            f"{many['latency_ms']['p50']:.0f} | {many['latency_ms']['p95']:.0f} | "
            f"{many['latency_ms']['p99']:.0f} | {many['errors']} | {run['mean_batch_size']:.1f} | "
            f"{run['equal_to_predict_py']:.2%} | {run['identical_to_predict_py']:.2%} | "
            f"{run['same_entities_as_predict_py']:.2%} |"
        )
    many = report["max_batch_size"]
    lines += [
        "",
        "The model alone, in one process (no HTTP): texts or rows per second.",
        "",
        f"| backend | predict, 1 text per call | {many} texts per call | gain | forward, 1 row | "
        f"{many} rows in one pass | gain | median tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        alone = run["model_alone"]
        lines.append(
            f"| {run['backend']} | {alone['predict_one_text_per_call']:.1f} | "
            f"{alone[f'predict_{many}_texts_per_call']:.1f} | {alone['predict_gain']:.2f}x | "
            f"{alone['forward_1_row']:.1f} | {alone[f'forward_{many}_rows_in_one_batch']:.1f} | "
            f"{alone['forward_gain']:.2f}x | {alone['median_tokens']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A fine-tuned NER run directory (exported for onnx-*).")
    parser.add_argument("--conll", default=str(ROOT.parent / "shared" / "data" / "conll2003" / "test.txt"))
    parser.add_argument(
        "--backends",
        default="torch,onnx-fp32,onnx-int8",
        help=f"Comma-separated; {DEFAULT}: no --backend nor --row_parallel (serve.py's and predict.py's defaults); "
        f"a backend with {ROWS} (onnx-int8{ROWS}) runs with --row_parallel, with {BATCHED} with --row_parallel false.",
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2000, help="Concurrent phase: requests in total.")
    parser.add_argument("--sequential_requests", type=int, default=300, help="One-at-a-time phase.")
    parser.add_argument("--rounds", type=int, default=3, help="Times the two phases alternate (each counts).")
    parser.add_argument("--warmup", type=int, default=32)
    parser.add_argument("--max_batch_size", type=int, default=64)
    parser.add_argument("--max_wait_ms", type=float, default=5.0)
    parser.add_argument("--batch_size", type=int, default=None, help="serve.py --batch_size (default: its own).")
    parser.add_argument("--timeout", type=float, default=60.0, help="Seconds one request may take.")
    parser.add_argument("--max_seconds", type=float, default=600.0, help="Bound on each backend's load phases.")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.json")
    args = parser.parse_args()
    if not 1 <= args.clients <= 512 or not 1 <= args.requests <= 100_000 or not 1 <= args.rounds <= 20:
        sys.exit("error: --clients must be 1-512, --requests 1-100000 and --rounds 1-20 (a bounded test).")
    from utils.core.conll import read_conll

    texts = [" ".join(tokens) for tokens in read_conll(args.conll).tokens if tokens][: args.requests]
    load_average = os.getloadavg()[0]
    runs = []
    with tempfile.TemporaryDirectory() as workdir:
        texts_file = Path(workdir) / "texts.txt"
        texts_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        for backend in [name.strip() for name in args.backends.split(",") if name.strip()]:
            print(f"{backend} ...", flush=True)
            runs.append(run_backend(args, backend, texts, texts_file, workdir))
    report = {
        "model": args.model,
        "conll": args.conll,
        "requests": len(texts),
        "clients": args.clients,
        "sequential_requests": args.sequential_requests,
        "rounds": args.rounds,
        "max_batch_size": args.max_batch_size,
        "max_wait_ms": args.max_wait_ms,
        "batch_size": args.batch_size,
        "load_average": load_average,
        "load_average_after": os.getloadavg()[0],
        "runs": runs,
        "machine": machine(),
    }
    write_results(args.output, report, markdown(report))


if __name__ == "__main__":
    main()
