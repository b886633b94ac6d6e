"""Entity-level scores (seqeval, conlleval semantics by default), computed offline from per-word tags."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from datasets import Dataset
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2, IOBES

from utils.core.labels import LabelSpace
from utils.core.task import LoadedData
from utils.tasks.ner.arguments import NerDataArguments
from utils.tasks.ner.iob import count_invalid_transitions

logger = logging.getLogger(__name__)


def score_ner(
    decoded: list[list[str]], raw: Dataset, labels: LabelSpace, data: LoadedData
) -> tuple[dict[str, float], str]:
    """Entity-level scores over every gold word of the split."""
    data_args: NerDataArguments = data.args
    if "ner_tags" not in raw.column_names:
        return {}, ""
    return entity_metrics(
        raw["ner_tags"],
        decoded,
        strict=data_args.seqeval_mode == "strict",
        scheme=data_args.seqeval_scheme,
        per_type=data_args.return_entity_level_metrics,
    )


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
        # the transformers example's keys beside ours: with --return_entity_level_metrics it reports overall_* and,
        # per type, <TYPE>_number (our <TYPE>_support) and no plain precision/recall/f1/accuracy
        metrics.update({f"overall_{name}": metrics[name] for name in ("precision", "recall", "f1", "accuracy")})
        for entity_type, row in report.items():
            if " avg" in entity_type:
                continue
            metrics.update(
                {
                    f"{entity_type}_precision": row["precision"],
                    f"{entity_type}_recall": row["recall"],
                    f"{entity_type}_f1": row["f1-score"],
                    f"{entity_type}_support": int(row["support"]),
                    f"{entity_type}_number": int(row["support"]),
                }
            )
    text = classification_report(gold, predicted, digits=4, zero_division=0, **kwargs)
    text += f"\nword accuracy: {metrics['accuracy']:.4f} over {sum(len(s) for s in gold)} words\n"
    return metrics, text
