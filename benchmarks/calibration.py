"""Calibration of a saved model, measured: fit on the validation split through the training stage's own code
(`utils.training.calibration.fit_and_measure` on the task's prediction object), measure validation and test, write
the figures of docs/calibration.md. The model is not retrained and not changed (`--save` writes the fit into its
config.json, as a run's calibration stage does).

    python benchmarks/calibration.py --model /work/models/sst2 --validation_file ../shared/data/sst2/dev.tsv \\
        --test_file ../shared/data/sst2/test.tsv --conformal_alpha 0.1 \\
        --output benchmarks/results/calibration_sst2.json
    python benchmarks/calibration.py --model /work/models/conll-fp32 \\
        --validation_file ../shared/data/conll2003/valid.txt --test_file ../shared/data/conll2003/test.txt \\
        --output benchmarks/results/calibration_conll.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(model: str, validation_file: str, test_file: str, alpha: float | None, method: str, extra: list[str]):
    """(task, fitted calibration, metrics, reliability data of test) for a saved model and two labelled files."""
    from utils.core.arguments import ModelArguments
    from utils.core.parsing import parse_args
    from utils.serving.predictor import Predictor
    from utils.training.calibration import fit_and_measure

    predictor = Predictor.from_pretrained(model, device="cpu", backend="torch")
    task = predictor.task
    (data_args,), _ = parse_args(
        (task.data.arguments,), ["--validation_file", validation_file, "--test_file", test_file, *extra]
    )
    data = task.data.load(data_args, ModelArguments(model_name_or_path=model))
    splits = {"validation": data.raw["validation"], "test": data.raw["test"]}
    outcome = fit_and_measure(task.calibration, predictor.prediction, splits, predictor.labels, data, method, alpha)
    return task, outcome


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--validation_file", required=True)
    parser.add_argument("--test_file", required=True)
    parser.add_argument("--conformal_alpha", type=float, default=None)
    parser.add_argument("--method", default="temperature", choices=["temperature", "none"])
    parser.add_argument("--output", required=True, help="results JSON (a .md table and a .png diagram beside it)")
    parser.add_argument("--save", action="store_true", help="write the fit into the model's config.json")
    args, extra = parser.parse_known_args(argv)

    from benchmarks.reporting import machine, write_results
    from utils.core.calibration import COVERAGES
    from utils.training.calibration import save_calibration
    from utils.training.calibration_report import write_reliability_diagram

    started = time.perf_counter()
    task, outcome = measure(args.model, args.validation_file, args.test_file, args.conformal_alpha, args.method, extra)
    seconds = time.perf_counter() - started
    output = Path(args.output)
    if outcome.shown is not None:
        write_reliability_diagram(str(output.with_suffix(".png")), *outcome.shown)
    if args.save:
        save_calibration(args.model, outcome.calibration)
    metrics = outcome.metrics
    report = {
        "command": " ".join(["python", "benchmarks/calibration.py", *(argv if argv is not None else sys.argv[1:])]),
        "model": os.path.abspath(args.model),
        "task": task.name,
        "unit": task.calibration.unit,
        "calibration": outcome.calibration.to_dict(),
        "metrics": metrics,
        "seconds": round(seconds, 1),
        "machine": machine(),
    }
    kept = task.calibration.kept_metric
    lines = [
        f"# Calibration of {args.model} ({task.name}, one unit per {task.calibration.unit})",
        "",
        f"Map {outcome.calibration.chosen}: temperature {outcome.calibration.temperature:.4f}"
        + ("" if outcome.calibration.bias is None else f", bias {outcome.calibration.bias:.4f} (Platt scaling)")
        + ("" if outcome.calibration.isotonic is None else f", {len(outcome.calibration.isotonic[0])} isotonic points")
        + ", fitted on validation. Labels and entities unchanged (a monotone map of each unit's score).",
        "",
        "| split | units | ECE before | ECE after | Brier before | Brier after |",
        "|---|---|---|---|---|---|",
    ]
    for prefix, split in (("eval", "validation"), ("predict", "test")):
        lines.append(
            f"| {split} | {metrics[f'{prefix}_calibration_units']} "
            f"| {metrics[f'{prefix}_ece_before_calibration']:.4f} "
            f"| {metrics[f'{prefix}_ece']:.4f} | {metrics[f'{prefix}_brier_before_calibration']:.4f} "
            f"| {metrics[f'{prefix}_brier']:.4f} |"
        )
    lines += ["", f"| test coverage | {kept} | --min_confidence |", "|---|---|---|"]
    for coverage in COVERAGES:
        percent = round(coverage * 100)
        lines.append(
            f"| {percent}% | {metrics[f'predict_{kept}_at_coverage_{percent}']:.4f} "
            f"| {metrics[f'predict_min_confidence_at_coverage_{percent}']:.4f} |"
        )
    if "predict_conformal_coverage" in metrics:
        lines += [
            "",
            f"Conformal sets (alpha {args.conformal_alpha}): validation threshold "
            f"{metrics['calibration_conformal_threshold']:.4f}; test coverage "
            f"{metrics['predict_conformal_coverage']:.4f}, "
            f"mean set size {metrics['predict_conformal_mean_set_size']:.3f}.",
        ]
    write_results(output, report, "\n".join(lines) + "\n")
    return report


if __name__ == "__main__":
    main()
