"""Classification metrics, offline (scikit-learn / scipy): single-label, multi-label and regression."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from datasets import Dataset

from utils.core.errors import ConfigError
from utils.core.labels import LabelSpace
from utils.core.losses import MULTI, REGRESSION
from utils.core.task import LoadedData
from utils.tasks.classification.arguments import LOWER_IS_BETTER, METRIC_NAMES

logger = logging.getLogger(__name__)


def single_label_metrics(
    gold: Sequence[int], predicted: Sequence[int], names: Sequence[str]
) -> tuple[dict[str, float], str]:
    """Accuracy, F1 (binary: of the second label, as `evaluate`'s f1 and GLUE's; macro with more labels),
    macro/micro/weighted F1, MCC, and the per-class precision/recall/F1/support report."""
    from sklearn.metrics import accuracy_score as accuracy
    from sklearn.metrics import classification_report as report
    from sklearn.metrics import f1_score, matthews_corrcoef

    ids = list(range(len(names)))
    metrics = {
        "accuracy": float(accuracy(gold, predicted)),
        "f1": float(f1_score(gold, predicted, **example_average(len(names)), zero_division=0)),
        "f1_macro": float(f1_score(gold, predicted, labels=ids, average="macro", zero_division=0)),
        "f1_micro": float(f1_score(gold, predicted, labels=ids, average="micro", zero_division=0)),
        "f1_weighted": float(f1_score(gold, predicted, labels=ids, average="weighted", zero_division=0)),
        "mcc": float(matthews_corrcoef(gold, predicted)) if len(set(gold) | set(predicted)) > 1 else 0.0,
    }
    text = report(gold, predicted, labels=ids, target_names=list(names), digits=4, zero_division=0)
    return metrics, text


def multi_label_metrics(
    gold: Sequence[Sequence[int]], predicted: Sequence[Sequence[int]], names: Sequence[str]
) -> tuple[dict[str, float], str]:
    """Micro/macro F1 over labels and subset accuracy (every label of an example right), from multi-hot rows."""
    from sklearn.metrics import accuracy_score as accuracy
    from sklearn.metrics import classification_report as report
    from sklearn.metrics import f1_score

    metrics = {
        "f1": float(f1_score(gold, predicted, average="micro", zero_division=0)),  # the example's multi-label F1
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


def example_average(n_labels: int) -> dict:
    """The averaging of the examples' f1/precision/recall: binary (the label with id 1 is the positive class) for two
    labels, as `evaluate` computes them; macro for more, where the example's call fails."""
    return (
        {"average": "binary", "pos_label": 1}
        if n_labels == 2
        else {"average": "macro", "labels": list(range(n_labels))}
    )


def requested_metrics(
    names: Sequence[str], problem: str, gold, predicted, n_labels: int, metrics: dict[str, float]
) -> dict[str, float]:
    """--metric_name (or the GLUE task's metrics) as <name> keys, computed as the example's `evaluate` metric of
    that name would be; several also give combined_score, their mean, as the examples write it."""
    from sklearn.metrics import precision_score, recall_score

    wrong = [name for name in names if name not in METRIC_NAMES[problem]]
    if wrong:
        raise ConfigError(
            f"--metric_name {','.join(wrong)} does not apply to {problem} data; choose from "
            f"{list(METRIC_NAMES[problem])}."
        )
    average = {"average": "micro"} if problem == MULTI else example_average(n_labels)
    aliases = {
        "matthews_correlation": "mcc",
        "mcc": "mcc",
        "pearsonr": "pearson",
        "spearmanr": "spearman",
        "accuracy": "subset_accuracy" if problem == MULTI else "accuracy",
    }
    extra: dict[str, float] = {}
    for name in names:
        if name == "precision":
            extra[name] = float(precision_score(gold, predicted, **average, zero_division=0))
        elif name == "recall":
            extra[name] = float(recall_score(gold, predicted, **average, zero_division=0))
        else:
            extra[name] = metrics[aliases.get(name, name)]
    if len(names) > 1:
        extra["combined_score"] = float(np.mean([extra[name] for name in names]))
    return extra


def keep_logits(logits, labels=None):
    """Classification logits are small (examples x labels): keep them for probabilities."""
    return logits[0] if isinstance(logits, tuple) else logits


def score_classification(
    decoded: list[dict], raw: Dataset, labels: LabelSpace, data: LoadedData
) -> tuple[dict[str, float], str]:
    """The problem type's metrics and per-label report; nothing without gold labels."""
    problem = data.settled.problem_type
    if "label" not in raw.column_names:
        return {}, ""
    gold = raw["label"]
    if problem == REGRESSION:
        gold_ids, predicted_ids = gold, [d["value"] for d in decoded]
        metrics, text = regression_metrics(gold_ids, predicted_ids)
    elif problem == MULTI:

        def hot(names):
            return [int(n in set(names)) for n in labels.names]

        gold_ids, predicted_ids = [hot(g) for g in gold], [hot(d["labels"]) for d in decoded]
        metrics, text = multi_label_metrics(gold_ids, predicted_ids, labels.names)
    else:
        label2id = labels.label2id
        gold_ids, predicted_ids = [label2id[g] for g in gold], [label2id[d["label"]] for d in decoded]
        metrics, text = single_label_metrics(gold_ids, predicted_ids, labels.names)
    extra = requested_metrics(data.args.metric_names, problem, gold_ids, predicted_ids, len(labels), metrics)
    return {**metrics, **extra}, text


def best_classification_metric(data: LoadedData) -> tuple[str, bool]:
    """The default --metric_for_best_model: the first --metric_name (or GLUE metric) that applies, else accuracy,
    micro F1 or MSE by problem type."""
    problem = data.settled.problem_type
    applicable = [name for name in data.args.metric_names if name in METRIC_NAMES[problem]]
    if applicable:
        return applicable[0], applicable[0] not in LOWER_IS_BETTER
    return {REGRESSION: ("mse", False), MULTI: ("f1_micro", True)}.get(problem, ("accuracy", True))
