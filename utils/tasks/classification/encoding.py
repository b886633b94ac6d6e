"""Texts (and pairs, as real pairs) to model inputs, cut at max_seq_length on the chosen side."""

from __future__ import annotations

import logging

from datasets import Dataset
from transformers import DataCollatorWithPadding

from utils.core.labels import LabelSpace
from utils.core.losses import MULTI, REGRESSION
from utils.core.task import LoadedData
from utils.tasks.classification.arguments import ClassificationDataArguments

logger = logging.getLogger(__name__)


def encode_labels(values: list, labels: LabelSpace, problem: str) -> list:
    if problem == REGRESSION:
        return [float(v) for v in values]
    label2id = labels.label2id
    if problem == MULTI:
        return [[1.0 if name in set(value) else 0.0 for name in labels.names] for value in values]
    return [label2id[v] for v in values]


def encode_classification(split: Dataset, tokenizer, labels: LabelSpace, data: LoadedData) -> Dataset:
    """Tokenize texts (pairs as real pairs, with token type ids), cut at max_seq_length from the chosen side; the
    number of cut examples is logged. (Padding is the collator's: --batching.)"""
    data_args: ClassificationDataArguments = data.args
    problem = data.settled.problem_type
    pair = "text_pair" in split.column_names

    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        texts = (batch["text"], batch["text_pair"]) if pair else (batch["text"],)
        full_lengths = [len(ids) for ids in tokenizer(*texts)["input_ids"]]
        encoded = tokenizer(*texts, truncation=True, max_length=data_args.max_seq_length)
        encoded["truncated"] = [n > data_args.max_seq_length for n in full_lengths]
        encoded["example_index"] = indices
        if "label" in batch:
            encoded["labels"] = encode_labels(batch["label"], labels, problem)
        return dict(encoded)

    features = split.map(
        encode,
        batched=True,
        with_indices=True,
        remove_columns=split.column_names,
        num_proc=data_args.preprocessing_num_workers,
        load_from_cache_file=not data_args.overwrite_cache,
        desc="Tokenizing",
    )
    cut = sum(features["truncated"])
    if cut:
        logger.warning(
            "%d of %d examples are longer than --max_seq_length %d and were cut on the %s.",
            cut,
            len(features),
            data_args.max_seq_length,
            data_args.truncation_side,
        )
    return features


def classification_collator(tokenizer, data: LoadedData, pad_to: int | None = None) -> DataCollatorWithPadding:
    """Pad each batch to its longest example, or to `pad_to` tokens (--batching max_length)."""
    return DataCollatorWithPadding(tokenizer, padding="max_length" if pad_to else True, max_length=pad_to)


def truncation_kwargs(config, data_args: ClassificationDataArguments | None = None) -> dict[str, str]:
    """`--truncation_side` is a tokenizer setting, given when the tokenizer is loaded (and saved with it, so
    predict.py cuts long texts on the same side); a saved model's tokenizer keeps its own."""
    return {} if data_args is None else {"truncation_side": data_args.truncation_side}
