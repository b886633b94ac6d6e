"""Words to model inputs: subword ids in windows (never truncated), labels on first subwords, document context.

Training (`encode_ner`) and prediction (utils/tasks/ner/predict.py) build their windows with the same
`NerWindows` settings and `encode_batch`, so a saved model sees at prediction the inputs it was trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from datasets import Dataset
from transformers import DataCollatorForTokenClassification

from utils.core.errors import ConfigError
from utils.core.labels import LabelSpace
from utils.core.losses import IGNORE_INDEX
from utils.core.task import LoadedData
from utils.core.text_encoding import encode_words
from utils.tasks.ner.alignment import NO_WORD, align_labels, document_context
from utils.tasks.ner.arguments import DEFAULT_STRIDE, NerDataArguments, check_stride
from utils.tasks.ner.iob import inside_tag

logger = logging.getLogger(__name__)

#: Tokenizers that need a space before each word when given pre-split words (BPE with byte-level spaces).
PREFIX_SPACE_MODELS = {"roberta", "gpt2", "bart", "longformer", "deberta", "mvp", "bloom"}

#: Columns of a split with document context: the subword ids each sentence borrows from its neighbours.
LEFT_CONTEXT, RIGHT_CONTEXT = "left_context", "right_context"


def special_token_template(tokenizer) -> tuple[list[int], list[int]]:
    """Token ids the tokenizer puts before and after a single sequence ([CLS] ... [SEP] for BERT)."""
    marker = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(marker) + 1):
        if full[start : start + len(marker)] == marker:
            return full[:start], full[start + len(marker) :]
    raise ConfigError("Cannot locate the text between this tokenizer's special tokens.")


@dataclass(frozen=True)
class NerWindows:
    """How a sentence becomes model inputs: the special tokens around each window, the content tokens a window
    holds, the tokens consecutive windows share, and whether inputs carry token type ids. Build it with `build`,
    which checks the settings against the tokenizer (training and prediction alike)."""

    prefix: tuple[int, ...]  # token ids before a window's content ([CLS] for BERT)
    suffix: tuple[int, ...]  # and after it ([SEP])
    max_seq_length: int  # the most tokens of one model input, special tokens included
    stride: int  # content tokens shared by consecutive windows of a long sentence
    token_types: bool  # the model takes token_type_ids (all 0: one sequence)

    @property
    def max_tokens(self) -> int:
        """Content tokens per window: max_seq_length less the special tokens."""
        return self.max_seq_length - len(self.prefix) - len(self.suffix)

    @classmethod
    def build(cls, tokenizer, max_seq_length: int, stride: int | None = None) -> NerWindows:
        """The settings for `tokenizer`; `stride` None is the training default, at most half a window."""
        prefix, suffix = special_token_template(tokenizer)
        max_tokens = max_seq_length - len(prefix) - len(suffix)
        if stride is None:
            stride = min(DEFAULT_STRIDE, max_tokens // 2)
        check_stride(stride)
        if stride >= max_tokens:
            raise ConfigError(
                f"--stride {stride} must be smaller than max_seq_length minus special tokens ({max_tokens})."
            )
        limit = getattr(tokenizer, "model_max_length", None)
        if limit and limit < 100_000 and max_seq_length > limit:  # tokenizers without a limit say 1e30
            raise ConfigError(f"--max_seq_length {max_seq_length} exceeds the model's limit of {limit}.")
        return cls(
            tuple(prefix), tuple(suffix), max_seq_length, stride, "token_type_ids" in tokenizer.model_input_names
        )


def word_ids_without_gaps(tokenizer, words: list[list[str]]) -> tuple[list[list[int]], list[list[int | None]]]:
    """Subword ids and word ids; a word that yields no subword (e.g. a zero-width space) is encoded as the unknown
    token, so every word still gets a prediction."""
    ids, word_ids = encode_words(tokenizer, words)
    for i, sentence in enumerate(words):
        present = {w for w in word_ids[i] if w is not None}
        if len(present) < len(sentence):
            patched = [w if j in present else tokenizer.unk_token for j, w in enumerate(sentence)]
            (ids[i],), (word_ids[i],) = encode_words(tokenizer, [patched])
    return ids, word_ids


def encode_batch(
    batch: dict[str, list],
    indices: list[int],
    *,
    tokenizer,
    windows: NerWindows,
    label2id: Mapping[str, int] | None = None,
    continuation: Mapping[int, int] | None = None,
    label_all_tokens: bool = False,
) -> dict[str, list]:
    """Sentences -> windows of model inputs with labels and the word each scored token stands for.

    Labels only for labelled data (a `ner_tags` column): `label2id` maps its tags to ids and `continuation` a B- id
    to its I- id (for `label_all_tokens`); unlabelled sentences (prediction) need neither. With document context
    (`left_context`/`right_context` columns, see `context_columns`) a sentence's input is its left context, its
    tokens and its right context, the context tokens labelled IGNORE_INDEX and scored nowhere."""
    ids, word_ids = word_ids_without_gaps(tokenizer, batch["tokens"])
    gold = batch.get("ner_tags")
    no_context = [[]] * len(indices)
    left, right = batch.get(LEFT_CONTEXT, no_context), batch.get(RIGHT_CONTEXT, no_context)
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "word_index": [], "example_index": []}
    if windows.token_types:
        out["token_type_ids"] = []
    if gold is not None:
        out["labels"] = []
    for i, example in enumerate(indices):
        word_labels = [label2id[tag] for tag in gold[i]] if gold is not None else None
        # context only ever goes with a sentence that fits one window (`context_budget` leaves long ones alone)
        before, after = list(windows.prefix) + list(left[i]), list(right[i]) + list(windows.suffix)
        for window in align_labels(
            word_ids[i], word_labels, windows.max_tokens, windows.stride, label_all_tokens, continuation
        ):
            input_ids = before + ids[i][window.start : window.end] + after
            out["input_ids"].append(input_ids)
            out["attention_mask"].append([1] * len(input_ids))
            out["word_index"].append([NO_WORD] * len(before) + window.word_index + [NO_WORD] * len(after))
            out["example_index"].append(example)
            if windows.token_types:
                out["token_type_ids"].append([0] * len(input_ids))
            if gold is not None:
                out["labels"].append([IGNORE_INDEX] * len(before) + window.labels + [IGNORE_INDEX] * len(after))
    return out


def context_columns(
    tokenizer, sentences: Sequence[Sequence[str]], documents: Sequence[Hashable | None], size: int, max_tokens: int
) -> dict[str, list[list[int]]]:
    """The left and right context (subword ids) of every sentence, from the other sentences of its document.

    Documents are the sentences sharing a document id, in input order (a None id: a document of its own). All
    sentences are tokenized here at once, so context crosses the batch boundaries of a later batched `map`."""
    ids, _ = word_ids_without_gaps(tokenizer, [list(words) for words in sentences])
    rows_of: dict[Hashable, list[int]] = {}
    for row, document in enumerate(documents):
        rows_of.setdefault((row,) if document is None else document, []).append(row)
    if len(rows_of) == len(sentences) and sentences:
        logger.info(
            "Document context has no effect: every sentence is a document of its own (no -DOCSTART- lines "
            "or document ids)."
        )
    columns: dict[str, list[list[int]]] = {LEFT_CONTEXT: [[]] * len(sentences), RIGHT_CONTEXT: [[]] * len(sentences)}
    for rows in rows_of.values():
        for row, (left, right) in zip(rows, document_context([ids[row] for row in rows], size, max_tokens)):
            columns[LEFT_CONTEXT][row], columns[RIGHT_CONTEXT][row] = left, right
    return columns


def encode_ner(split: Dataset, tokenizer, labels: LabelSpace, data: LoadedData) -> Dataset:
    """Tokenize a split into windows no longer than max_seq_length (no word is ever truncated away)."""
    data_args: NerDataArguments = data.args
    windows = NerWindows.build(tokenizer, data_args.max_seq_length, data_args.stride)
    if data_args.context_size:
        documents = split["document_id"] if "document_id" in split.column_names else [None] * len(split)
        for name, values in context_columns(
            tokenizer, split["tokens"], documents, data_args.context_size, windows.max_tokens
        ).items():
            split = split.add_column(name, values)
    label2id = labels.label2id
    continuation = {label2id[tag]: label2id[inside_tag(tag, label2id)] for tag in labels.names}
    encode = partial(
        encode_batch,
        tokenizer=tokenizer,
        windows=windows,
        label2id=label2id,
        continuation=continuation,
        label_all_tokens=data_args.label_all_tokens,
    )
    return split.map(
        encode,
        batched=True,
        with_indices=True,
        remove_columns=split.column_names,
        num_proc=data_args.preprocessing_num_workers,
        load_from_cache_file=not data_args.overwrite_cache,
        desc="Tokenizing into windows",
    )


def prefix_space_kwargs(config, data_args: NerDataArguments | None = None) -> dict[str, Any]:
    """NER feeds pre-split words (checked against running text when loaded: `load_tokenizer`); byte-level BPE
    tokenizers need `add_prefix_space` for them."""
    prefix = {"add_prefix_space": True} if getattr(config, "model_type", None) in PREFIX_SPACE_MODELS else {}
    return {"word_split": True, **prefix}


def ner_collator(tokenizer, data: LoadedData, pad_to: int | None = None) -> DataCollatorForTokenClassification:
    """Pad each batch to its own longest window (labels with -100), or to `pad_to` tokens (--batching max_length)."""
    if pad_to is None:
        return DataCollatorForTokenClassification(tokenizer)
    return DataCollatorForTokenClassification(tokenizer, padding="max_length", max_length=pad_to)
