"""Classification's label space (ids in numeric order, names alphabetically) and the check of dev/test labels."""

from __future__ import annotations

import logging

from datasets import DatasetDict

from utils.core.errors import DataError
from utils.core.labels import LabelSpace, run_label_space, unseen_labels
from utils.core.losses import MULTI, REGRESSION
from utils.core.task import LoadedData
from utils.tasks.classification.checks import check_label_spellings, check_training_labels_vary
from utils.tasks.classification.settled import settled_label_names

logger = logging.getLogger(__name__)


def label_sort_key(name: str) -> tuple:
    """Integer-like labels in numeric order, others alphabetically."""
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def build_classification_labels(data: LoadedData, config) -> LabelSpace:
    """One output per class (single/multi-label) or one value (regression)."""
    raw, problem = data.raw, data.settled.problem_type
    if problem == REGRESSION:
        return LabelSpace((data.args.label_column_name or "score",))
    seen = None
    if "train" in raw:
        values = raw["train"]["label"]
        seen = {name for value in values for name in value} if problem == MULTI else set(values)
    return run_label_space(seen, settled_label_names(data), config, sort_key=label_sort_key)


def check_classification_labels(data: LoadedData, labels: LabelSpace) -> DatasetDict:
    """Validation/test labels the model cannot predict are an error naming where they are."""
    raw, problem = data.raw, data.settled.problem_type
    check_training_labels_vary(raw, labels, problem, data.args)
    if problem == REGRESSION:
        return raw
    check_label_spellings(raw, labels, problem, data.args)
    for split in [s for s in ("validation", "test") if s in raw and "label" in raw[s].column_names]:
        rows = raw[split]["label"] if problem == MULTI else ([v] for v in raw[split]["label"])
        count, summary = unseen_labels(rows, raw[split]["location"], labels, show=repr)
        if count:
            raise DataError(
                f"{split} labels never seen in training: {summary}. Known labels: {list(labels.names)}. "
                "Fix the data or add examples of these labels to the training data."
            )
    return raw
