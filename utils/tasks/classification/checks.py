"""Classification data that would train a useless or altered model with exit 0: label texts read as numbers only
when that changes no label (`"007"` stays `"007"`; `01` and `1` are not merged into one class), one class (or one
target) in training, and validation/test labels spelled otherwise than in training."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from datasets import DatasetDict

from utils.core.data import INTEGER, number_type, numbers_from_text
from utils.core.errors import DataError
from utils.core.labels import LabelSpace
from utils.core.losses import MULTI, REGRESSION
from utils.core.splits import split_source

logger = logging.getLogger(__name__)


def missing_label_column(columns: Sequence[str], split: str, usual: Sequence[str]) -> str:
    """What to say when a training or validation split has none of the `usual` label columns."""
    return (
        f"no label column: none of {list(usual)} exists; it has {list(columns)}. Name the label column "
        f"with --label_column_name ({split} data needs labels)."
    )


def is_plain_integer(text: str) -> bool:
    """An integer written as Python writes it back (`7`, `-3`; not `007`, `+7`, `-0`, `7.0`): reading it as a number
    and writing it out again gives the same text."""
    return bool(INTEGER.fullmatch(text)) and str(int(text)) == text


def label_texts_as_numbers(values: Sequence[Any], problem: str | None, source: str, column: str) -> list:
    """A CSV/TSV label column, as text cells, read as numbers only where nothing is lost: regression targets and
    columns of plain integers (class ids); any other column of numbers keeps its text as written (`007`, `1.0`).
    Two spellings of one number (`01` and `1`, `1.0` and `1`) would be one class after any conversion: an error
    naming both and their rows."""
    kind = number_type(values)
    if kind is None:
        return list(values)
    if problem == REGRESSION or (kind is float and any(not float(v).is_integer() for v in values if v != "")):
        return numbers_from_text(values)  # targets: 1.0 and 1 are the same target
    cells = [value for value in values if value != ""]
    if all(is_plain_integer(value) for value in cells):
        return numbers_from_text(values)
    first: dict[str, int] = {}
    spelling: dict[float, str] = {}
    for row, value in enumerate(values, start=1):
        if value == "":
            continue
        first.setdefault(value, row)
        seen = spelling.setdefault(float(value), value)
        if seen != value:
            raise DataError(
                f"labels {seen!r} (row {first[seen]}) and {value!r} (row {row}) in column '{column}' are "
                "the same number written two ways, so they would become one class; write each class one "
                "way (or, if they are different classes, give them names).",
                source=source,
            )
    return list(values)


def check_label_spellings(raw: DatasetDict, labels: LabelSpace, problem: str, data_args) -> None:
    """A validation/test label that is a training label's number written another way (`1.0` for `1`, `01` for `1`)
    is named as such, not merged and not reported as a mere unknown label."""
    if problem == REGRESSION:
        return
    known: dict[float, str] = {}
    for name in labels.names:
        if number_type([name]) is not None:
            known.setdefault(float(name), name)
    if not known:
        return
    for split in [s for s in ("validation", "test") if s in raw and "label" in raw[s].column_names]:
        for value, location in zip(raw[split]["label"], raw[split]["location"]):
            for name in value if problem == MULTI else [value]:
                if name in labels or number_type([name]) is None or float(name) not in known:
                    continue
                raise DataError(
                    f"{split} label {name!r} is written {known[float(name)]!r} in training; write each "
                    f"class the same way in every split ({split_source(data_args, split)}).",
                    source=location,
                )


def check_training_labels_vary(raw: DatasetDict, labels: LabelSpace, problem: str, data_args) -> None:
    """One class (or one target value) in all of training trains a model that answers it whatever the input, at a
    loss of 0: an error. With other classes in the label space (a fine-tuned model's head, --label_list) one-class
    data can be meant (a batch of corrections): a warning with the count."""
    if "train" not in raw or "label" not in raw["train"].column_names or not len(raw["train"]):
        return
    values = raw["train"]["label"]
    source = split_source(data_args, "train")
    distinct = {tuple(value) if problem == MULTI else value for value in values}
    if len(distinct) > 1:
        return
    only = next(iter(distinct))
    shown = list(only) if problem == MULTI else only
    what = "target" if problem == REGRESSION else "label set" if problem == MULTI else "label"
    if problem != REGRESSION and len(labels) > 1:
        logger.warning(
            "%s: every one of its %d training rows has the %s %r; the model (whose labels are %s) will be "
            "pulled towards answering it for every text.",
            source,
            len(values),
            what,
            shown,
            list(labels.names),
        )
        return
    raise DataError(
        f"every one of its {len(values)} training rows has the {what} {shown!r}, so the model could only "
        "learn to answer that for every text (training loss 0 from the start). Add rows of the other "
        f"{'values' if problem == REGRESSION else 'classes'}, or check --label_column_name.",
        source=source,
    )
