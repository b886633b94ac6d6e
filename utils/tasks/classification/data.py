"""Classification data from any source in one canonical shape (text, text_pair, label, location), the problem
type detected from the labels, and the zero-/few-shot selection of the training split."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Value

from utils.core.annotations.loading import ANNOTATION_FORMATS
from utils.core.data import (
    NUMBER,
    file_format,
    load_raw_datasets,
    number_type,
    pick_column,
    require_columns,
    split_source,
)
from utils.core.errors import ConfigError, DataError
from utils.core.losses import MULTI, REGRESSION, SINGLE
from utils.core.splits import source_rows
from utils.core.task import LoadedData
from utils.tasks.classification.arguments import (
    GLUE_DATASET,
    GLUE_TASKS,
    METRIC_NAMES,
    ClassificationDataArguments,
)
from utils.tasks.classification.checks import label_texts_as_numbers, missing_label_column
from utils.tasks.classification.choices import choices_table
from utils.tasks.classification.few_shot import take_few_shot_sample
from utils.tasks.classification.labels import label_sort_key
from utils.tasks.classification.settled import ClassificationSettled, settled_label_names
from utils.tasks.classification.zero_shot import read_label_descriptions

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ("label", "labels", "score", "target")

#: Column pairs that are sentence pairs whenever both are present (GLUE/SNLI conventions).
KNOWN_PAIRS = (
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question", "sentence"),
    ("question1", "question2"),
)


PROBLEM_ALIASES = {"single_label": SINGLE, "multi_label": MULTI, SINGLE: SINGLE, MULTI: MULTI, REGRESSION: REGRESSION}


def infer_text_columns(dataset: Dataset, label_column: str | None, source: str) -> list[str]:
    """The split's one text column (or a known pair); anything else needs --text_column_names."""
    columns = [c for c in dataset.column_names if c != label_column]
    for pair in KNOWN_PAIRS:
        if all(name in columns for name in pair):
            return list(pair)
    text = [
        c
        for c in columns
        if isinstance(dataset.features[c], Value) and dataset.features[c].dtype in {"string", "large_string"}
    ]
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


NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def label_cell_kind(value: Any) -> str | None:
    """'number' (an int or float, or text that is one), 'non-finite' (NaN or infinity, as a float or as text), 'name'
    (any other text); None for lists and missing cells, which other checks handle."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, tuple)):
        return None
    if isinstance(value, (int, float)):
        if math.isnan(value):
            return None  # a missing cell (JSON null read as NaN): refused at its row as missing
        return "number" if math.isfinite(value) else "non-finite"
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.lower() in NON_FINITE:
        return "non-finite"
    return "number" if NUMBER.fullmatch(text) else "name"


def check_label_kinds(values: Sequence[Any], source: str, column: str, delimiter: str) -> None:
    """Numbers and names mixed in one label column (`0/1` beside `positive/negative`) are not one label set, and a
    NaN or infinite value is not a target nor a class: each is an error naming the first row of each kind.
    Delimited multi-label cells (`a,b`) are names lists, checked elsewhere."""
    if any(isinstance(value, str) and delimiter in value for value in values):
        return
    first: dict[str, int] = {}
    for row, value in enumerate(values, start=1):
        kind = label_cell_kind(value)
        if kind is not None:
            first.setdefault(kind, row)
    if "non-finite" in first and "number" in first:
        row = first["non-finite"]
        raise DataError(
            f"label {values[row - 1]!r} in column '{column}' is not a finite number (rows of numbers "
            f"start at row {first['number']}); fix or remove the row.",
            source=f"{source} row {row}",
        )
    if "non-finite" in first:
        row = first["non-finite"]
        raise DataError(
            f"label {values[row - 1]!r} in column '{column}' is a missing value (NaN), not a name; fix or "
            "remove the row.",
            source=f"{source} row {row}",
        )
    if "name" in first and "number" in first:
        number_row = first["number"]
        raise DataError(
            f"column '{column}' mixes numbers (first at row {number_row}: {values[number_row - 1]!r}) "
            f"and names (first at row {first['name']}: {values[first['name'] - 1]!r}); use one kind: all "
            "names, or all integer ids (with --label_list for their names).",
            source=source,
        )


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
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def normalise_label(value: Any, problem: str, names: list[str] | None, delimiter: str, location: str) -> Any:
    """One label cell as the canonical type: a name (single), a list of names (multi) or a float (regression)."""
    if is_missing(value):
        raise DataError(
            "empty or missing label (NaN/None/''); every row needs one. Fix or remove the row.", source=location
        )
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
        raise DataError(
            f"a list label {value!r} in single-label data; pass --problem_type multi_label.", source=location
        )
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if names and isinstance(value, int):
        if not 0 <= value < len(names):
            raise DataError(f"label id {value} is out of range for the label names {names}.", source=location)
        return names[value]
    return str(value).strip()


def canonical_split(
    dataset: Dataset,
    data_args: ClassificationDataArguments,
    source: str,
    problem: str | None,
    text_cells: bool = False,
) -> tuple[Dataset, str | None]:
    """text / text_pair / label / location columns, checked row by row. Returns the dataset and the problem type.
    `text_cells`: every cell was read as text (CSV/TSV), so a label column of numbers is parsed as numbers.
    Several text columns are joined into one text when `data_args.joined_text` says so."""
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
    names = list(feature.names) if isinstance(feature, ClassLabel) else glue_label_names(data_args)
    raw_labels = dataset[label_column] if label_column else None
    if isinstance(feature, ClassLabel) and raw_labels and all(value == -1 for value in raw_labels):
        logger.info("%s: every label is -1 (no label, as in GLUE's test splits); the split is unlabelled.", source)
        raw_labels = None
    if raw_labels is not None and text_cells:
        raw_labels = label_texts_as_numbers(raw_labels, problem, source, label_column)
    if raw_labels is not None and problem != MULTI:
        check_label_kinds(raw_labels, source, label_column, data_args.label_delimiter)
    if raw_labels is not None and problem is None:
        problem = detect_problem_type([v for v in raw_labels if not is_missing(v)], data_args.label_delimiter)
    if raw_labels is not None and problem == SINGLE:
        kinds = {label_kind(v) for v in raw_labels if not is_missing(v)} - {"float"} | (
            {"int"} if any(label_kind(v) == "float" for v in raw_labels if not is_missing(v)) else set()
        )
        if len(kinds) > 1:
            raise DataError(
                f"mixed label types {sorted(kinds)} in column '{label_column}'; use one type "
                "(all names or all integer ids).",
                source=source,
            )
    pair = len(text_columns) == 2 and not data_args.joined_text
    columns: dict[str, list] = {"text": [], "location": []}
    if pair:
        columns["text_pair"] = []
    if raw_labels is not None:
        columns["label"] = []
    texts = [dataset[c] for c in text_columns]
    for row, source_row in enumerate(source_rows(dataset)):
        location = f"{source} row {source_row}"
        for column, values in zip(text_columns, texts):
            value = values[row]
            if is_missing(value):
                raise DataError(f"empty or missing text in column '{column}'; fix or remove the row.", source=location)
            if not isinstance(value, str):
                raise DataError(
                    f"the text in column '{column}' must be a string, got {value!r}; fix the row, or "
                    "name the text column with --text_column_names.",
                    source=location,
                )
        if pair:
            columns["text"].append(texts[0][row])
            columns["text_pair"].append(texts[1][row])
        else:
            columns["text"].append(data_args.text_delimiter.join(values[row] for values in texts))
        columns["location"].append(location)
        if raw_labels is not None:
            columns["label"].append(
                normalise_label(raw_labels[row], problem, names, data_args.label_delimiter, location)
            )
    return Dataset.from_dict(columns), problem


def glue_label_names(data_args: ClassificationDataArguments) -> list[str] | None:
    """The GLUE task's label names in GLUE's id order (--task_name; integer labels in files are these ids)."""
    names = GLUE_TASKS[data_args.task_name][1] if data_args.task_name else None
    return list(names) if names else None


def load_glue_or_hub(data_args: ClassificationDataArguments, model_args) -> DatasetDict:
    """`load_raw_datasets`, with what to do instead when --task_name's GLUE dataset cannot be loaded."""
    try:
        return load_raw_datasets(data_args, cache_dir=model_args.cache_dir, token=model_args.token)
    except DataError as err:
        if data_args.task_name and data_args.dataset_name == GLUE_DATASET:
            raise DataError(
                f"--task_name {data_args.task_name} loads the GLUE dataset {GLUE_DATASET} from the Hub "
                f"(or the datasets cache), which failed: {err} With the task's files at hand, give them "
                f"with --train_file/--validation_file and keep --task_name {data_args.task_name} for its "
                "columns and metrics."
            ) from None
        raise


def load_classification_data(data_args: ClassificationDataArguments, model_args) -> LoadedData:
    """All splits in the canonical shape, and what loading settled (`ClassificationSettled`); `data_args` is not
    changed."""
    raw = load_glue_or_hub(data_args, model_args)
    problem = PROBLEM_ALIASES[data_args.problem_type] if data_args.problem_type else None
    result = DatasetDict()
    for split in sorted(raw, key=["train", "validation", "test"].index):
        source = split_source(data_args, split)
        fmt = None if data_args.dataset_name else file_format(source, data_args.data_format)
        if fmt in ANNOTATION_FORMATS:  # Label Studio choices, doccano label lists
            raw[split] = choices_table(raw[split], source, problem)
        text_cells = fmt in {"csv", "tsv"}
        result[split], problem = canonical_split(raw[split], data_args, source, problem, text_cells)
        if problem == REGRESSION and data_args.do_regression is False:  # numbers as class names
            result[split], problem = canonical_split(raw[split], data_args, source, SINGLE, text_cells)
        if split != "test" and "label" not in result[split].column_names:
            raise DataError(missing_label_column(raw[split].column_names, split, LABEL_COLUMNS), source=source)
    if problem is None:
        problem = SINGLE
    wrong = [name for name in data_args.metric_names if name not in METRIC_NAMES[problem]]
    if wrong:
        raise ConfigError(
            f"--metric_name {','.join(wrong)} does not apply to {problem} data; choose from "
            f"{list(METRIC_NAMES[problem])}."
        )
    names = glue_label_names(data_args)
    settled = ClassificationSettled(problem)
    if (
        names
        and not data_args.label_list
        and problem != REGRESSION
        and all(set(dataset["label"]) <= set(names) for dataset in result.values() if "label" in dataset.column_names)
    ):
        settled = ClassificationSettled(problem, tuple(names))  # GLUE's order: its F1 is of id 1
    pairs = {split: "text_pair" in d.column_names for split, d in result.items()}
    if len(set(pairs.values())) > 1:
        raise DataError(f"some splits are sentence pairs and some are not: {pairs}. Use the same text columns.")
    logger.info("Problem type: %s", problem)
    return select_training_data(LoadedData(result, data_args, settled))


def select_training_data(data: LoadedData) -> LoadedData:
    """Zero-shot: the label names are settled (descriptions, --label_list, else the data's labels) and the train
    split is dropped, so no train stage runs. Few-shot: the train split becomes its K-per-label sample."""
    raw, data_args, settled = data.raw, data.args, data.settled
    if not (data_args.zero_shot or data_args.few_shot_k):
        return data
    mode = "--zero_shot" if data_args.zero_shot else "--few_shot_k"
    if settled.problem_type != SINGLE:
        raise ConfigError(f"{mode} is for single-label classification; these labels are {settled.problem_type}.")
    if "text_pair" in raw[next(iter(raw))].column_names:
        raise ConfigError(f"{mode} compares single texts; sentence pairs are not supported.")
    if data_args.few_shot_k:
        if "train" not in raw:
            raise ConfigError("--few_shot_k samples from the training data: pass --train_file.")
        raw["train"] = take_few_shot_sample(raw["train"], data_args.few_shot_k, data_args.few_shot_seed)
        return data
    if not data_args.label_names:
        described = (
            list(read_label_descriptions(data_args.label_descriptions)) if data_args.label_descriptions else None
        )
        seen = (
            raw["train"]["label"]
            if "train" in raw
            else [v for split in raw.values() for v in split["label"] if "label" in split.column_names]
        )
        names = described or sorted(set(seen), key=label_sort_key)
        if any("," in name for name in names):
            raise ConfigError(f"zero-shot label names cannot contain commas: {names}.")
        settled = ClassificationSettled(settled.problem_type, tuple(names))
    if "train" in raw:
        logger.info(
            "Zero-shot: the train split is not used (labels: %s).",
            ",".join(settled_label_names(LoadedData(raw, data_args, settled))),
        )
        del raw["train"]
    if not raw:
        raise ConfigError("--zero_shot needs data to label: pass --validation_file and/or --test_file.")
    return LoadedData(raw, data_args, settled)
