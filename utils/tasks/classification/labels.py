"""Classification's label space (ids in numeric order, names alphabetically) and the check of dev/test labels."""

from __future__ import annotations

import logging

from datasets import DatasetDict

from utils.core.errors import DataError
from utils.core.labels import LabelSpace, run_label_space, unseen_labels
from utils.core.losses import MULTI, REGRESSION
from utils.tasks.classification.arguments import ClassificationDataArguments
from utils.tasks.classification.checks import check_label_spellings, check_training_labels_vary

logger = logging.getLogger(__name__)


def label_sort_key(name: str) -> tuple:
    """Integer-like labels in numeric order, others alphabetically."""
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def build_classification_labels(raw: DatasetDict, data_args: ClassificationDataArguments, config) -> LabelSpace:
    """One output per class (single/multi-label) or one value (regression)."""
    if data_args.problem_type == REGRESSION:
        return LabelSpace((data_args.label_column_name or "score",))
    seen = None
    if "train" in raw:
        values = raw["train"]["label"]
        seen = {name for value in values for name in value} if data_args.problem_type == MULTI else set(values)
    return run_label_space(seen, data_args.label_names, config, sort_key=label_sort_key)


def check_classification_labels(raw: DatasetDict, labels: LabelSpace, data_args: ClassificationDataArguments
                                ) -> DatasetDict:
    """Validation/test labels the model cannot predict are an error naming where they are."""
    check_training_labels_vary(raw, labels, data_args.problem_type, data_args)
    if data_args.problem_type == REGRESSION:
        return raw
    check_label_spellings(raw, labels, data_args.problem_type, data_args)
    for split in [s for s in ("validation", "test") if s in raw and "label" in raw[s].column_names]:
        rows = raw[split]["label"] if data_args.problem_type == MULTI else ([v] for v in raw[split]["label"])
        count, summary = unseen_labels(rows, raw[split]["location"], labels, show=repr)
        if count:
            raise DataError(f"{split} labels never seen in training: {summary}. Known labels: {list(labels.names)}. "
                            "Fix the data or add examples of these labels to the training data.")
    return raw

