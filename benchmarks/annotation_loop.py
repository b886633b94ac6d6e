"""Does choosing what to label by the model's uncertainty beat choosing at random? The annotation loop on
CoNLL-2003, with the embedded MiniLM:

    python benchmarks/annotation_loop.py --conll_dir ../shared/data/conll2003 --seeds 0,1

Per seed: fine-tune on `--start` random training sentences (the first model); score every other training sentence
with that model (`Predictor.predict(sentences, uncertainty=True)`: 1 - the smallest word margin, as
`predict.py --select_uncertain` does) and add the `--add` most uncertain ones, or `--add` random ones; continue
fine-tuning the first model (run_ner.py --model FIRST_DIR, the kit's continued fine-tuning) on the `--start` +
`--add` labelled sentences; report test F1 of the first model and of both continued ones, with the words and
entities each added batch holds (uncertain sentences are often longer: more to label). Writes
benchmarks/results/annotation_loop.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import run_ner  # noqa: E402
from utils.core.conll import read_conll, write_conll  # noqa: E402
from utils.serving.predictor import Predictor  # noqa: E402
from utils.tasks.ner.iob import tags_to_spans  # noqa: E402


def cpu_flags() -> str:
    """The CPU's vector instruction sets, as every speed figure of this project names them."""
    command = "grep -o 'avx512[a-z_0-9]*\\|avx2' /proc/cpuinfo | sort -u"
    return " ".join(subprocess.run(command, shell=True, capture_output=True, text=True).stdout.split())


def write_subset(path: Path, corpus, indices: list[int]) -> None:
    """Sentences of the training corpus, in corpus order, as a 2-column CoNLL file."""
    write_conll(path, [list(zip(corpus.tokens[i], corpus.tags[i])) for i in sorted(indices)])


def train(train_file: Path, model: str | None, output: Path, test_file: str, seed: int, args) -> float:
    """One run_ner.py run (train, then test); its test F1."""
    argv = [
        "--train_file",
        str(train_file),
        "--test_file",
        test_file,
        "--output_dir",
        str(output),
        "--overwrite_output_dir",
        "--num_train_epochs",
        str(args.epochs),
        "--learning_rate",
        str(args.learning_rate),
        "--per_device_train_batch_size",
        "32",
        "--max_seq_length",
        "128",
        "--seed",
        str(seed),
        "--report_to",
        "none",
        "--save_strategy",
        "no",
    ]
    metrics = run_ner.main(argv + (["--model", model] if model else []))
    return round(float(metrics["predict_f1"]), 4)


def counts(corpus, indices: list[int]) -> dict[str, int]:
    """Words and gold entities of the chosen sentences: what labelling them costs."""
    return {
        "sentences": len(indices),
        "words": sum(len(corpus.tokens[i]) for i in indices),
        "entities": sum(len(tags_to_spans(corpus.tags[i])) for i in indices),
    }


def one_seed(seed: int, corpus, test_file: str, work: Path, args) -> dict:
    rng = random.Random(seed)
    order = list(range(len(corpus.tokens)))
    rng.shuffle(order)
    first, pool = order[: args.start], order[args.start :]
    write_subset(work / "first.conll", corpus, first)
    first_dir = work / "first"
    started = time.perf_counter()
    result = {"seed": seed, "first_f1": train(work / "first.conll", None, first_dir, test_file, seed, args)}
    predictor = Predictor.from_pretrained(str(first_dir), device="cpu", batch_size=64)
    scored = predictor.predict([corpus.tokens[i] for i in pool], uncertainty=True)
    ranked = sorted(range(len(pool)), key=lambda k: (-scored[k]["uncertainty"], k))
    chosen = {"uncertainty": [pool[k] for k in ranked[: args.add]], "random": rng.sample(pool, args.add)}
    for strategy, added in chosen.items():
        write_subset(work / f"{strategy}.conll", corpus, first + added)
        result[f"{strategy}_f1"] = train(
            work / f"{strategy}.conll", str(first_dir), work / strategy, test_file, seed, args
        )
        result[f"{strategy}_added"] = counts(corpus, added)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result), flush=True)
    return result


def markdown(summary: dict) -> str:
    start, add = f"{summary['start']:,}", f"{summary['add']:,}"
    lines = [
        f"| seed | first model ({start}) | + {add} by uncertainty | + {add} at random | words added (unc. / "
        "rand.) | entities added (unc. / rand.) |",
        "|---|---|---|---|---|---|",
    ]
    for run in summary["runs"]:
        unc, rnd = run["uncertainty_added"], run["random_added"]
        lines.append(
            f"| {run['seed']} | {run['first_f1']:.4f} | {run['uncertainty_f1']:.4f} | {run['random_f1']:.4f} "
            f"| {unc['words']} / {rnd['words']} | {unc['entities']} / {rnd['entities']} |"
        )
    mean = summary["mean"]
    lines.append(f"| mean | {mean['first_f1']:.4f} | {mean['uncertainty_f1']:.4f} | {mean['random_f1']:.4f} | | |")
    return (
        f"# Annotation loop on CoNLL-2003 (test F1)\n\n`{summary['command']}`\n\n"
        + "\n".join(lines)
        + f"\n\nCPU: {summary['cpu']} ({summary['cpus']} cores); {summary['settings']}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conll_dir", default=str(ROOT.parent / "shared" / "data" / "conll2003"))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--start", type=int, default=1000)
    parser.add_argument("--add", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--work", default="/tmp/annotation_loop")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    corpus = read_conll(Path(args.conll_dir) / "train.txt")
    test_file = str(Path(args.conll_dir) / "test.txt")
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        work = Path(args.work) / f"seed{seed}"
        work.mkdir(parents=True, exist_ok=True)
        runs.append(one_seed(seed, corpus, test_file, work, args))
    keys = ("first_f1", "uncertainty_f1", "random_f1")
    summary = {
        "command": "python benchmarks/annotation_loop.py " + " ".join(sys.argv[1:]),
        "settings": f"{args.epochs:g} epochs per fine-tuning, learning rate {args.learning_rate:g}, batch 32, "
        "max_seq_length 128; continued runs train the first model on its sentences plus the added ones",
        "start": args.start,
        "add": args.add,
        "runs": runs,
        "mean": {key: round(sum(run[key] for run in runs) / len(runs), 4) for key in keys},
        "cpu": cpu_flags(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    results = Path(args.results)
    (results / "annotation_loop.json").write_text(json.dumps(summary, indent=2) + "\n")
    (results / "annotation_loop.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
