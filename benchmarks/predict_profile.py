"""Where predict time goes: each model's `Predictor.predict` over the same texts, split into the forward passes (the
backend's calls) and everything else (tokenising, windows, decoding, result records: the per-text work), rounds
interleaved across the models in one process. docs/distillation.md uses it to say why a model with half the layers is
not twice as fast end to end. With an ONNX backend each round also times the graph alone on the rows the kit fed it
(`graph_alone_seconds`): the most any work around the graph could give on this CPU. `--backend` and `--row_parallel`
(predict.py's flags) are given once for every model or once per model, so one model can be timed several ways.

    python benchmarks/predict_profile.py --model /work/models/distill_bench/teacher \\
        --model /work/models/distill_bench/distilled-3 --texts /work/models/distill_bench/texts.json \\
        --output benchmarks/results/predict_profile_ner.json
    # the teacher on PyTorch beside its 3-layer student on PyTorch and on int8 ONNX (rows alone, then in batches)
    python benchmarks/predict_profile.py --model /work/models/distill_bench/teacher --backend torch \\
        --row_parallel auto --model /work/models/distill_bench/distilled-3 --backend torch --row_parallel auto \\
        --model /work/models/distill_bench/distilled-3 --backend onnx-int8 --row_parallel auto \\
        --model /work/models/distill_bench/distilled-3 --backend onnx-int8 --row_parallel false \\
        --texts /work/models/distill_bench/texts.json --rounds 7 \\
        --output benchmarks/results/predict_profile_ner_graph_alone_batched.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.reporting import machine, markdown_table, write_results  # noqa: E402


class TimedForward:
    """A backend's forward callable, timed: `seconds` adds up the time spent producing its batches; `inputs` keeps
    what it was given since the last reset."""

    def __init__(self, inner: Callable[[Any], Iterator[Any]]) -> None:
        self.inner, self.seconds, self.inputs = inner, 0.0, []

    def reset(self) -> None:
        self.seconds, self.inputs = 0.0, []

    def __call__(self, inputs: Any) -> Iterator[Any]:
        self.inputs.append(inputs)
        batches = iter(self.inner(inputs))
        while True:
            started = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                self.seconds += time.perf_counter() - started
                return
            self.seconds += time.perf_counter() - started
            yield batch


def graph_alone_seconds(forward: Any, calls: list[Any]) -> float | None:
    """Seconds the ONNX graph takes alone on the rows of `calls` (the inputs the kit fed `forward`), run as the kit
    runs them (`forward.groups`: each row alone on `parallel_rows` threads, which share the rows in turn; else
    length batches one after the other) with every feed built beforehand and nothing between two runs. None for the
    PyTorch backend."""
    session = getattr(forward, "session", None)
    if session is None:
        return None
    workers = forward.parallel_rows or 1
    feeds = [
        forward.feeds(inputs, batch)
        for inputs in calls
        for batch in forward.groups([len(row) for row in inputs["input_ids"]])
    ]

    def run(share: list[dict[str, Any]]) -> None:
        for feed in share:
            session.run(None, feed)

    with ThreadPoolExecutor(workers) as pool:
        started = time.perf_counter()
        list(pool.map(run, [feeds[worker::workers] for worker in range(workers)]))
        return time.perf_counter() - started


def timed_predictor(model: str, backend: str, batch_size: int, row_parallel: bool | None = None):
    from utils.serving.predictor import Predictor

    predictor = Predictor.from_pretrained(
        model, device="cpu", batch_size=batch_size, backend=backend, row_parallel=row_parallel
    )
    timer = TimedForward(predictor.prediction.forward)
    predictor.prediction = dataclasses.replace(predictor.prediction, forward=timer)
    return predictor, timer


def per_model(parser: argparse.ArgumentParser, flag: str, values: list[str], models: int) -> list[str]:
    """A flag given once (for every --model) or once per --model, as one value per model."""
    if len(values) not in (1, models):
        parser.error(f"give {flag} once, or once per --model ({models}), not {len(values)} times")
    return values * models if len(values) == 1 else values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="A saved model's directory (repeat).")
    parser.add_argument("--texts", required=True, help="A JSON list of texts.")
    parser.add_argument(
        "--backend", action="append", help="predict.py's --backend: once for every --model, or once per --model."
    )
    parser.add_argument(
        "--row_parallel",
        action="append",
        choices=["auto", "true", "false"],
        help="predict.py's --row_parallel for ONNX (auto: its default): once for every --model, or once per --model.",
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    backends = per_model(parser, "--backend", args.backend or ["torch"], len(args.model))
    rows = per_model(parser, "--row_parallel", args.row_parallel or ["auto"], len(args.model))
    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    systems = {}
    for model, backend, row_parallel in zip(args.model, backends, rows, strict=True):
        name = f"{model} ({backend}{'' if row_parallel == 'auto' else ', row_parallel ' + row_parallel})"
        setting = None if row_parallel == "auto" else row_parallel == "true"
        systems[name] = timed_predictor(model, backend, args.batch_size, setting)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in systems}
    for predictor, _ in systems.values():
        predictor.predict(texts[:64])  # warm-up
    for _ in range(args.rounds):
        for name, (predictor, timer) in systems.items():
            timer.reset()
            started = time.perf_counter()
            predictor.predict(texts)
            total = time.perf_counter() - started
            measured = {"seconds": total, "forward_seconds": timer.seconds}
            alone = graph_alone_seconds(timer.inner, timer.inputs)
            if alone is not None:
                measured["graph_alone_seconds"] = alone
            rounds[name].append(measured)
    results = {}
    for name, measured in rounds.items():
        total = statistics.median(r["seconds"] for r in measured)
        results[name] = {
            "texts_per_second": len(texts) / total,
            "texts_per_second_rounds": [round(len(texts) / r["seconds"], 1) for r in measured],
            "seconds": total,
            "forward_seconds": statistics.median(r["forward_seconds"] for r in measured),
            "other_seconds": statistics.median(r["seconds"] - r["forward_seconds"] for r in measured),
        }
        if "graph_alone_seconds" in measured[0]:
            alone = statistics.median(r["graph_alone_seconds"] for r in measured)
            results[name]["graph_alone_seconds"] = alone
            results[name]["graph_alone_texts_per_second"] = len(texts) / alone
            results[name]["graph_alone_texts_per_second_rounds"] = [
                round(len(texts) / r["graph_alone_seconds"], 1) for r in measured
            ]
    report = {
        "command": "python " + " ".join(sys.argv),
        "texts": len(texts),
        "rounds": args.rounds,
        "models": results,
        "machine": machine(),
    }
    info = report["machine"]
    title = (
        f"Predict time by part ({info['cpu']}, {', '.join(info['cpu_features'])}; {info['torch_threads']} torch "
        f"threads; {len(texts)} texts, median of {args.rounds} interleaved rounds)."
    )
    alone = any("graph_alone_seconds" in row for row in results.values())
    columns = ["model (backend)", "texts/s", "seconds", "forward passes", "per-text work", "texts/s by round"]
    columns += ["graph alone, seconds", "graph alone, texts/s"] if alone else []
    cells = []
    for name, row in results.items():
        cells.append(
            [name, f"{row['texts_per_second']:.1f}", f"{row['seconds']:.3f}", f"{row['forward_seconds']:.3f}"]
            + [f"{row['other_seconds']:.3f}", ", ".join(str(v) for v in row["texts_per_second_rounds"])]
        )
        if alone and "graph_alone_seconds" in row:
            cells[-1] += [f"{row['graph_alone_seconds']:.3f}", f"{row['graph_alone_texts_per_second']:.1f}"]
        elif alone:
            cells[-1] += ["", ""]
    write_results(Path(args.output), report, "\n".join([title, "", *markdown_table(columns, cells)]) + "\n")


if __name__ == "__main__":
    main()
