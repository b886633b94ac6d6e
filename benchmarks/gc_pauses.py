"""What Python's garbage collector costs predictions: `Predictor.predict` over the same texts with the objects alive at
load frozen (`gc.freeze`, what `Predictor.from_pretrained` does: utils/serving/predictor.py `settle_loaded_objects`)
and with them unfrozen again (`gc.unfreeze`, as before), rounds interleaved in one process. Each round records its
seconds and every collection's generation and pause (`gc.callbacks`).

    python benchmarks/gc_pauses.py --model /work/models/distill_bench/distilled-3 \\
        --texts /work/models/distill_bench/texts.json --output benchmarks/results/gc_pauses_ner.json
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.reporting import machine, markdown_table, write_results  # noqa: E402

MODES = ("frozen", "unfrozen")


class CollectionLog:
    """Every collection while `active`: its generation and its seconds."""

    def __init__(self) -> None:
        self.active, self.started, self.collections = False, 0.0, []

    def __call__(self, phase: str, info: dict) -> None:
        if not self.active:
            return
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.collections.append((info["generation"], time.perf_counter() - self.started))


def timed_round(predictor, texts: list[str], log: CollectionLog) -> dict:
    log.collections, log.active = [], True
    started = time.perf_counter()
    predictor.predict(texts)
    seconds = time.perf_counter() - started
    log.active = False
    full = [pause for generation, pause in log.collections if generation == 2]
    return {
        "seconds": seconds,
        "collections": len(log.collections),
        "full_collections": len(full),
        "full_collection_seconds": sum(full),
        "all_collection_seconds": sum(pause for _, pause in log.collections),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A saved model's directory.")
    parser.add_argument("--texts", required=True, help="A JSON list of texts.")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    from utils.serving.predictor import Predictor

    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    predictor = Predictor.from_pretrained(args.model, device="cpu", backend=args.backend)
    predictor.predict(texts[:64])  # warm-up
    log = CollectionLog()
    gc.callbacks.append(log)
    frozen = gc.get_freeze_count()
    rounds: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            gc.unfreeze() if mode == "unfrozen" else gc.freeze()
            rounds[mode].append(timed_round(predictor, texts, log))
    gc.freeze()
    results = {
        mode: {
            "texts_per_second": len(texts) / statistics.median(r["seconds"] for r in measured),
            "full_collections": sum(r["full_collections"] for r in measured),
            "full_collection_seconds_mean": statistics.mean(r["full_collection_seconds"] for r in measured),
            "all_collection_seconds_mean": statistics.mean(r["all_collection_seconds"] for r in measured),
            "rounds": measured,
        }
        for mode, measured in rounds.items()
    }
    report = {
        "command": "python " + " ".join(sys.argv),
        "model": args.model,
        "backend": args.backend,
        "texts": len(texts),
        "rounds": args.rounds,
        "objects_frozen_at_load": frozen,
        "results": results,
        "machine": machine(),
    }
    info = report["machine"]
    title = (
        f"Garbage collection during predict ({info['cpu']}, {', '.join(info['cpu_features'])}; backend "
        f"{args.backend}; {len(texts)} texts per round, {args.rounds} interleaved rounds; {frozen:,} objects "
        "frozen at load)."
    )
    columns = ["objects alive at load", "texts/s (median)", "full collections", "their seconds per round (mean)"]
    cells = [
        [
            mode,
            f"{row['texts_per_second']:.1f}",
            str(row["full_collections"]),
            f"{row['full_collection_seconds_mean']:.3f}",
        ]
        for mode, row in results.items()
    ]
    write_results(Path(args.output), report, "\n".join([title, "", *markdown_table(columns, cells)]) + "\n")


if __name__ == "__main__":
    main()
