"""Classification from annotation tools: Label Studio `choices` and doccano label lists (read by
utils/core/annotations) as text/label rows, and a predict.py result as the choices to pre-annotate.

One choice per record is single-label data; a split where any record has several is multi-label (every record's
choices a list, none allowed), unless --problem_type says otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

from datasets import Dataset

from utils.core.annotations.records import AnnotatedText, Choice
from utils.core.errors import ConfigError, DataError
from utils.core.losses import MULTI

logger = logging.getLogger(__name__)


def choices_table(dataset: Dataset, source: str, problem: str | None) -> Dataset:
    """Annotation records (utils/core/annotations/loading.py) as `text` and `label` columns (a name, or a list of
    names for multi-label data), every record kept."""
    multi = problem == MULTI or (problem is None and any(len(choices) > 1 for choices in dataset["choices"]))
    labels = []
    for record in dataset:
        choices = record["choices"]
        if not multi and len(choices) != 1:
            raise DataError(
                "no choice: every record of single-label data needs one. Label it in the tool or remove "
                "it (with --problem_type multi_label a record may have none).",
                source=record["location"],
            )
        labels.append(list(choices) if multi else choices[0])
    spans = sum(len(spans) for spans in dataset["spans"])
    if spans:
        logger.info("%s: %d spans not used: classification trains on choices", source, spans)
    logger.info(
        "%s: %d records, %d choices -> %s labels",
        source,
        len(dataset),
        sum(len(choices) for choices in dataset["choices"]),
        "multi-label" if multi else "single-label",
    )
    return Dataset.from_dict({"text": dataset["text"], "label": labels})


def classification_annotation(result: dict[str, Any]) -> AnnotatedText:
    """`Task.annotation` of classification: the predicted label (multi-label: every label over the threshold) as
    choices, each with its probability."""
    if "value" in result:
        raise ConfigError(
            "a regression model predicts numbers, which are no labels to pre-annotate; "
            "--output_format label-studio|doccano needs a classification model."
        )
    probabilities = result.get("probabilities", {})
    names = result["labels"] if "labels" in result else [result["label"]] if result.get("label") is not None else []
    uncertainty = result.get("uncertainty")
    return AnnotatedText(
        result["text"],
        choices=tuple(Choice(name, probabilities.get(name)) for name in names),
        uncertainty=uncertainty,
        score=None if uncertainty is None else round(1 - uncertainty, 4),
    )
