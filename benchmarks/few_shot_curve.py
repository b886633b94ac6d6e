"""Learning curve: zero-shot, few-shot (contrastive vs fine-tuning) at K examples per label, and full fine-tuning.

    python benchmarks/few_shot_curve.py                          # SST-2 and CoNLL topics, K = 8 16 64, 3 seeds
    python benchmarks/few_shot_curve.py --datasets conll_topic --ks 8 --seeds 0 --max_eval_samples 64   # smoke
    python benchmarks/few_shot_curve.py --datasets sst2 --ks 16 --methods contrastive \
        --results /tmp/few_shot_k16                                   # one point of the curve, kept apart

Every run goes through `run_classification.main` (the real pipeline, in this one process); accuracy is SST-2 dev
(`eval_accuracy`) or the CoNLL-topic test split (`predict_accuracy`); wall time is the whole run (loading, sampling,
contrastive phase, training, evaluation). SST-2 full fine-tuning is read from the lead's run (`--sst2_full_dir`,
default settings, 1 epoch on all 67k rows) rather than repeated. "CoNLL topics" is made here from CoNLL-2003:
sentences (6+ words) whose entities are all of one type, labelled with it (PER/LOC/ORG/MISC); it is written under
--work_dir, never into the repository. Results: benchmarks/results/few_shot_curve.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

import run_classification  # noqa: E402
from utils.core.conll import read_conll  # noqa: E402

logger = logging.getLogger("few_shot_curve")

TOPIC_DESCRIPTIONS = {
    "LOC": ["a sentence about places: countries, cities, regions and rivers"],
    "MISC": ["a sentence about nationalities, languages, events and other named things"],
    "ORG": ["a sentence about organisations: companies, clubs, teams, parties and agencies"],
    "PER": ["a sentence about people: players, politicians and other persons"],
}
#: Flags of every run: no checkpoints (the final model is still saved), no evaluation during training.
COMMON = [
    "--report_to",
    "none",
    "--overwrite_output_dir",
    "--eval_strategy",
    "no",
    "--save_strategy",
    "no",
    "--logging_steps",
    "50",
    "--per_device_eval_batch_size",
    "128",
]
#: Fine-tuning on K examples per label: batch 8 and (by default) 10 epochs, so even 16 examples get 20 steps.
FINETUNE = ["--few_shot_method", "finetune", "--per_device_train_batch_size", "8"]
#: What --methods can choose: zero-shot, the two few-shot methods at each K, full fine-tuning.
METHODS = ["zero-shot", "contrastive", "finetune", "full"]


# ---------------------------------------------------------------- the datasets


def topic_of(tags: list[str]) -> str | None:
    """The one entity type of a sentence, or None (no entities, or several types)."""
    types = {tag[2:] for tag in tags if tag[:2] in {"B-", "I-"}}
    return types.pop() if len(types) == 1 else None


def build_conll_topic(directory: Path, test_size: int) -> dict[str, str]:
    """train/dev/test TSVs (label, text) of single-entity-type CoNLL-2003 sentences; the test split is a seeded
    sample of `test_size` (the CoNLL test file in document order would be a few long stories)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, name in (("train", "train.txt"), ("test", "test.txt")):
        corpus = read_conll(DATA / "conll2003" / name)
        seen, rows = set(), []
        for tokens, tags in zip(corpus.tokens, corpus.tags):
            text, topic = " ".join(tokens), topic_of(tags)
            if topic and len(tokens) >= 6 and text not in seen:
                seen.add(text)
                rows.append((topic, text))
        if split == "test" and len(rows) > test_size:
            rows = random.Random(0).sample(rows, test_size)
        path = directory / f"{split}.tsv"
        path.write_text(
            "label\ttext\n" + "".join(f"{label}\t{text.replace(chr(9), ' ')}\n" for label, text in rows),
            encoding="utf-8",
        )
        files[split] = str(path)
    descriptions = directory / "labels.json"
    descriptions.write_text(json.dumps(TOPIC_DESCRIPTIONS, indent=2), encoding="utf-8")
    files["descriptions"] = str(descriptions)
    return files


def datasets_for(names: list[str], work_dir: Path, test_size: int) -> dict[str, dict[str, Any]]:
    result = {}
    if "sst2" in names:
        result["sst2"] = {
            "data": [
                "--train_file",
                str(DATA / "sst2" / "train.tsv"),
                "--validation_file",
                str(DATA / "sst2" / "dev.tsv"),
            ],
            "metric": "eval_accuracy",
            "split": "dev",
            "descriptions": str(ROOT / "configs" / "classification" / "labels" / "sst2.yaml"),
        }
    if "conll_topic" in names:
        files = build_conll_topic(work_dir / "conll_topic" / "data", test_size)
        result["conll_topic"] = {
            "data": ["--train_file", files["train"], "--test_file", files["test"]],
            "metric": "predict_accuracy",
            "split": "test",
            "descriptions": files["descriptions"],
        }
    return result


# ---------------------------------------------------------------- runs


def run_one(out: Path, argv: list[str], metric: str, keep_model: bool) -> dict[str, Any]:
    start = time.perf_counter()
    results = run_classification.main([*argv, "--output_dir", str(out), *COMMON])
    wall = time.perf_counter() - start
    record = {"accuracy": results[metric], "wall_s": round(wall, 1), "output_dir": str(out)}
    sample = out / "few_shot_sample.json"
    if sample.is_file():
        details = json.loads(sample.read_text())
        record.update({key: details[key] for key in ("contrastive_pairs", "contrastive_steps") if key in details})
    if not keep_model:  # ~90 MB each; the results and predictions stay
        for name in ("model.safetensors",):
            (out / name).unlink(missing_ok=True)
    return record


def sst2_full_run(directory: Path) -> dict[str, Any] | None:
    """The lead's SST-2 run (run_classification.py defaults, 1 epoch, all 67k rows): dev accuracy and wall time."""
    results, log = directory / "all_results.json", directory.parent / f"{directory.name}.log"
    if not results.is_file():
        return None
    record: dict[str, Any] = {"accuracy": json.loads(results.read_text())["eval_accuracy"], "source": str(results)}
    if log.is_file():
        found = re.findall(r"wall=(\d+)s", log.read_text(errors="replace")[-4000:])
        record["wall_s"] = float(found[-1]) if found else None
    return record


def pooler_head_accuracy(run_dir: Path, dev_file: str, seed: int) -> dict[str, float]:
    """Option (a), measured: a logistic regression on the [CLS] pooler output of the same contrastively tuned
    encoder (what a stock BertForSequenceClassification head would see) against the mean-pooled embeddings."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoTokenizer

    from utils.core.data import load_split_file
    from utils.core.ordering import length_batches
    from utils.tasks.classification.sentence_embedding import SequenceClassifier, mean_pool

    model = SequenceClassifier.from_pretrained(str(run_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir))
    sample = json.loads((run_dir / "few_shot_sample.json").read_text())
    train = list(zip(sample["texts"], sample["labels"]))
    dev_split = load_split_file(dev_file, "tsv", None, None)
    dev = list(zip(dev_split["content"], [str(label) for label in dev_split["label"]]))

    @torch.inference_mode()
    def features(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        size = (len(texts), model.config.hidden_size)
        mean, pooled = np.zeros(size, np.float32), np.zeros(size, np.float32)
        for batch in length_batches([len(text) for text in texts], 64):
            inputs = tokenizer(
                [texts[i] for i in batch], padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            output = model.encoder(**inputs)
            mean[batch] = torch.nn.functional.normalize(
                mean_pool(output.last_hidden_state, inputs["attention_mask"]), dim=-1
            ).numpy()
            pooled[batch] = output.pooler_output.numpy()
        return mean, pooled

    train_mean, train_pooled = features([t for t, _ in train])
    dev_mean, dev_pooled = features([t for t, _ in dev])
    gold_train, gold_dev = [label for _, label in train], np.asarray([label for _, label in dev])
    result = {}
    for name, (x_train, x_dev) in {"mean": (train_mean, dev_mean), "cls_pooler": (train_pooled, dev_pooled)}.items():
        regression = LogisticRegression(max_iter=1000, random_state=seed).fit(x_train, gold_train)
        result[name] = float((regression.predict(x_dev) == gold_dev).mean())
    return result


def row_order(method_k: tuple[str, Any]) -> tuple:
    """Zero-shot, then K ascending (contrastive before fine-tune), then full fine-tuning."""
    method, k = method_k
    group = {"zero-shot": 0, "full fine-tuning": 2}.get(method, 1)
    return group, k if isinstance(k, int) else 0, method


def summary(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def markdown(
    records: list[dict[str, Any]], pooler: list[dict[str, Any]], settings: dict[str, Any], skipped: list[str]
) -> str:
    lines = [
        "# Few-shot learning curve",
        "",
        f"Embedded all-MiniLM-L6-v2, {settings['machine']}; written by `benchmarks/few_shot_curve.py` "
        f"({settings['date']}). Accuracy mean ± sample std over seeds {settings['seeds']}; wall time mean per "
        "run (whole run: loading, sampling, contrastive phase, training, evaluation).",
        "",
        f"Contrastive: {settings['iterations']} pair rounds, at most {settings['max_pairs']} pairs, batch 16, lr "
        "2e-5, 1 epoch, then a logistic-regression head (the train stage then trains only the head, 3 epochs). "
        "Fine-tune on K: the ordinary recipe, batch 8, "
        f"{settings['finetune_epochs']:g} epochs, lr 5e-5. Zero-shot: label descriptions "
        "(configs/classification/labels/sst2.yaml; CoNLL topics: in the script).",
        "",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        rows = [r for r in records if r["dataset"] == dataset]
        split = rows[0]["split"]
        lines += [
            f"## {dataset} ({split} accuracy)",
            "",
            "| method | K per label | accuracy | runs | wall s / run |",
            "|---|---|---|---|---|",
        ]
        for method, k in sorted(dict.fromkeys((r["method"], r["k"]) for r in rows), key=row_order):
            group = [r for r in rows if r["method"] == method and r["k"] == k]
            walls = [r["wall_s"] for r in group if r.get("wall_s") is not None]
            wall = f"{statistics.mean(walls):.0f}" if walls else "?"
            note = " (lead's run, read from its outputs)" if group[0].get("source") else ""
            lines.append(
                f"| {method}{note} | {k} | {summary([r['accuracy'] for r in group])} | {len(group)} | {wall} |"
            )
        lines.append("")
    if pooler:
        lines += [
            "## Head on mean pooling vs the [CLS] pooler (SST-2 dev, contrastive K=16)",
            "",
            "Logistic regression on the same contrastively tuned encoder's features: mean-pooled (what the "
            "saved model uses) or the [CLS] pooler output (what a stock BertForSequenceClassification would "
            "use).",
            "",
            "| seed | mean pooling | [CLS] pooler |",
            "|---|---|---|",
        ]
        lines += [f"| {p['seed']} | {p['mean']:.3f} | {p['cls_pooler']:.3f} |" for p in pooler]
        lines.append("")
    if skipped:
        lines += [f"Not run (over the {settings['budget_s']:.0f} s budget): " + "; ".join(skipped) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["sst2", "conll_topic"], choices=["sst2", "conll_topic"])
    parser.add_argument("--ks", nargs="+", type=int, default=[8, 16, 64])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=METHODS,
        choices=METHODS,
        help="Run only these (full: CoNLL topics' run, and reading the SST-2 one). A partial run "
        "belongs in its own --results, not over the full curve's.",
    )
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--max_pairs", type=int, default=640, help="Contrastive: pair cap (SetFit at K=8, 2 labels).")
    parser.add_argument("--budget_s", type=float, default=1500.0, help="Start no new run after this many seconds.")
    parser.add_argument("--test_size", type=int, default=800, help="CoNLL topics: test sentences (seeded sample).")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Smoke runs only: cap the scored split.")
    parser.add_argument("--work_dir", default="/work/runs/fewshot")
    parser.add_argument("--sst2_full_dir", default="/work/runs/sst2")
    parser.add_argument("--full_epochs", type=float, default=1.0, help="CoNLL topics full fine-tuning epochs.")
    parser.add_argument("--finetune_epochs", type=float, default=10.0)
    parser.add_argument("--no_full", action="store_true", help="Smoke runs: skip CoNLL-topic full fine-tuning.")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "few_shot_curve"))
    parser.add_argument("--render_only", action="store_true", help="Rewrite the .md from the .json; run nothing.")
    args = parser.parse_args(argv)
    if args.render_only:
        saved = json.loads(Path(f"{args.results}.json").read_text())
        skipped = saved.get("skipped", [])
        Path(f"{args.results}.md").write_text(
            markdown(saved["runs"], saved["pooler_vs_mean"], saved["settings"], skipped)
        )
        print(Path(f"{args.results}.md").read_text())
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = Path(args.work_dir)
    data = datasets_for(args.datasets, work, args.test_size)
    records: list[dict[str, Any]] = []
    pooler: list[dict[str, Any]] = []
    skipped: list[str] = []
    settings = {
        "machine": f"{platform.machine()} CPU x{os.cpu_count()}",
        "date": time.strftime("%Y-%m-%d"),
        "seeds": args.seeds,
        "iterations": args.iterations,
        "max_pairs": args.max_pairs,
        "ks": args.ks,
        "methods": args.methods,
        "finetune_epochs": args.finetune_epochs,
        "budget_s": args.budget_s,
        "command": " ".join(["python", "benchmarks/few_shot_curve.py", *(argv or sys.argv[1:])]),
    }

    def save() -> None:  # after every run, so a killed benchmark still leaves its numbers
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.results}.json").write_text(
            json.dumps({"settings": settings, "runs": records, "pooler_vs_mean": pooler, "skipped": skipped}, indent=2)
        )
        Path(f"{args.results}.md").write_text(markdown(records, pooler, settings, skipped))

    def add(dataset: str, method: str, k: Any, seed: Any, argv: list[str], keep: bool = False) -> dict[str, Any]:
        spec = data[dataset]
        cap = (
            ["--max_eval_samples", str(args.max_eval_samples), "--max_predict_samples", str(args.max_eval_samples)]
            if args.max_eval_samples
            else []
        )
        out = work / dataset / f"{method.replace(' ', '_')}_k{k}_s{seed}"
        record = run_one(out, [*spec["data"], *argv, *cap], spec["metric"], keep)
        record.update(dataset=dataset, split=spec["split"], method=method, k=k, seed=seed)
        records.append(record)
        print(f"RESULT {json.dumps(record)}", flush=True)  # the pipeline's logging setup silences other loggers
        save()
        return record

    # most wanted first (the question is SST-2 at K=16), so a run cut short by --budget_s still answers it
    plan: list[tuple[str, str, Any, Any]] = [(d, "zero-shot", 0, "-") for d in data if "zero-shot" in args.methods]
    few_shot = [method for method in ("contrastive", "finetune") if method in args.methods]
    for k in sorted(args.ks, key=lambda k: (k != 16, k)):
        plan += [(d, m, k, s) for d in data for s in args.seeds for m in few_shot]
        if k == min(args.ks) and "conll_topic" in data and "full" in args.methods and not args.no_full:
            plan.append(("conll_topic", "full fine-tuning", "all", args.seeds[0]))  # before the costly K=64
    started = time.perf_counter()
    for dataset, method, k, seed in plan:
        if time.perf_counter() - started > args.budget_s:
            skipped.append(f"{dataset} {method} K={k} seed {seed}")
            continue
        spec = data[dataset]
        if method == "zero-shot":
            add(dataset, method, k, seed, ["--zero_shot", "--label_descriptions", spec["descriptions"]])
        elif method == "full fine-tuning":
            add(dataset, method, k, seed, ["--num_train_epochs", str(args.full_epochs), "--seed", str(seed)])
        else:
            extra = (
                [*FINETUNE, "--num_train_epochs", str(args.finetune_epochs)]
                if method == "finetune"
                else ["--few_shot_iterations", str(args.iterations), "--few_shot_max_pairs", str(args.max_pairs)]
            )
            add(
                dataset,
                method,
                k,
                seed,
                ["--few_shot_k", str(k), "--few_shot_seed", str(seed), "--seed", str(seed), *extra],
                keep=k == 16,
            )
            if dataset == "sst2" and k == 16 and method == "contrastive":
                run_dir = work / dataset / f"contrastive_k16_s{seed}"
                pooler.append({"seed": seed, **pooler_head_accuracy(run_dir, spec["data"][3], seed)})
                save()
    if "sst2" in data and "full" in args.methods:
        full = sst2_full_run(Path(args.sst2_full_dir))
        if full is not None:
            records.append(
                {
                    **full,
                    "dataset": "sst2",
                    "split": "dev",
                    "method": "full fine-tuning",
                    "k": "all (67k)",
                    "seed": "-",
                }
            )
        else:
            logger.warning("No SST-2 full fine-tuning results in %s: the table lacks that row.", args.sst2_full_dir)
    save()
    print(Path(f"{args.results}.md").read_text())


if __name__ == "__main__":
    main()
