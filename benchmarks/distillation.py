"""Distillation: students of N layers distilled from a fine-tuned teacher against the same students trained on gold
labels alone; test F1 / accuracy, and predict-time texts/s (PyTorch and ONNX int8) of teacher and students measured
side by side in one run (docs/distillation.md).

    python benchmarks/distillation.py --task ner --teacher /work/models/conll-fp32 \
        --train ../shared/data/conll2003/train.txt --validation ../shared/data/conll2003/valid.txt \
        --test ../shared/data/conll2003/test.txt --output benchmarks/results/distillation_ner.json
    python benchmarks/distillation.py --task classification --teacher /work/models/sst2 \
        --train ../shared/data/sst2/train.tsv --validation ../shared/data/sst2/dev.tsv \
        --test ../shared/data/sst2/test.tsv --labelled_rows 20000 --unlabelled_rest \
        --output benchmarks/results/distillation_sst2.json

Per student depth (--layers): `distilled` (--teacher_model, --student_layers N, the training rows after
--labelled_rows as --distill_file with --unlabelled_rest) and `gold` (--model TEACHER --student_layers N: the same
initialisation, gold labels only). Every training run and every timing is a fresh process; timings go round-robin
over the systems (--rounds), the median reported, so teacher and students see the same machine state.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.reporting import machine, write_results  # noqa: E402

SCRIPTS = {"ner": "run_ner.py", "classification": "run_classification.py"}
METRICS = {"ner": "f1", "classification": "accuracy"}
#: The issue's bars (docs/distillation.md): retention of the teacher's test score, speed-ups over its torch texts/s.
BARS = {
    "ner": {"retention": 0.97, "torch_speedup": 1.8, "int8_speedup": 3.5},
    "classification": {"retention": 0.98, "static_retention": 0.90, "static_torch_speedup": 50},
}
TEACHER_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
WARMUP = 16
#: A timing repeats the texts until this many seconds have passed: one pass of the static student over SST-2's test
#: set takes about a tenth of a second, too short to time on a shared machine; every other system's pass is longer.
MIN_SECONDS = 1.0


def texts_of(task: str, path: str) -> list[list[str]] | list[str]:
    """A split's inputs: NER sentences as word lists, classification texts."""
    if task == "ner":
        from utils.core.conll import read_conll

        return read_conll(path).tokens
    from utils.core.arguments import ModelArguments
    from utils.tasks.classification.arguments import ClassificationDataArguments
    from utils.tasks.classification.data import load_classification_data

    data = load_classification_data(ClassificationDataArguments(train_file=path), ModelArguments())
    return list(data.raw["train"]["text"])


def write_rest(task: str, train: str, labelled: int, path: Path) -> int:
    """The training rows after the first `labelled` as unlabelled text (one per line; NER words joined by spaces)."""
    rows = texts_of(task, train)[labelled:]
    lines = [" ".join(row) if task == "ner" else row for row in rows]
    path.write_text("".join(f"{line}\n" for line in lines if line.strip()), encoding="utf-8")
    return len(lines)


def train(args: argparse.Namespace, name: str, extra: list[str]) -> dict:
    """One training run of the task's script in a fresh process; its all_results.json."""
    out = Path(args.workdir) / name
    if args.reuse and (out / "all_results.json").is_file():  # a finished run of an interrupted benchmark
        return {**json.loads((out / "all_results.json").read_text(encoding="utf-8")), "wall_seconds": None}
    data = ["--train_file", args.train, "--validation_file", args.validation, "--test_file", args.test]
    command = [sys.executable, str(ROOT / SCRIPTS[args.task]), *data, "--output_dir", str(out)]
    command += ["--num_train_epochs", str(args.epochs), "--save_strategy", "no", "--report_to", "none"]
    command += ["--overwrite_output_dir", "--seed", str(args.seed), *extra, *args.train_args]
    if args.labelled_rows:
        command += ["--max_train_samples", str(args.labelled_rows)]
    for flag, value in (("--max_steps", args.max_steps), ("--max_eval_samples", args.max_eval_samples)):
        if value:
            command += [flag, str(value)]
    if args.max_predict_samples:
        command += ["--max_predict_samples", str(args.max_predict_samples)]
    started = time.perf_counter()
    with open(out.with_suffix(".log"), "w", encoding="utf-8") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    results = json.loads((out / "all_results.json").read_text(encoding="utf-8"))
    results["wall_seconds"] = time.perf_counter() - started
    return results


def export(args: argparse.Namespace, model: Path) -> None:
    if args.reuse and (model / "onnx" / "model_int8.onnx").is_file():
        return
    command = [sys.executable, str(ROOT / "export.py"), "--model", str(model), "--quantize", "int8"]
    command += ["--validation_file", args.test, "--max_validation_examples", "200", *args.export_args]
    with open(model.with_suffix(".export.log"), "w", encoding="utf-8") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=ROOT)


def worker(args: argparse.Namespace) -> None:
    """In a fresh process: load one model with one backend as predict.py does, warm up, time every text (passes over
    them until MIN_SECONDS have passed)."""
    import torch

    from utils.serving.predictor import Predictor

    torch.set_num_threads(args.threads or torch.get_num_threads())
    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    predictor = Predictor.from_pretrained(args.worker, device="cpu", batch_size=args.batch_size, backend=args.backend)
    predictor.predict(texts[:WARMUP])
    passes, started = 0, time.perf_counter()
    while not passes or time.perf_counter() - started < MIN_SECONDS:
        predictor.predict(texts)
        passes += 1
    seconds = time.perf_counter() - started
    report = {"texts": len(texts), "passes": passes, "seconds": seconds}
    print(json.dumps({**report, "texts_per_second": passes * len(texts) / seconds}))


def time_system(args: argparse.Namespace, model: Path, backend: str, texts_path: Path) -> float:
    command = [sys.executable, __file__, "--worker", str(model), "--backend", backend, "--texts", str(texts_path)]
    command += ["--batch_size", str(args.batch_size), "--task", args.task]
    if args.threads:
        command += ["--threads", str(args.threads)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if completed.returncode:
        raise RuntimeError(f"timing {model} ({backend}) failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])["texts_per_second"]


def markdown(report: dict) -> str:
    metric, teacher = report["metric"], report["systems"]["teacher"]
    lines = [
        f"Distillation, {report['task']} ({report['machine']['cpu']}, {', '.join(report['machine']['cpu_features'])};"
        f" {report['machine']['torch_threads']} torch threads). Texts/s: predict-time `Predictor`, median of "
        f"{report['rounds']} rounds over {report['throughput_texts']} test texts (each timing repeats them for at "
        f"least {MIN_SECONDS:g} s).",
        "",
        f"| system | test {metric} | retention | torch texts/s | x teacher | int8 texts/s | int8 x teacher torch |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, system in report["systems"].items():
        retention = system[metric] / teacher[metric] if teacher[metric] else float("nan")
        lines.append(
            f"| {name} | {system[metric]:.4f} | {retention:.2%} | {system['torch']:.1f} | "
            f"{system['torch'] / teacher['torch']:.2f} | "
            + (f"{system['int8']:.1f} | {system['int8'] / teacher['torch']:.2f} |" if system["int8"] else "- | - |")
        )
    lines += ["", "Bars (the issue's): " + json.dumps(report["bars"])]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    metric = METRICS[args.task]
    teacher = workdir / "teacher"  # a copy: the export is written beside the model, never into the shared teacher
    if not (args.reuse and teacher.is_dir()):
        shutil.rmtree(teacher, ignore_errors=True)
        teacher.mkdir()
    for name in TEACHER_FILES:
        if (Path(args.teacher) / name).is_file():
            shutil.copy2(Path(args.teacher) / name, teacher / name)
    distill: list[str] = []
    unlabelled = 0
    if args.unlabelled_rest:
        if not args.labelled_rows:
            raise SystemExit("--unlabelled_rest needs --labelled_rows N (the rows after N become unlabelled text)")
        unlabelled = write_rest(args.task, args.train, args.labelled_rows, workdir / "unlabelled.txt")
        distill = ["--distill_file", str(workdir / "unlabelled.txt")]
    systems: dict[str, dict] = {}
    teacher_score = None
    for layers in args.layers:
        student = ["--student_layers", str(layers)]
        distilled = train(args, f"distilled-{layers}", ["--teacher_model", str(teacher), *student, *distill])
        gold = train(args, f"gold-{layers}", ["--model", str(teacher), *student])
        teacher_score = distilled[f"teacher_predict_{metric}"]
        for name, results in ((f"distilled-{layers}", distilled), (f"gold-{layers}", gold)):
            systems[name] = {metric: results[f"predict_{metric}"], "train_seconds": results["wall_seconds"]}
    if args.static_dims:  # classification: token vectors from the teacher's encoder, a head on its soft labels
        static = [
            "--model",
            str(teacher),
            "--teacher_model",
            str(teacher),
            "--static_student_dims",
            str(args.static_dims),
        ]
        results = train(args, "static", [*static, "--learning_rate", str(args.static_learning_rate), *distill])
        systems["static"] = {metric: results[f"predict_{metric}"], "train_seconds": results["wall_seconds"]}
    systems = {"teacher": {metric: teacher_score}, **systems}
    texts = texts_of(args.task, args.test)[: args.throughput_texts]
    texts_path = workdir / "texts.json"
    texts_path.write_text(json.dumps([" ".join(t) if args.task == "ner" else t for t in texts]), encoding="utf-8")
    int8 = [name for name in systems if name != "static"]  # the static model is timed with PyTorch only
    for name in int8:
        export(args, workdir / name)
    timings: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name in systems:
            for backend in ("torch", "onnx-int8") if name in int8 else ("torch",):
                timings.setdefault((name, backend), []).append(time_system(args, workdir / name, backend, texts_path))
    for name, system in systems.items():
        system["torch"] = statistics.median(timings[(name, "torch")])
        system["int8"] = statistics.median(timings[(name, "onnx-int8")]) if name in int8 else None
        system["by_round"] = {backend: values for (timed, backend), values in timings.items() if timed == name}
    checks = {}
    bars = BARS[args.task]
    for layers in args.layers:
        student, gold = systems[f"distilled-{layers}"], systems[f"gold-{layers}"]
        checks[f"distilled-{layers}"] = {
            "retention": student[metric] / teacher_score if teacher_score else None,
            "beats_gold": student[metric] > gold[metric],
            "torch_speedup": student["torch"] / systems["teacher"]["torch"],
            "int8_speedup": student["int8"] / systems["teacher"]["torch"],
        }
    if "static" in systems:
        checks["static"] = {
            "retention": systems["static"][metric] / teacher_score if teacher_score else None,
            "torch_speedup": systems["static"]["torch"] / systems["teacher"]["torch"],
        }
    report = {
        "task": args.task,
        "metric": metric,
        "teacher": args.teacher,
        "data": {"train": args.train, "labelled_rows": args.labelled_rows, "unlabelled_rows": unlabelled},
        "settings": {k: v for k, v in vars(args).items() if k not in {"worker", "texts"}},
        "rounds": args.rounds,
        "min_seconds_per_timing": MIN_SECONDS,
        "throughput_texts": len(texts),
        "systems": systems,
        "checks": checks,
        "bars": bars,
        "machine": machine(),
    }
    write_results(Path(args.output), report, markdown(report))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=list(SCRIPTS), required=True)
    parser.add_argument("--teacher", help="The fine-tuned teacher's output directory (copied, never written).")
    parser.add_argument("--train")
    parser.add_argument("--validation")
    parser.add_argument("--test")
    parser.add_argument("--labelled_rows", type=int, help="Students' gold rows: the first N (default: all).")
    parser.add_argument("--unlabelled_rest", action="store_true", help="Rows after --labelled_rows: --distill_file.")
    parser.add_argument("--layers", type=lambda s: [int(n) for n in s.split(",")], default=[3, 2])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--static_dims", type=int, help="Classification: also a static student of D dimensions.")
    parser.add_argument("--static_learning_rate", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max_steps", type=int, help="Smoke runs only.")
    parser.add_argument("--max_eval_samples", type=int)
    parser.add_argument("--max_predict_samples", type=int)
    parser.add_argument(
        "--train_args", type=shlex.split, default=[], help='More flags for every training run: --train_args="--bf16".'
    )
    parser.add_argument("--export_args", type=shlex.split, default=[], help="More flags for export.py, as one string.")
    parser.add_argument("--throughput_texts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--reuse", action="store_true", help="Keep the runs and exports an interrupted run finished in --workdir."
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--workdir", default="outputs/distillation_benchmark")
    parser.add_argument("--output", default="benchmarks/results/distillation.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.worker and not all((args.teacher, args.train, args.validation, args.test)):
        parser.error("--teacher, --train, --validation and --test are required")
    return args


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    parsed = parse()
    if parsed.worker:
        worker(parsed)
    else:
        main(parsed)
