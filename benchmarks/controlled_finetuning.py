"""Full fine-tuning vs LoRA vs a linear probe on CoNLL-2003 with the embedded model: test F1, trainable
parameters, training time. Same data, epochs, batch size and seed for each; the learning rate is each method's
default (5e-5 full, 1e-3 LoRA, 5e-3 head only).

    python benchmarks/controlled_finetuning.py --epochs 1 --seed 43
    python benchmarks/controlled_finetuning.py --reuse full=/path/to/an/identical/full/run   # skip a finished run

Writes benchmarks/results/controlled_finetuning.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "conll2003"
METHODS = {"full": [], "lora": ["--use_peft"], "head_only": ["--train_head_only"]}


def command(method: str, out: Path, epochs: str, seed: int) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "run_ner.py"),
        "--train_file",
        str(DATA / "train.txt"),
        "--validation_file",
        str(DATA / "valid.txt"),
        "--test_file",
        str(DATA / "test.txt"),
        "--num_train_epochs",
        epochs,
        "--seed",
        str(seed),
        "--output_dir",
        str(out),
        "--overwrite_output_dir",
        *METHODS[method],
    ]


def summarise(method: str, out: Path, wall: float | None) -> dict:
    results = json.loads((out / "all_results.json").read_text())
    return {
        "method": method,
        "test_f1": results["predict_f1"],
        "dev_f1": results.get("eval_f1"),
        "trainable_parameters": results.get("trainable_parameters"),
        "total_parameters": results.get("total_parameters"),
        "trainable_percent": results.get("trainable_percent"),
        "train_seconds": round(results["train_runtime"], 1),
        "wall_seconds": wall,
        "output_dir": str(out),
    }


def markdown(rows: list[dict], epochs: str, seed: int) -> str:
    full = next((row for row in rows if row["method"] == "full"), None)
    lines = [
        f"CoNLL-2003, embedded all-MiniLM-L6-v2, {epochs} epoch(s), batch 32, seed {seed}, 2 CPU cores.",
        "",
        "| method | test F1 | % of full F1 | dev F1 | trainable params | % trainable | train time |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        share = f"{100 * row['test_f1'] / full['test_f1']:.1f}%" if full else "n/a"
        trainable = row["trainable_parameters"]
        lines.append(
            f"| {row['method']} | {row['test_f1']:.4f} | {share} | {row['dev_f1']:.4f} | "
            f"{trainable:,} | {row['trainable_percent']:.2f}% | {row['train_seconds'] / 60:.1f} min |"
            if trainable is not None
            else f"| {row['method']} | {row['test_f1']:.4f} | {share} | {row['dev_f1']:.4f} | n/a | n/a | "
            f"{row['train_seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--epochs", default="1")
    parser.add_argument("--seed", type=int, default=43)
    parser.add_argument("--reuse", nargs="*", default=[], help="METHOD=DIR: take a finished identical run's results")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/finetune-kit-controlled"))
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "controlled_finetuning")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} is absent: this benchmark needs ../shared/data/conll2003 beside the project.")
    reuse = dict(item.split("=", 1) for item in args.reuse)
    rows = []
    for method in args.methods:
        if method in reuse:
            rows.append(summarise(method, Path(reuse[method]), None))
            continue
        out = args.workdir / method
        started = time.monotonic()
        subprocess.run(command(method, out, args.epochs, args.seed), check=True)
        rows.append(summarise(method, out, round(time.monotonic() - started, 1)))
        print(json.dumps(rows[-1]), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(markdown(rows, args.epochs, args.seed))
    print(markdown(rows, args.epochs, args.seed))


if __name__ == "__main__":
    main()
