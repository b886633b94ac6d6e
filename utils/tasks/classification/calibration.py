"""Classification's units for calibration (`TaskCalibration`, docs/calibration.md): one per text (single-label: the
softmax over the labels), one per text and label (multi-label: is the label on or off). `abstain_classification`
applies --min_confidence to a prediction result."""

from __future__ import annotations

from typing import Any

import numpy as np
from datasets import Dataset

from utils.core.calibration import BELOW_MIN_CONFIDENCE, CalibrationUnits, SplitScores, is_abstained
from utils.core.labels import LabelSpace
from utils.core.losses import MULTI, SINGLE
from utils.core.task import LoadedData, TaskCalibration


def classification_scores(prediction: Any, raw: Dataset, labels: LabelSpace, data: LoadedData) -> SplitScores | None:
    """A split's texts with a label as units, their logits from `prediction` (None: regression has no
    confidence to calibrate, or the split has no labels)."""
    if prediction.problem_type not in (SINGLE, MULTI) or "label" not in raw.column_names:
        return None
    texts = raw["text"]
    pairs = raw["text_pair"] if "text_pair" in raw.column_names else None
    present = [i for i, text in enumerate(texts) if text.strip()]
    logits, _ = prediction.logits(texts, pairs, present)
    gold = [raw["label"][i] for i in present]
    ids = labels.label2id
    if prediction.problem_type == SINGLE:
        gold_ids = np.asarray([ids[g] if isinstance(g, str) else int(g) for g in gold], dtype=np.int64)
        return SplitScores(CalibrationUnits(logits, logits.argmax(axis=1), gold_ids))
    on = np.zeros(logits.shape, dtype=bool)
    for row, names in enumerate(gold):
        on[row, [ids[name] for name in names]] = True
    flat = logits.reshape(-1)
    binary = np.stack([flat, np.zeros_like(flat)], axis=1)  # sigmoid(z / T) = softmax([z, 0] / T)[0]
    units = CalibrationUnits(binary, (flat <= 0).astype(np.int64), (~on.reshape(-1)).astype(np.int64), False)
    return SplitScores(units, label_logits=logits, label_gold=on)


def wants_thresholds(data: LoadedData) -> bool:
    """--threshold auto on multi-label data."""
    return data.args.threshold == "auto" and data.settled.problem_type == MULTI


CLASSIFICATION_CALIBRATION = TaskCalibration(
    unit="text", kept_metric="accuracy", scores=classification_scores, wants_thresholds=wants_thresholds
)


def abstain_classification(result: dict[str, Any], min_confidence: float, mode: str) -> dict[str, Any]:
    """A text's label below --min_confidence: withheld (`"label": null`, `"abstained": true`) or, with `mode`
    'flag', kept and flagged; multi-label: each label on below it is withheld or, flagged, listed in
    `"abstained_labels"`. Either way the result counts them in `"below_min_confidence"`."""
    probabilities = result.get("probabilities") or {}
    if result.get("label") is not None:
        low = is_abstained(probabilities.get(result["label"]), min_confidence)
        result = {**result, BELOW_MIN_CONFIDENCE: int(low)}
        if low:
            result["abstained"] = True
            if mode == "withhold":
                result["label"] = None
        return result
    if "labels" in result:
        low = [name for name in result["labels"] if is_abstained(probabilities.get(name), min_confidence)]
        if mode == "withhold":
            return {**result, "labels": [n for n in result["labels"] if n not in low], BELOW_MIN_CONFIDENCE: len(low)}
        return {**result, "abstained_labels": low, BELOW_MIN_CONFIDENCE: len(low)}
    return {**result, BELOW_MIN_CONFIDENCE: 0}
