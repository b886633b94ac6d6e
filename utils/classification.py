"""The classification task's pieces: single-label, multi-label and regression, single texts or sentence pairs."""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Value
from transformers import DataCollatorWithPadding

from utils.arguments import DataArguments
from utils.data import (
    file_format,
    load_raw_datasets,
    number_type,
    numbers_from_text,
    pick_column,
    require_columns,
    split_source,
)
from utils.errors import ConfigError, DataError
from utils.few_shot import (
    FewShotArguments,
    fit_contrastive_model,
    set_head,
    take_few_shot_sample,
    write_sample_record,
)
from utils.files import atomic_write, write_json, write_jsonl
from utils.labels import LabelSpace, build_label_space, fine_tuned_labels, unseen_labels
from utils.losses import MULTI, REGRESSION, SINGLE, make_loss
from utils.metrics import confusion, multi_label_metrics, regression_metrics, single_label_metrics
from utils.modeling import load_model
from utils.sentence_embedding import MEAN, POOLING_MARKER, MeanPoolingForSequenceClassification, SequenceClassifier
from utils.task import Task
from utils.zero_shot import descriptions_for, read_label_descriptions, zero_shot_head

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ("label", "labels", "score", "target")
#: Column pairs that are sentence pairs whenever both are present (GLUE/SNLI conventions).
KNOWN_PAIRS = (("sentence1", "sentence2"), ("premise", "hypothesis"), ("question", "sentence"),
               ("question1", "question2"))
PROBLEM_ALIASES = {"single_label": SINGLE, "multi_label": MULTI, SINGLE: SINGLE, MULTI: MULTI, REGRESSION: REGRESSION}


@dataclass
class ClassificationDataArguments(DataArguments, FewShotArguments):
    """Classification-specific data options (zero-shot and few-shot ones in `FewShotArguments`)."""

    text_column_names: str | None = field(
        default=None,
        metadata={"help": "Text column, or two comma-separated columns encoded as a sentence pair "
                  "(default: the one text column of each split)."},
    )
    problem_type: str | None = field(
        default=None,
        metadata={"help": "Override the type detected from the labels.",
                  "choices": ["single_label", "multi_label", "regression", SINGLE, MULTI]},
    )
    label_delimiter: str = field(default=",", metadata={"help": "Separator of multi-label names in one string."})
    threshold: float = field(default=0.5, metadata={"help": "Multi-label: probability above which a label is on."})
    class_weights: str = field(
        default="none",
        metadata={"help": "Weighted loss: 'none', 'auto' (inverse class frequency in training), or one weight per "
                  "label in label order, e.g. 1,3.5."},
    )
    truncation_side: str = field(
        default="right", metadata={"help": "Which end of a too-long text to cut.", "choices": ["right", "left"]}
    )
    pad_to_max_length: bool = field(
        default=False, metadata={"help": "Pad every input to max_seq_length (slow; default pads per batch)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_few_shot()

    @property
    def text_columns(self) -> list[str] | None:
        if not self.text_column_names:
            return None
        names = [name.strip() for name in self.text_column_names.split(",") if name.strip()]
        if not 1 <= len(names) <= 2:
            raise ConfigError("--text_column_names takes one column, or two for sentence pairs.")
        return names


# ---------------------------------------------------------------- loading


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


# ---------------------------------------------------------------- labels


def label_sort_key(name: str) -> tuple:
    """Integer-like labels in numeric order, others alphabetically."""
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def build_classification_labels(raw: DatasetDict, data_args: ClassificationDataArguments, config) -> LabelSpace:
    """One output per class (single/multi-label) or one value (regression)."""
    if data_args.problem_type == REGRESSION:
        return LabelSpace((data_args.label_column_name or "score",))
    model_labels = fine_tuned_labels(config)
    if "train" in raw:
        values = raw["train"]["label"]
        seen = {name for value in values for name in value} if data_args.problem_type == MULTI else set(values)
    elif model_labels or data_args.label_names:
        seen = set()
    else:
        raise ConfigError("No training data and the model was never fine-tuned (its config has no label names): "
                          "train first, or point --model_name_or_path at a fine-tuned model.")
    return build_label_space(seen, data_args.label_names, model_labels, sort_key=label_sort_key)


def check_classification_labels(raw: DatasetDict, labels: LabelSpace, data_args: ClassificationDataArguments
                                ) -> DatasetDict:
    """Validation/test labels the model cannot predict are an error naming where they are."""
    if data_args.problem_type == REGRESSION:
        return raw
    for split in [s for s in ("validation", "test") if s in raw and "label" in raw[s].column_names]:
        rows = raw[split]["label"] if data_args.problem_type == MULTI else ([v] for v in raw[split]["label"])
        count, summary = unseen_labels(rows, raw[split]["location"], labels, show=repr)
        if count:
            raise DataError(f"{split} labels never seen in training: {summary}. Known labels: {list(labels.names)}. "
                            "Fix the data or add examples of these labels to the training data.")
    return raw


# ---------------------------------------------------------------- encoding


def encode_labels(values: list, labels: LabelSpace, problem: str) -> list:
    if problem == REGRESSION:
        return [float(v) for v in values]
    label2id = labels.label2id
    if problem == MULTI:
        return [[1.0 if name in set(value) else 0.0 for name in labels.names] for value in values]
    return [label2id[v] for v in values]


def encode_classification(split: Dataset, tokenizer, labels: LabelSpace, data_args: ClassificationDataArguments
                          ) -> Dataset:
    """Tokenize texts (pairs as real pairs, with token type ids), cut at max_seq_length from the chosen side; the
    number of cut examples is logged."""
    tokenizer.truncation_side = data_args.truncation_side
    padding = "max_length" if data_args.pad_to_max_length else False
    pair = "text_pair" in split.column_names

    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        texts = (batch["text"], batch["text_pair"]) if pair else (batch["text"],)
        full_lengths = [len(ids) for ids in tokenizer(*texts)["input_ids"]]
        encoded = tokenizer(*texts, truncation=True, max_length=data_args.max_seq_length, padding=padding)
        encoded["truncated"] = [n > data_args.max_seq_length for n in full_lengths]
        encoded["example_index"] = indices
        if "label" in batch:
            encoded["labels"] = encode_labels(batch["label"], labels, data_args.problem_type)
        return dict(encoded)

    features = split.map(encode, batched=True, with_indices=True, remove_columns=split.column_names,
                         num_proc=data_args.preprocessing_num_workers,
                         load_from_cache_file=not data_args.overwrite_cache, desc="Tokenizing")
    cut = sum(features["truncated"])
    if cut:
        logger.warning("%d of %d examples are longer than --max_seq_length %d and were cut on the %s.", cut,
                       len(features), data_args.max_seq_length, data_args.truncation_side)
    return features


def classification_collator(tokenizer, data_args) -> DataCollatorWithPadding:
    """Pad each batch to its longest example (or to max_seq_length with --pad_to_max_length)."""
    return DataCollatorWithPadding(tokenizer, padding="max_length" if data_args.pad_to_max_length else True,
                                   max_length=data_args.max_seq_length if data_args.pad_to_max_length else None)


def problem_type_override(raw, labels: LabelSpace, data_args: ClassificationDataArguments) -> dict[str, Any]:
    return {"problem_type": data_args.problem_type}


def build_classification_model(model_args, labels: LabelSpace, config, raw: DatasetDict,
                               data_args: ClassificationDataArguments, training_args, tokenizer,
                               overrides: dict[str, Any]):
    """The usual model; or, for zero-shot and contrastive few-shot, a mean-pooling classifier whose head is set
    (label-description embeddings) or fitted (after contrastive training of the encoder) here, before `Trainer`."""
    if not (data_args.zero_shot or data_args.contrastive):
        model = load_model(model_args, SequenceClassifier, labels, config, **overrides)
        if data_args.few_shot_k and training_args.should_save:
            write_sample_record(training_args.output_dir, raw["train"], data_args)
        return model
    model = load_model(model_args, MeanPoolingForSequenceClassification, labels, config, **overrides,
                       **{POOLING_MARKER: MEAN, "normalize_embeddings": True})
    model.to(training_args.device)
    if data_args.contrastive:
        stats = fit_contrastive_model(model, tokenizer, raw["train"], labels, data_args, data_args.few_shot_seed)
        if training_args.should_save:
            write_sample_record(training_args.output_dir, raw["train"], data_args, stats)
        return model
    given = read_label_descriptions(data_args.label_descriptions) if data_args.label_descriptions else {}
    descriptions = descriptions_for(labels, given)
    set_head(model, *zero_shot_head(model, tokenizer, descriptions, data_args.max_seq_length))
    model.config.label_descriptions = descriptions  # saved with the model: what its head was made from
    if training_args.should_save:  # no train stage saves it
        model.save_pretrained(training_args.output_dir)
        tokenizer.save_pretrained(training_args.output_dir)
    return model


# ---------------------------------------------------------------- loss


def resolve_class_weights(raw: DatasetDict, labels: LabelSpace, data_args: ClassificationDataArguments
                          ) -> list[float] | None:
    """`--class_weights`: none, auto (balanced: n / (k * count); multi-label: negatives / positives), or a list."""
    spec = data_args.class_weights.strip().lower()
    if spec == "none":
        return None
    if data_args.problem_type == REGRESSION:
        raise ConfigError("--class_weights does not apply to regression.")
    if spec == "auto":
        if "train" not in raw:
            raise ConfigError("--class_weights auto needs training data.")
        values = raw["train"]["label"]
        n = len(values)
        if data_args.problem_type == MULTI:
            positives = Counter(name for value in values for name in value)
            return [(n - positives[name]) / max(positives[name], 1) for name in labels.names]
        counts = Counter(values)
        return [n / (len(labels) * max(counts[name], 1)) for name in labels.names]
    try:
        weights = [float(w) for w in spec.split(",")]
    except ValueError:
        raise ConfigError(f"--class_weights {data_args.class_weights!r}: give none, auto, or numbers.") from None
    if len(weights) != len(labels) or any(w <= 0 for w in weights):
        raise ConfigError(f"--class_weights needs {len(labels)} positive weights, one per label in order "
                          f"{list(labels.names)}; got {weights}.")
    return weights


def classification_loss(raw: DatasetDict, labels: LabelSpace, data_args: ClassificationDataArguments,
                        training_args) -> Callable:
    """The problem type's loss with the class weights and label smoothing (see utils/losses.py for why ours)."""
    smoothing = training_args.label_smoothing_factor if data_args.problem_type == SINGLE else 0.0
    return make_loss(data_args.problem_type, resolve_class_weights(raw, labels, data_args), smoothing)


# ---------------------------------------------------------------- decoding, scoring, writing


def keep_logits(logits, labels=None):
    """Classification logits are small (examples x labels): keep them for probabilities."""
    return logits[0] if isinstance(logits, tuple) else logits


def decode_classification(predictions, features: Dataset, raw: Dataset, labels: LabelSpace,
                          data_args: ClassificationDataArguments) -> list[dict]:
    """Per-example predictions in input order: the label and every label's probability (single-label), the labels
    over --threshold (multi-label), or the value (regression)."""
    logits = np.asarray(predictions, dtype=np.float64)
    result: list[dict] = [{}] * len(raw)
    for row, example in zip(logits, features["example_index"], strict=True):
        if data_args.problem_type == REGRESSION:
            result[example] = {"value": float(row[0])}
        elif data_args.problem_type == MULTI:
            probabilities = 1 / (1 + np.exp(-row))
            result[example] = {"labels": [n for n, p in zip(labels.names, probabilities) if p > data_args.threshold],
                               "probabilities": rounded(labels.names, probabilities)}
        else:
            probabilities = np.exp(row - row.max())
            probabilities /= probabilities.sum()
            result[example] = {"label": labels.names[int(row.argmax())],
                               "probabilities": rounded(labels.names, probabilities)}
    return result


def rounded(names: Sequence[str], probabilities: np.ndarray) -> dict[str, float]:
    """Probabilities by label name, to 6 decimals (more is noise in a predictions file)."""
    return {name: round(float(p), 6) for name, p in zip(names, probabilities)}


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


def write_confusion_matrix(output_dir: str, matrix: list[list[int]], names: Sequence[str]) -> list[str]:
    """confusion_matrix.json (rows: gold, columns: predicted) and a readable confusion_matrix.png."""
    write_json(os.path.join(output_dir, "confusion_matrix.json"), {"labels": list(names), "matrix": matrix,
                                                                    "rows": "gold", "columns": "predicted"})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.6 * len(names) + 2.5)
    figure, axes = plt.subplots(figsize=(size, size))
    counts = np.asarray(matrix)
    axes.imshow(counts, cmap="Blues")
    axes.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), labels=names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    for (i, j), value in np.ndenumerate(counts):
        axes.text(j, i, str(value), ha="center", va="center",
                  color="white" if value > counts.max() / 2 else "black")
    axes.set_title("Confusion matrix (test)")
    figure.tight_layout()
    with atomic_write(os.path.join(output_dir, "confusion_matrix.png"), "wb") as stream:
        figure.savefig(stream, format="png", dpi=120)
    plt.close(figure)
    return ["confusion_matrix.json", "confusion_matrix.png"]


def write_classification_predictions(output_dir: str, raw: Dataset, decoded: list[dict], labels: LabelSpace,
                                     data_args: ClassificationDataArguments) -> list[str]:
    """predictions.jsonl and predictions.tsv in input order (with gold when known), plus the confusion matrix."""
    gold = raw["label"] if "label" in raw.column_names else None
    pairs = raw["text_pair"] if "text_pair" in raw.column_names else None
    records = []
    for index, (text, prediction) in enumerate(zip(raw["text"], decoded, strict=True)):
        record: dict[str, Any] = {"index": index, "text": text}
        if pairs is not None:
            record["text_pair"] = pairs[index]
        record.update(prediction)
        if gold is not None:
            record["gold"] = gold[index]
        records.append(record)
    write_jsonl(os.path.join(output_dir, "predictions.jsonl"), records)
    prediction_key = {REGRESSION: "value", MULTI: "labels"}.get(data_args.problem_type, "label")
    header = ["index", "text"] + (["text_pair"] if pairs is not None else []) + ["prediction", "probabilities"]
    header += ["gold"] if gold is not None else []
    with atomic_write(os.path.join(output_dir, "predictions.tsv")) as stream:
        stream.write("\t".join(header) + "\n")
        for record in records:
            cells = [record["index"], record["text"]] + ([record["text_pair"]] if pairs is not None else [])
            cells += [record[prediction_key], record.get("probabilities", "")]
            cells += [record["gold"]] if gold is not None else []
            stream.write("\t".join(tsv_cell(c) for c in cells) + "\n")
    written = ["predictions.jsonl", "predictions.tsv"]
    if gold is not None and data_args.problem_type == SINGLE:
        label2id = labels.label2id
        matrix = confusion([label2id[g] for g in gold], [label2id[d["label"]] for d in decoded], len(labels))
        written += write_confusion_matrix(output_dir, matrix, labels.names)
    return written


def tsv_cell(value: Any) -> str:
    """Lists and dicts as JSON; tabs and line breaks in text replaced, so one row stays one line."""
    if isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False)
    return str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def classification_card_details(raw: DatasetDict, labels: LabelSpace, data_args: ClassificationDataArguments
                                ) -> list[str]:
    """Model-card lines: problem type, class weights actually used, truncation."""
    weights = resolve_class_weights(raw, labels, data_args)
    lines = ["## Method", "", f"- Problem type: {data_args.problem_type}."]
    if "text_pair" in raw[next(iter(raw))].column_names:
        lines.append("- Inputs are sentence pairs (encoded as pairs, with token type ids).")
    if weights:
        lines.append("- Class weights in the loss: " + ", ".join(f"{n}={w:.4g}" for n, w in zip(labels.names,
                                                                                              weights)) + ".")
    if data_args.problem_type == MULTI:
        lines.append(f"- A label is predicted when its probability exceeds {data_args.threshold}.")
    lines.append(f"- Texts longer than {data_args.max_seq_length} tokens are cut on the {data_args.truncation_side}.")
    return lines + few_shot_card_lines(raw, data_args)


def few_shot_card_lines(raw: DatasetDict, data_args: ClassificationDataArguments) -> list[str]:
    """How a zero-shot or few-shot model was made (the card's hyperparameters describe only the train stage)."""
    if data_args.zero_shot:
        source = data_args.label_descriptions or "the label names"
        return [f"- Zero-shot, no training: each text gets the label whose description ({source}; saved in "
                "config.json as `label_descriptions`) has the most similar mean-pooled embedding (cosine)."]
    if not data_args.few_shot_k:
        return []
    lines = [f"- Few-shot: {data_args.few_shot_k} training examples per label ({len(raw['train'])} in all), sampled "
             f"with seed {data_args.few_shot_seed}; the rows are listed in few_shot_sample.json."]
    if data_args.contrastive:
        lines.append(f"- Contrastive (SetFit-style): the encoder was trained on same/different-label pairs "
                     f"({data_args.few_shot_iterations} rounds, cosine-similarity loss on mean-pooled embeddings, "
                     f"lr {data_args.few_shot_learning_rate}), then a logistic-regression head was fitted; the train "
                     "stage trained only the head.")
    return lines


def best_classification_metric(raw, data_args: ClassificationDataArguments) -> tuple[str, bool]:
    return {REGRESSION: ("mse", False), MULTI: ("f1_micro", True)}.get(data_args.problem_type, ("accuracy", True))


CLASSIFICATION_TASK = Task(
    name="classification",
    pipeline_tag="text-classification",
    auto_model=SequenceClassifier,
    data_arguments=ClassificationDataArguments,
    sample_config=str(Path(__file__).resolve().parent.parent / "configs/classification/sample.yaml"),
    training_defaults={"output_dir": "outputs/classification"},
    load=load_classification_data,
    build_labels=build_classification_labels,
    check_labels=check_classification_labels,
    encode=encode_classification,
    collator=classification_collator,
    reduce_logits=keep_logits,
    decode=decode_classification,
    score=score_classification,
    write_predictions=write_classification_predictions,
    model_overrides=problem_type_override,
    loss=classification_loss,
    card_details=classification_card_details,
    best_metric=best_classification_metric,
    build_model=build_classification_model,
)
