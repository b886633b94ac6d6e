"""Offline metrics from predicted labels (logits are reduced to argmax before they reach here)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2, IOBES

from utils.iob import count_invalid_transitions

SEQEVAL_SCHEMES = {"IOB2": IOB2, "IOBES": IOBES}


def argmax_logits(logits: torch.Tensor | tuple, labels: torch.Tensor | None = None) -> torch.Tensor:
    """`preprocess_logits_for_metrics`: keep one id per token instead of every logit of the split."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def entity_metrics(
    gold: Sequence[Sequence[str]],
    predicted: Sequence[Sequence[str]],
    strict: bool = False,
    scheme: str = "IOB2",
    per_type: bool = False,
) -> tuple[dict[str, float], str]:
    """Entity-level precision/recall/F1 (conlleval semantics, or strict `scheme` matching), word accuracy, and the
    per-type report. Returns (metrics, report text)."""
    kwargs = {"mode": "strict", "scheme": SEQEVAL_SCHEMES[scheme]} if strict else {}
    gold, predicted = [list(s) for s in gold], [list(s) for s in predicted]
    metrics = {
        "precision": precision_score(gold, predicted, zero_division=0, **kwargs),
        "recall": recall_score(gold, predicted, zero_division=0, **kwargs),
        "f1": f1_score(gold, predicted, zero_division=0, **kwargs),
        "accuracy": accuracy_score(gold, predicted),
        "invalid_iob_predictions": sum(count_invalid_transitions(tags) for tags in predicted),
    }
    report = classification_report(gold, predicted, digits=4, zero_division=0, output_dict=True, **kwargs)
    if per_type:
        for entity_type, row in report.items():
            if " avg" in entity_type:
                continue
            metrics.update({f"{entity_type}_precision": row["precision"], f"{entity_type}_recall": row["recall"],
                            f"{entity_type}_f1": row["f1-score"], f"{entity_type}_support": int(row["support"])})
    text = classification_report(gold, predicted, digits=4, zero_division=0, **kwargs)
    text += f"\nword accuracy: {metrics['accuracy']:.4f} over {sum(len(s) for s in gold)} words\n"
    return metrics, text


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
    import numpy as np
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
