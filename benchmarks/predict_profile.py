"""Where predict time goes: each model's `Predictor.predict` over the same texts, split into the forward passes (the
backend's calls) and everything else (tokenising, windows, decoding, result records: the per-text work), rounds
interleaved across the models in one process. docs/distillation.md uses it to say why a model with half the layers is
not twice as fast end to end.

    python benchmarks/predict_profile.py --model /work/models/distill_bench/teacher \\
        --model /work/models/distill_bench/distilled-3 --texts /work/models/distill_bench/texts.json \\
        --output benchmarks/results/predict_profile_ner.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.reporting import machine, markdown_table, write_results  # noqa: E402


class TimedForward:
    """A backend's forward callable, timed: `seconds` adds up the time spent producing its batches."""

    def __init__(self, inner: Callable[[Any], Iterator[Any]]) -> None:
        self.inner, self.seconds = inner, 0.0

    def __call__(self, inputs: Any) -> Iterator[Any]:
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


def timed_predictor(model: str, backend: str, batch_size: int):
    from utils.serving.predictor import Predictor

    predictor = Predictor.from_pretrained(model, device="cpu", batch_size=batch_size, backend=backend)
    timer = TimedForward(predictor.prediction.forward)
    predictor.prediction = dataclasses.replace(predictor.prediction, forward=timer)
    return predictor, timer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="A saved model's directory (repeat).")
    parser.add_argument("--texts", required=True, help="A JSON list of texts.")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    systems = {model: timed_predictor(model, args.backend, args.batch_size) for model in args.model}
    rounds: dict[str, list[dict[str, float]]] = {model: [] for model in systems}
    for predictor, _ in systems.values():
        predictor.predict(texts[:64])  # warm-up
    for _ in range(args.rounds):
        for model, (predictor, timer) in systems.items():
            timer.seconds = 0.0
            started = time.perf_counter()
            predictor.predict(texts)
            total = time.perf_counter() - started
            rounds[model].append({"seconds": total, "forward_seconds": timer.seconds})
    results = {}
    for model, measured in rounds.items():
        total = statistics.median(r["seconds"] for r in measured)
        forward = statistics.median(r["forward_seconds"] for r in measured)
        other = statistics.median(r["seconds"] - r["forward_seconds"] for r in measured)
        results[model] = {
            "texts_per_second": len(texts) / total,
            "texts_per_second_rounds": [round(len(texts) / r["seconds"], 1) for r in measured],
            "seconds": total,
            "forward_seconds": forward,
            "other_seconds": other,
        }
    report = {
        "command": "python " + " ".join(sys.argv),
        "texts": len(texts),
        "backend": args.backend,
        "rounds": args.rounds,
        "models": results,
        "machine": machine(),
    }
    info = report["machine"]
    title = (
        f"Predict time by part ({info['cpu']}, {', '.join(info['cpu_features'])}; {info['torch_threads']} torch "
        f"threads; backend {args.backend}; {len(texts)} texts, median of {args.rounds} interleaved rounds)."
    )
    columns = ["model", "texts/s", "seconds", "forward passes", "per-text work", "texts/s by round"]
    cells = [
        [model, f"{row['texts_per_second']:.1f}", f"{row['seconds']:.3f}", f"{row['forward_seconds']:.3f}"]
        + [f"{row['other_seconds']:.3f}", ", ".join(str(v) for v in row["texts_per_second_rounds"])]
        for model, row in results.items()
    ]
    write_results(Path(args.output), report, "\n".join([title, "", *markdown_table(columns, cells)]) + "\n")


if __name__ == "__main__":
    main()
