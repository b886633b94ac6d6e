"""Classification metrics, offline (scikit-learn / scipy): single-label, multi-label and regression."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from datasets import Dataset

from utils.core.labels import LabelSpace
from utils.core.losses import MULTI, REGRESSION
from utils.tasks.classification.arguments import ClassificationDataArguments

logger = logging.getLogger(__name__)


def single_label_metrics(gold: Sequence[int], predicted: Sequence[int], names: Sequence[str]
                         ) -> tuple[dict[str, float], str]:
    """Accuracy, macro/micro/weighted F1, MCC, and the per-class precision/recall/F1/support report."""
    from sklearn.metrics import accuracy_score as accuracy
    from sklearn.metrics import classification_report as report
    from sklearn.metrics import f1_score, matthews_corrcoef

    ids = list(range(len(names)))
    metrics = {
        "accuracy": float(accuracy(gold, predicted)),
        "f1_macro": float(f1_score(gold, predicted, labels=ids, average="macro", zero_division=0)),
        "f1_micro": float(f1_score(gold, predicted, labels=ids, average="micro", zero_division=0)),
        "f1_weighted": float(f1_score(gold, predicted, labels=ids, average="weighted", zero_division=0)),
        "mcc": float(matthews_corrcoef(gold, predicted)) if len(set(gold) | set(predicted)) > 1 else 0.0,
    }
    text = report(gold, predicted, labels=ids, target_names=list(names), digits=4, zero_division=0)
    return metrics, text


def multi_label_metrics(gold: Sequence[Sequence[int]], predicted: Sequence[Sequence[int]], names: Sequence[str]
                        ) -> tuple[dict[str, float], str]:
    """Micro/macro F1 over labels and subset accuracy (every label of an example right), from multi-hot rows."""
    from sklearn.metrics import accuracy_score as accuracy
    from sklearn.metrics import classification_report as report
    from sklearn.metrics import f1_score

    metrics = {
        "f1_micro": float(f1_score(gold, predicted, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(gold, predicted, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy(gold, predicted)),
    }
    text = report(gold, predicted, target_names=list(names), digits=4, zero_division=0)
    return metrics, text


def regression_metrics(gold: Sequence[float], predicted: Sequence[float]) -> tuple[dict[str, float], str]:
    """MSE, MAE, Pearson and Spearman correlation."""
    from scipy.stats import pearsonr, spearmanr

    gold_array, predicted_array = np.asarray(gold, dtype=float), np.asarray(predicted, dtype=float)
    constant = len(gold_array) < 2 or np.ptp(gold_array) == 0 or np.ptp(predicted_array) == 0
    metrics = {
        "mse": float(np.mean((gold_array - predicted_array) ** 2)),
        "mae": float(np.mean(np.abs(gold_array - predicted_array))),
        "pearson": 0.0 if constant else float(pearsonr(gold_array, predicted_array)[0]),
        "spearman": 0.0 if constant else float(spearmanr(gold_array, predicted_array)[0]),
    }
    text = "\n".join(f"{name}: {value:.4f}" for name, value in metrics.items()) + f"\nexamples: {len(gold_array)}\n"
    return metrics, text


def confusion(gold: Sequence[int], predicted: Sequence[int], n_labels: int) -> list[list[int]]:
    """Counts[gold][predicted]."""
    matrix = [[0] * n_labels for _ in range(n_labels)]
    for g, p in zip(gold, predicted, strict=True):
        matrix[g][p] += 1
    return matrix


def keep_logits(logits, labels=None):
    """Classification logits are small (examples x labels): keep them for probabilities."""
    return logits[0] if isinstance(logits, tuple) else logits


def score_classification(decoded: list[dict], raw: Dataset, labels: LabelSpace,
                         data_args: ClassificationDataArguments) -> tuple[dict[str, float], str]:
    """The problem type's metrics and per-label report; nothing without gold labels."""
    if "label" not in raw.column_names:
        return {}, ""
    gold = raw["label"]
    if data_args.problem_type == REGRESSION:
        return regression_metrics(gold, [d["value"] for d in decoded])
    if data_args.problem_type == MULTI:
        def hot(names):
            return [int(n in set(names)) for n in labels.names]
        return multi_label_metrics([hot(g) for g in gold], [hot(d["labels"]) for d in decoded], labels.names)
    label2id = labels.label2id
    return single_label_metrics([label2id[g] for g in gold], [label2id[d["label"]] for d in decoded], labels.names)


def best_classification_metric(raw, data_args: ClassificationDataArguments) -> tuple[str, bool]:
    return {REGRESSION: ("mse", False), MULTI: ("f1_micro", True)}.get(data_args.problem_type, ("accuracy", True))

