"""serve.py settings side by side: a server per setting, all up at once, the load rounds alternating between them.

    python benchmarks/serve_ab.py --model /tmp/conll_ner \\
        --config "httptools+uvloop=--http httptools --loop uvloop" --config "h11+asyncio=--http h11 --loop asyncio" \\
        --output benchmarks/results/serve_ab_http.json

benchmarks/serve_load.py measures one server at a time, and this virtual machine's speed drifts by up to a third
within minutes, so two of its runs compare the drift as much as the settings. Here every setting's server
(`LABEL=serve.py flags`, after --model, --host, --port, --device cpu) is started first; each round then sends the
concurrent load (--clients keep-alive clients, --requests CoNLL-2003 test sentences, one per request) and the one-at-
a-time load (--sequential_requests, none when 0) to every server in turn, the order reversed every other round.
Reported per setting: requests per second per round and their median, errors, the ratio of the medians. Servers
idle between their turns; only loopback addresses are used and every phase is bounded by --max_seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import ENV, HOST, ROOT, free_port, load, wait_until_up

from benchmarks.reporting import machine, write_results


def start(label: str, flags: str, args: argparse.Namespace, workdir: str) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    log = Path(workdir) / f"serve-{len(os.listdir(workdir))}.log"
    command = [
        sys.executable,
        str(ROOT / "serve.py"),
        "--model",
        args.model,
        "--host",
        HOST,
        "--port",
        str(port),
        "--device",
        "cpu",
        "--log_level",
        "warning",
        *shlex.split(flags),
    ]
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT)
    return process, port, log


def rate(port: int, texts: list[str], clients: int, args: argparse.Namespace) -> tuple[float, list[str]]:
    outcome = asyncio.run(load(port, texts, clients, args.timeout, time.monotonic() + args.max_seconds))
    return len(outcome["latencies"]) / outcome["seconds"], outcome["errors"]


def markdown(report: dict) -> str:
    lines = [
        f"`{report['model']}`, {report['requests']} requests from {report['clients']} concurrent clients and "
        f"{report['sequential_requests']} one at a time per round, {report['rounds']} rounds alternating between "
        f"the servers; load average {report['load_average']:.2f} before.",
        "",
        "| setting | serve.py flags | req/s concurrent, median (rounds) | req/s one at a time, median (rounds) | "
        "x one at a time | errors |",
        "|---|---|---|---|---|---|",
    ]
    for run in report["settings"]:
        one = run["sequential_median"]
        lines.append(
            f"| {run['label']} | `{run['flags']}` | {run['concurrent_median']:.1f} "
            f"({', '.join(f'{value:.0f}' for value in run['concurrent'])}) | "
            + (
                f"{one:.1f} ({', '.join(f'{value:.0f}' for value in run['sequential'])}) | "
                f"{run['concurrent_median'] / one:.2f}x"
                if one
                else "- | -"
            )
            + f" | {run['errors']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A fine-tuned NER run directory.")
    parser.add_argument(
        "--config",
        action="append",
        required=True,
        metavar="LABEL=FLAGS",
        help="A setting: its label and serve.py flags (repeat, at least twice).",
    )
    parser.add_argument("--conll", default=str(ROOT.parent / "shared" / "data" / "conll2003" / "test.txt"))
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--sequential_requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--max_seconds", type=float, default=300.0, help="Bound on each phase.")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "serve_ab.json")
    args = parser.parse_args()
    settings = [config.split("=", 1) for config in args.config]
    if len(settings) < 2 or any(len(setting) != 2 or not setting[0] for setting in settings):
        sys.exit("error: give at least two --config LABEL=FLAGS.")
    if not 1 <= args.clients <= 512 or not 1 <= args.requests <= 100_000 or not 1 <= args.rounds <= 20:
        sys.exit("error: --clients must be 1-512, --requests 1-100000 and --rounds 1-20 (a bounded test).")
    from utils.core.conll import read_conll

    texts = [" ".join(tokens) for tokens in read_conll(args.conll).tokens if tokens][: args.requests]
    load_average = os.getloadavg()[0]
    runs = [
        {"label": label, "flags": flags, "concurrent": [], "sequential": [], "errors": 0} for label, flags in settings
    ]
    with tempfile.TemporaryDirectory() as workdir:
        servers = [start(label, flags, args, workdir) for label, flags in settings]
        try:
            for process, port, log in servers:
                wait_until_up(port, process, 300, log)
                rate(port, texts[:64], 8, args)  # warm-up
            for round_number in range(args.rounds):
                order = list(range(len(servers)))
                for index in order if round_number % 2 == 0 else order[::-1]:
                    port = servers[index][1]
                    per_second, errors = rate(port, texts, args.clients, args)
                    runs[index]["concurrent"].append(per_second)
                    runs[index]["errors"] += len(errors)
                    if args.sequential_requests:
                        per_second, errors = rate(port, texts[: args.sequential_requests], 1, args)
                        runs[index]["sequential"].append(per_second)
                        runs[index]["errors"] += len(errors)
        finally:
            for process, _, _ in servers:
                process.send_signal(signal.SIGTERM)
            for process, _, _ in servers:
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
    for run in runs:
        run["concurrent_median"] = statistics.median(run["concurrent"])
        run["sequential_median"] = statistics.median(run["sequential"]) if run["sequential"] else None
    report = {
        "model": args.model,
        "requests": len(texts),
        "clients": args.clients,
        "sequential_requests": args.sequential_requests,
        "rounds": args.rounds,
        "load_average": load_average,
        "load_average_after": os.getloadavg()[0],
        "settings": runs,
        "machine": machine(),
    }
    write_results(args.output, report, markdown(report))


if __name__ == "__main__":
    main()
