"""The calibration stage: after training, fit the confidences on the validation split, measure them on validation
and test, and save the fit with the model (docs/calibration.md).

The units come from the task's own prediction object (`task.serving.predictor`) on the trained model, the object
predict.py, serve.py and the ONNX backends build, so what is fitted here is fitted on the scores they give. The maths
is utils/core/calibration.py's; what a unit is, the task's (`Task.calibration`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from utils.core.calibration import (
    CALIBRATION_KEY,
    COVERAGES,
    Calibration,
    SplitScores,
    brier_score,
    choose_map,
    confidences,
    conformal_threshold,
    expected_calibration_error,
    fit_map,
    label_sets,
    label_thresholds,
    micro_f1,
    risk_coverage,
    softmax,
)
from utils.core.files import atomic_write
from utils.core.task import ForwardBatch, LoadedData, Task, TaskCalibration
from utils.training.trainer import full_precision_forward

logger = logging.getLogger(__name__)

#: The reliability diagram in the output directory (and the model card).
RELIABILITY_PNG = "reliability_diagram.png"
#: Which splits are measured, under which result prefix (the repository's eval_/predict_ convention).
SPLIT_PREFIXES = {"validation": "eval", "test": "predict"}
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class ModelForward:
    """A `Forward` on the model in memory: rows longest first in batches, padded on the right, logits as float32."""

    model: Any
    device: Any
    batch_size: int
    pad_id: int

    def __call__(self, inputs: Mapping[str, Sequence[Sequence[int]]]) -> Iterator[ForwardBatch]:
        ids = inputs["input_ids"]
        order = sorted(range(len(ids)), key=lambda row: -len(ids[row]))
        for first in range(0, len(order), self.batch_size):
            rows = order[first : first + self.batch_size]
            longest = max(len(ids[row]) for row in rows)
            batch = {}
            for name in MODEL_INPUTS:
                if name in inputs:
                    pad = self.pad_id if name == "input_ids" else 0
                    padded = [list(inputs[name][row]) + [pad] * (longest - len(inputs[name][row])) for row in rows]
                    batch[name] = torch.tensor(padded, device=self.device)
            if "attention_mask" not in batch:
                mask = [[1] * len(ids[row]) + [0] * (longest - len(ids[row])) for row in rows]
                batch["attention_mask"] = torch.tensor(mask, device=self.device)
            with torch.no_grad():
                logits = self.model(**batch).logits
            yield rows, {"logits": logits.float().cpu()}


@dataclass(frozen=True)
class CalibrationOutcome:
    """What the stage fitted, every measure by result key, and the reliability data of the split the diagram shows."""

    calibration: Calibration
    metrics: dict[str, Any]
    shown: tuple[str, np.ndarray, np.ndarray, np.ndarray] | None  # (split, confidence before, after, right)


def fit_and_measure(
    calibration: TaskCalibration,
    prediction: Any,
    splits: Mapping[str, Any],
    labels,
    data: LoadedData,
    method: str = "temperature",
    conformal_alpha: float | None = None,
) -> CalibrationOutcome | None:
    """Fit on `splits["validation"]` and measure every split given ("validation", "test"); None when the task has
    no units to calibrate on validation (regression, no gold labels)."""
    scores = {name: calibration.scores(prediction, split, labels, data) for name, split in splits.items()}
    scores = {name: found for name, found in scores.items() if found is not None}
    fitting = scores.get("validation")
    if fitting is None or len(fitting.units) == 0:
        return None
    temperature, bias, points, chosen, figures = 1.0, None, None, None, {}
    if method == "temperature":
        chosen, figures = choose_map(fitting.units, calibration.bias)
        temperature, bias, points = fit_map(fitting.units, chosen)
    fitted: dict[str, Any] = {"method": method, "unit": calibration.unit, "temperature": round(temperature, 6)}
    metrics: dict[str, Any] = {"calibration_temperature": fitted["temperature"]}
    if chosen is not None:
        fitted["chosen"] = metrics["calibration_map"] = chosen
        for name, figure in figures.items():
            if math.isfinite(figure):  # a fitted map on fewer units than folds is not a candidate
                metrics[f"eval_cross_validated_ece_{name.replace('+', '_')}"] = round(figure, 6)
    if bias is not None:
        fitted["bias"] = metrics["calibration_bias"] = round(bias, 6)
    if points is not None:
        fitted["isotonic"] = points
        metrics["calibration_isotonic_points"] = len(points[0])
    if conformal_alpha is not None and fitting.units.classes:
        threshold = conformal_threshold(fitting.units, temperature, conformal_alpha)
        fitted.update(conformal_alpha=conformal_alpha, conformal_threshold=round(threshold, 6))
        metrics["calibration_conformal_threshold"] = fitted["conformal_threshold"]
    elif conformal_alpha is not None:
        logger.warning("--conformal_alpha: label sets are for single-label classification; none fitted.")
    if calibration.wants_thresholds(data) and fitting.label_logits is not None:
        cuts = label_thresholds(sigmoid(fitting.label_logits / temperature), fitting.label_gold)
        fitted["thresholds"] = {name: round(float(cut), 6) for name, cut in zip(labels.names, cuts)}
    result = Calibration(**fitted)
    shown = None
    for name, split_scores in scores.items():
        prefix = SPLIT_PREFIXES[name]
        metrics.update(split_measures(prefix, split_scores, result, calibration.kept_metric, name == "test"))
        before, right = confidences(split_scores.units)
        after, _ = confidences(split_scores.units, result.temperature, result.bias, result.isotonic)
        shown = (name, before, after, right)  # the last split: test when there is one
    return CalibrationOutcome(result, metrics, shown)


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


def split_measures(
    prefix: str, scores: SplitScores, calibration: Calibration, kept_metric: str, coverage: bool
) -> dict[str, Any]:
    """ECE and Brier before and after, the risk-coverage table (`coverage`), conformal coverage and set size, and
    micro-F1 at the fixed and the chosen thresholds, as `<prefix>_...` result keys."""
    units, temperature = scores.units, calibration.temperature
    before, right = confidences(units)
    after, _ = confidences(units, temperature, calibration.bias, calibration.isotonic)
    metrics: dict[str, Any] = {
        f"{prefix}_calibration_units": len(units),
        f"{prefix}_ece_before_calibration": round(expected_calibration_error(before, right), 6),
        f"{prefix}_ece": round(expected_calibration_error(after, right), 6),
        f"{prefix}_brier_before_calibration": round(brier_score(before, right), 6),
        f"{prefix}_brier": round(brier_score(after, right), 6),
    }
    if coverage:
        for row in risk_coverage(after, right):
            percent = round(row["coverage"] * 100)
            metrics[f"{prefix}_{kept_metric}_at_coverage_{percent}"] = round(row["accuracy"], 6)
            metrics[f"{prefix}_min_confidence_at_coverage_{percent}"] = round(row["min_confidence"], 6)
    if calibration.conformal_threshold is not None and len(units):
        members = label_sets(softmax(units.logits, temperature), calibration.conformal_threshold)
        metrics[f"{prefix}_conformal_coverage"] = round(float(members[np.arange(len(units)), units.gold].mean()), 6)
        metrics[f"{prefix}_conformal_mean_set_size"] = round(float(members.sum(axis=1).mean()), 6)
    if calibration.thresholds is not None and scores.label_logits is not None:
        probabilities = sigmoid(scores.label_logits / temperature)
        cuts = np.asarray(list(calibration.thresholds.values()))
        metrics[f"{prefix}_micro_f1_threshold_0.5"] = round(micro_f1(probabilities > 0.5, scores.label_gold), 6)
        metrics[f"{prefix}_micro_f1_threshold_auto"] = round(micro_f1(probabilities > cuts, scores.label_gold), 6)
    return metrics


def save_calibration(output_dir: str, calibration: Calibration) -> bool:
    """Write the fit into the saved model's config.json (False: the directory holds no config.json)."""
    path = os.path.join(output_dir, "config.json")
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as stream:
        config = json.load(stream)
    config[CALIBRATION_KEY] = calibration.to_dict()
    with atomic_write(path) as stream:
        stream.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return True


def calibrate_run(trainer, task: Task, data: LoadedData, labels) -> tuple[dict[str, Any], list[str]]:
    """The stage: on the saved model, fit on validation, measure validation and test, save the fit in config.json
    and the model in memory, draw the reliability diagram. Returns the metrics and the model card's lines."""
    args = trainer.args
    if args.calibration == "none" or task.calibration is None or "validation" not in data.raw:
        return {}, []
    model = trainer.model
    model.eval()
    tokenizer = trainer.processing_class
    forward = ModelForward(model, args.device, args.per_device_eval_batch_size, tokenizer.pad_token_id or 0)
    config = model.config
    setattr(config, CALIBRATION_KEY, None)  # the units are the uncalibrated scores
    prediction = task.serving.predictor(
        forward, tokenizer, config, labels, data.args.max_seq_length, task.serving.options()
    )
    splits = {name: data.raw[name] for name in SPLIT_PREFIXES if name in data.raw}
    with full_precision_forward(model):  # the fp32 scores predict.py will compute, whatever precision trained it
        outcome = fit_and_measure(
            task.calibration, prediction, splits, labels, data, args.calibration, args.conformal_alpha
        )
    if outcome is None:
        logger.info("Calibration: nothing to calibrate on the validation split (no labelled units).")
        return {}, []
    setattr(config, CALIBRATION_KEY, outcome.calibration.to_dict())
    if not save_calibration(args.output_dir, outcome.calibration):
        logger.warning("Calibration: %s holds no config.json; the fit is only in the results.", args.output_dir)
    fitted = outcome.calibration
    logger.info(
        "Calibration: %s map (temperature %.4f, bias %s, isotonic points %s), the lowest cross-validated ECE on "
        "validation.",
        fitted.chosen or "no",
        fitted.temperature,
        fitted.bias,
        None if fitted.isotonic is None else len(fitted.isotonic[0]),
    )
    from utils.training.calibration_report import card_lines, write_reliability_diagram

    if outcome.shown is not None:
        write_reliability_diagram(os.path.join(args.output_dir, RELIABILITY_PNG), *outcome.shown)
    return outcome.metrics, card_lines(outcome, task.calibration, RELIABILITY_PNG, COVERAGES)
