"""How the calibration stage reports: the reliability diagram (PNG) and the model card's lines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from utils.core.calibration import ECE_BINS, expected_calibration_error, reliability
from utils.core.files import atomic_write
from utils.core.task import TaskCalibration

UNIT_WORDS = {
    "text": "one per text (its predicted label's probability)",
    "entity": "one per predicted entity (the mean probability of its words' tags, the log-odds scaled)",
}


def write_reliability_diagram(
    path: str, split: str, before: np.ndarray, after: np.ndarray, right: np.ndarray, bins: int = ECE_BINS
) -> None:
    """Accuracy against confidence in `bins` equal-width bins, before and after calibration, with the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, 2, figsize=(9, 4.4), sharey=True)
    for axes, (title, confidence) in zip(panels, (("before calibration", before), ("after calibration", after))):
        rows = reliability(confidence, right, bins)
        centres = [(row["low"] + row["high"]) / 2 for row in rows]
        accuracy = [row["accuracy"] if row["count"] else np.nan for row in rows]
        axes.bar(centres, accuracy, width=1 / bins, edgecolor="black", color="#4c72b0", label="accuracy")
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        ece = expected_calibration_error(confidence, right, bins)
        axes.set_title(f"{split}, {title}: ECE {ece:.4f}")
        axes.set_xlabel("confidence")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
    panels[0].set_ylabel("accuracy")
    panels[0].legend(loc="upper left")
    figure.tight_layout()
    with atomic_write(path, "wb") as stream:
        figure.savefig(stream, format="png", dpi=110)
    plt.close(figure)


def card_lines(outcome: Any, calibration: TaskCalibration, png: str, coverages: Sequence[float]) -> list[str]:
    """The model card's calibration section: the method, ECE/Brier before and after, the risk-coverage table."""
    fitted, metrics = outcome.calibration, outcome.metrics
    unit = UNIT_WORDS.get(calibration.unit, calibration.unit)
    bias = "" if fitted.bias is None else f" and bias {fitted.bias:.4f} (Platt scaling)"
    if fitted.chosen == "isotonic":
        how = (
            f"isotonic regression ({len(fitted.isotonic[0])} points, interpolated between), the map with the lowest "
            "expected calibration error on held-out validation units (5-fold cross-validation)"
        )
    elif fitted.chosen == "identity":
        how = (
            "no fitted map kept: no fitted map (temperature, Platt or isotonic) lowered the expected calibration "
            "error on held-out validation units (5-fold cross-validation), so the scores are the model's own"
        )
    else:
        how = (
            f"{fitted.chosen or fitted.method} scaling, temperature {fitted.temperature:.4f}{bias}, the map with the "
            "lowest expected calibration error on held-out validation units (5-fold cross-validation)"
        )
    lines = [
        "## Calibration",
        "",
        f"- Confidences, {unit}, fitted on the validation split: {how}; saved in config.json (`calibration`) and "
        "applied by predict.py, serve.py and the ONNX backends. The map is monotone and moves no argmax: labels, "
        "entities, accuracy and F1 are unchanged.",
    ]
    for prefix, split in (("eval", "validation"), ("predict", "test")):
        if f"{prefix}_ece" in metrics:
            lines.append(
                f"- {split}: expected calibration error ({ECE_BINS} bins) "
                f"{metrics[f'{prefix}_ece_before_calibration']:.4f} before, {metrics[f'{prefix}_ece']:.4f} after; "
                f"Brier {metrics[f'{prefix}_brier_before_calibration']:.4f} before, "
                f"{metrics[f'{prefix}_brier']:.4f} after ({metrics[f'{prefix}_calibration_units']} units)."
            )
    if fitted.conformal_threshold is not None and "predict_conformal_coverage" in metrics:
        lines.append(
            f"- Conformal label sets (alpha {fitted.conformal_alpha}): test coverage "
            f"{metrics['predict_conformal_coverage']:.4f}, mean set size "
            f"{metrics['predict_conformal_mean_set_size']:.3f}."
        )
    if fitted.thresholds:
        lines.append(
            "- Per-label thresholds (micro-F1 on validation): "
            + ", ".join(f"{name} {cut:.3f}" for name, cut in fitted.thresholds.items())
            + "."
        )
    metric = calibration.kept_metric
    if f"predict_{metric}_at_coverage_100" in metrics:
        lines += ["", f"| coverage (test) | {metric} | --min_confidence |", "|---|---|---|"]
        for coverage in coverages:
            percent = round(coverage * 100)
            lines.append(
                f"| {percent}% | {metrics[f'predict_{metric}_at_coverage_{percent}']:.4f} | "
                f"{metrics[f'predict_min_confidence_at_coverage_{percent}']:.4f} |"
            )
    return [*lines, "", f"![Reliability diagram]({png})"]
