"""Document context (`--context_size`) on CoNLL-2003: test F1 with and without it, same data, epochs and seeds.

    python benchmarks/ner_context.py                                   # context 0 vs 64, seeds 42 43, 1 epoch
    python benchmarks/ner_context.py --context_sizes 0 128 --max_train_samples 4000 --name ner_context_128

Every (context size, seed) run is a fresh `run_ner.py` process with the same flags but `--context_size`, trained on
the first `--max_train_samples` training sentences (whole documents but the last) and scored on the full dev and
test files. F1, wall time and inputs per run, and the mean per arm, go to benchmarks/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "conll2003"
RESULTS = ROOT / "benchmarks" / "results"
#: The same for every arm: length-grouped batches and bf16 keep the context arm (inputs ~5x longer) within budget.
COMMON = [
    "--per_device_train_batch_size",
    "32",
    "--per_device_eval_batch_size",
    "64",
    "--learning_rate",
    "5e-5",
    "--report_to",
    "none",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--logging_steps",
    "50",
    "--train_sampling_strategy",
    "group_by_length",
]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--context_sizes", type=int, nargs="+", default=[0, 64])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Dev sentences (default: all).")
    parser.add_argument("--max_predict_samples", type=int, default=None, help="Test sentences (default: all).")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--no_bf16", action="store_true", help="Train in fp32 (bf16 autocast is ~2.5x faster here).")
    parser.add_argument("--data_dir", default=str(DATA))
    parser.add_argument("--work_dir", default="/tmp/ner_context", help="Where the runs write their outputs.")
    parser.add_argument("--name", default="ner_context", help="Results file name under benchmarks/results/.")
    return parser.parse_args()


def run_flags(args: argparse.Namespace, context_size: int, seed: int, output_dir: Path) -> list[str]:
    data = Path(args.data_dir)
    flags = [
        "--train_file",
        str(data / "train.txt"),
        "--validation_file",
        str(data / "valid.txt"),
        "--test_file",
        str(data / "test.txt"),
        "--output_dir",
        str(output_dir),
        *COMMON,
        "--num_train_epochs",
        str(args.epochs),
        "--max_seq_length",
        str(args.max_seq_length),
        "--seed",
        str(seed),
        "--context_size",
        str(context_size),
    ]
    for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
        if getattr(args, name) is not None:
            flags += [f"--{name}", str(getattr(args, name))]
    return flags + ([] if args.no_bf16 else ["--bf16"])


def run_one(args: argparse.Namespace, context_size: int, seed: int) -> dict:
    output_dir = Path(args.work_dir) / f"context{context_size}_seed{seed}"
    shutil.rmtree(output_dir, ignore_errors=True)
    flags = run_flags(args, context_size, seed, output_dir)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "run_ner.py"), *flags], check=True, cwd=ROOT)
    wall = time.perf_counter() - started
    results = json.loads((output_dir / "all_results.json").read_text())
    record = {
        "context_size": context_size,
        "seed": seed,
        "wall_s": round(wall, 1),
        "train_s": round(results["train_runtime"], 1),
        "train_features": results["train_features"],
        "train_samples": results["train_samples"],
        "dev_f1": results["eval_f1"],
        "test_f1": results["predict_f1"],
    }
    print(json.dumps(record), flush=True)
    return record


def summary(records: list[dict]) -> list[dict]:
    """Mean F1 and wall time per context size."""
    rows = []
    for size in sorted({r["context_size"] for r in records}):
        runs = [r for r in records if r["context_size"] == size]
        rows.append(
            {
                "context_size": size,
                "runs": len(runs),
                **{
                    key: round(statistics.mean(r[key] for r in runs), 4)
                    for key in ("dev_f1", "test_f1", "wall_s", "train_s")
                },
            }
        )
    return rows


def markdown(args: argparse.Namespace, records: list[dict], means: list[dict]) -> str:
    setting = (
        f"{args.max_train_samples or 'all'} training sentences, {args.epochs:g} epoch(s), max_seq_length "
        f"{args.max_seq_length}, {'fp32' if args.no_bf16 else 'bf16'}, length-grouped batches of 32, lr 5e-5; "
        f"dev {args.max_eval_samples or 'all'} / test {args.max_predict_samples or 'all'} sentences"
    )
    lines = [
        f"NER document context on CoNLL-2003, embedded MiniLM ({setting}).",
        "",
        "| context_size | seed | dev F1 | test F1 | train s | wall s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['context_size']} | {r['seed']} | {r['dev_f1']:.4f} | {r['test_f1']:.4f} | {r['train_s']:.0f} | "
        f"{r['wall_s']:.0f} |"
        for r in records
    ]
    lines += [
        "",
        "| context_size | runs | mean dev F1 | mean test F1 | mean train s | mean wall s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {m['context_size']} | {m['runs']} | {m['dev_f1']:.4f} | {m['test_f1']:.4f} | {m['train_s']:.0f} | "
        f"{m['wall_s']:.0f} |"
        for m in means
    ]
    base = next((m for m in means if m["context_size"] == 0), None)
    if base:
        lines.append("")
        lines += [
            f"Context {m['context_size']}: test F1 {100 * (m['test_f1'] - base['test_f1']):+.2f} points, dev "
            f"{100 * (m['dev_f1'] - base['dev_f1']):+.2f} points against no context, mean over seeds."
            for m in means
            if m is not base
        ]
    return "\n".join(lines) + "\n"


def write_results(args: argparse.Namespace, records: list[dict]) -> str:
    """The JSON and markdown files, rewritten after every run so a stopped benchmark still leaves its figures."""
    means = summary(records)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"settings": vars(args), "runs": records, "means": means}, indent=2) + "\n"
    )
    table = markdown(args, records, means)
    (RESULTS / f"{args.name}.md").write_text(table)
    return table


def main() -> None:
    args = parse()
    records: list[dict] = []
    for seed in args.seeds:  # seed by seed, so a stopped benchmark has both arms of its first seeds
        for size in args.context_sizes:
            records.append(run_one(args, size, seed))
            table = write_results(args, records)
    print(table)


if __name__ == "__main__":
    main()
