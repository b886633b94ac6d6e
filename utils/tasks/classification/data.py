"""Classification data from any source in one canonical shape (text, text_pair, label, location), the problem
type detected from the labels, and the zero-/few-shot selection of the training split."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Value

from utils.core.data import (
    file_format,
    load_raw_datasets,
    number_type,
    numbers_from_text,
    pick_column,
    require_columns,
    split_source,
)
from utils.core.errors import ConfigError, DataError
from utils.core.losses import MULTI, REGRESSION, SINGLE
from utils.tasks.classification.arguments import ClassificationDataArguments
from utils.tasks.classification.few_shot import take_few_shot_sample
from utils.tasks.classification.labels import label_sort_key
from utils.tasks.classification.zero_shot import read_label_descriptions

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ("label", "labels", "score", "target")

#: Column pairs that are sentence pairs whenever both are present (GLUE/SNLI conventions).
KNOWN_PAIRS = (("sentence1", "sentence2"), ("premise", "hypothesis"), ("question", "sentence"),
               ("question1", "question2"))


PROBLEM_ALIASES = {"single_label": SINGLE, "multi_label": MULTI, SINGLE: SINGLE, MULTI: MULTI, REGRESSION: REGRESSION}


def infer_text_columns(dataset: Dataset, label_column: str | None, source: str) -> list[str]:
    """The split's one text column (or a known pair); anything else needs --text_column_names."""
    columns = [c for c in dataset.column_names if c != label_column]
    for pair in KNOWN_PAIRS:
        if all(name in columns for name in pair):
            return list(pair)
    text = [c for c in columns if isinstance(dataset.features[c], Value) and dataset.features[c].dtype in
            {"string", "large_string"}]
    if len(text) > 1:  # CSV/TSV cells are all text: a column of numbers (ids, scores) is not the one to classify
        text = [c for c in text if number_type(dataset[c]) is None] or text
    if len(text) != 1:
        raise DataError(
            f"cannot tell which column holds the text: {'no text columns' if not text else f'several: {text}'} "
            f"among {dataset.column_names}. Name it with --text_column_names (two names for a sentence pair).",
            source=source,
        )
    return text


def label_kind(value: Any) -> str:
    """'list', 'float', 'int', 'str' or 'other' (e.g. a JSON object) for one label cell."""
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, int):  # bools too
        return "int"
    if isinstance(value, float):
        return "float"
    return "str" if isinstance(value, str) else "other"


def detect_problem_type(labels: Sequence[Any], delimiter: str) -> str:
    """Lists or delimited strings: multi-label; non-integer numbers: regression; anything else: single-label."""
    kinds = {label_kind(v) for v in labels}
    if "list" in kinds:
        return MULTI
    if "float" in kinds and any(not float(v).is_integer() for v in labels if label_kind(v) == "float"):
        return REGRESSION
    if kinds == {"str"} and any(delimiter in v for v in labels):
        return MULTI
    return SINGLE


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str)
                                                                                   and not value.strip())


def normalise_label(value: Any, problem: str, names: list[str] | None, delimiter: str, location: str) -> Any:
    """One label cell as the canonical type: a name (single), a list of names (multi) or a float (regression)."""
    if is_missing(value):
        raise DataError("empty or missing label (NaN/None/''); every row needs one. Fix or remove the row.",
                        source=location)
    if label_kind(value) == "other":
        raise DataError(f"a label must be a name, a number or a list of names, got {value!r}.", source=location)
    if problem == REGRESSION:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise DataError(f"regression needs a number, got {value!r}.", source=location) from None
        if not math.isfinite(number):
            raise DataError(f"regression needs a finite number, got {value!r}.", source=location)
        return number
    if problem == MULTI:
        items = value if isinstance(value, (list, tuple)) else str(value).split(delimiter)
        if any(label_kind(item) not in {"str", "int"} for item in items):
            raise DataError(f"a label list must hold names (or integer ids), got {value!r}.", source=location)
        if names and any(isinstance(i, int) and not 0 <= i < len(names) for i in items):
            raise DataError(f"label id out of range for the label names {names}: {value!r}.", source=location)
        items = [names[i] if names and isinstance(i, int) else str(i).strip() for i in items]
        if any(not item for item in items):
            raise DataError(f"empty name in the label list {value!r}.", source=location)
        return sorted(set(items))
    if isinstance(value, (list, tuple)):
        raise DataError(f"a list label {value!r} in single-label data; pass --problem_type multi_label.",
                        source=location)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if names and isinstance(value, int):
        if not 0 <= value < len(names):
            raise DataError(f"label id {value} is out of range for the label names {names}.", source=location)
        return names[value]
    return str(value).strip()


def canonical_split(dataset: Dataset, data_args: ClassificationDataArguments, source: str, problem: str | None,
                    text_cells: bool = False) -> tuple[Dataset, str | None]:
    """text / text_pair / label / location columns, checked row by row. Returns the dataset and the problem type.
    `text_cells`: every cell was read as text (CSV/TSV), so a label column of numbers is parsed as numbers."""
    label_column = None
    try:
        label_column = pick_column(dataset, data_args.label_column_name, LABEL_COLUMNS, source, "--label_column_name")
    except DataError:
        if data_args.label_column_name:
            raise
    text_columns = data_args.text_columns
    if text_columns:
        require_columns(dataset, text_columns, source, "--text_column_names")
    else:
        text_columns = infer_text_columns(dataset, label_column, source)
        logger.info("%s: text column(s) %s (set --text_column_names to choose others)", source, text_columns)
    feature = dataset.features.get(label_column) if label_column else None
    names = list(feature.names) if isinstance(feature, ClassLabel) else None
    raw_labels = dataset[label_column] if label_column else None
    if raw_labels is not None and text_cells:
        raw_labels = numbers_from_text(raw_labels)
    if raw_labels is not None and problem is None:
        problem = detect_problem_type([v for v in raw_labels if not is_missing(v)], data_args.label_delimiter)
    if raw_labels is not None and problem == SINGLE:
        kinds = {label_kind(v) for v in raw_labels if not is_missing(v)} - {"float"} | (
            {"int"} if any(label_kind(v) == "float" for v in raw_labels if not is_missing(v)) else set())
        if len(kinds) > 1:
            raise DataError(f"mixed label types {sorted(kinds)} in column '{label_column}'; use one type "
                            "(all names or all integer ids).", source=source)
    columns: dict[str, list] = {"text": [], "location": []}
    if len(text_columns) == 2:
        columns["text_pair"] = []
    if raw_labels is not None:
        columns["label"] = []
    texts = [dataset[c] for c in text_columns]
    for row in range(len(dataset)):
        location = f"{source} row {row + 1}"
        for column, values in zip(text_columns, texts):
            value = values[row]
            if is_missing(value):
                raise DataError(f"empty or missing text in column '{column}'; fix or remove the row.",
                                source=location)
            if not isinstance(value, str):
                raise DataError(f"the text in column '{column}' must be a string, got {value!r}; fix the row, or "
                                "name the text column with --text_column_names.", source=location)
        columns["text"].append(texts[0][row])
        if len(text_columns) == 2:
            columns["text_pair"].append(texts[1][row])
        columns["location"].append(location)
        if raw_labels is not None:
            columns["label"].append(normalise_label(raw_labels[row], problem, names, data_args.label_delimiter,
                                                    location))
    return Dataset.from_dict(columns), problem


def load_classification_data(data_args: ClassificationDataArguments, model_args) -> DatasetDict:
    """All splits in the canonical shape; the problem type comes from the training labels unless overridden."""
    raw = load_raw_datasets(data_args, cache_dir=model_args.cache_dir, token=model_args.token)
    problem = PROBLEM_ALIASES[data_args.problem_type] if data_args.problem_type else None
    result = DatasetDict()
    for split in sorted(raw, key=["train", "validation", "test"].index):
        source = split_source(data_args, split)
        text_cells = not data_args.dataset_name and file_format(source, data_args.data_format) in {"csv", "tsv"}
        result[split], problem = canonical_split(raw[split], data_args, source, problem, text_cells)
        if split != "test" and "label" not in result[split].column_names:
            raise DataError("has no label column; training and validation data need labels.", source=source)
    if problem is None:
        problem = SINGLE
    pairs = {split: "text_pair" in d.column_names for split, d in result.items()}
    if len(set(pairs.values())) > 1:
        raise DataError(f"some splits are sentence pairs and some are not: {pairs}. Use the same text columns.")
    data_args.problem_type = problem  # settled here, so every later piece reads one value
    logger.info("Problem type: %s", problem)
    return select_training_data(result, data_args)


def select_training_data(raw: DatasetDict, data_args: ClassificationDataArguments) -> DatasetDict:
    """Zero-shot: the label names are settled (descriptions, --label_list, else the data's labels) and the train
    split is dropped, so no train stage runs. Few-shot: the train split becomes its K-per-label sample."""
    if not (data_args.zero_shot or data_args.few_shot_k):
        return raw
    mode = "--zero_shot" if data_args.zero_shot else "--few_shot_k"
    if data_args.problem_type != SINGLE:
        raise ConfigError(f"{mode} is for single-label classification; these labels are {data_args.problem_type}.")
    if "text_pair" in raw[next(iter(raw))].column_names:
        raise ConfigError(f"{mode} compares single texts; sentence pairs are not supported.")
    if data_args.few_shot_k:
        if "train" not in raw:
            raise ConfigError("--few_shot_k samples from the training data: pass --train_file.")
        raw["train"] = take_few_shot_sample(raw["train"], data_args.few_shot_k, data_args.few_shot_seed)
        return raw
    if not data_args.label_names:
        described = list(read_label_descriptions(data_args.label_descriptions)) if data_args.label_descriptions \
            else None
        seen = raw["train"]["label"] if "train" in raw else [v for split in raw.values() for v in split["label"]
                                                             if "label" in split.column_names]
        names = described or sorted(set(seen), key=label_sort_key)
        if any("," in name for name in names):
            raise ConfigError(f"zero-shot label names cannot contain commas: {names}.")
        data_args.label_list = ",".join(names)
    if "train" in raw:
        logger.info("Zero-shot: the train split is not used (labels: %s).", data_args.label_list)
        del raw["train"]
    if not raw:
        raise ConfigError("--zero_shot needs data to label: pass --validation_file and/or --test_file.")
    return raw

