"""NER's part of distillation (`TaskDistillation`): per word. The teacher's logits of a word are those at the first
subword of the word in the teacher's own windows; the student gets them at the first subword of the same word in
its windows. Words are the unit both sides share, so teacher and student may use different tokenizers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import Dataset

from utils.core.conll import split_words
from utils.core.errors import DataError
from utils.core.losses import IGNORE_INDEX
from utils.core.unlabelled import text_field, unlabelled_dataset
from utils.tasks.ner.alignment import NO_WORD


def ner_word_logits(features: Dataset, row_logits: Sequence[Any], examples: int) -> list[np.ndarray]:
    """Per example, the teacher's logits of each of its words ([words, labels]), read at the tokens that stand for
    a word (`word_index`) in the window that owns it. A word no window scored is an error (it cannot happen with
    `encode_batch`'s windows; the check keeps a silent zero target from ever standing in for one)."""
    found: list[dict[int, np.ndarray]] = [{} for _ in range(examples)]
    for row, (words, example) in enumerate(zip(features["word_index"], features["example_index"], strict=True)):
        logits = np.asarray(row_logits[row], dtype=np.float32)
        for position, word in enumerate(words):
            if word != NO_WORD:
                found[example][word] = logits[position]
    result = []
    for example, by_word in enumerate(found):
        if sorted(by_word) != list(range(len(by_word))):
            raise ValueError(f"example {example}: the teacher scored words {sorted(by_word)}, not every word once")
        labels = len(next(iter(by_word.values()))) if by_word else 0
        result.append(np.stack([by_word[w] for w in range(len(by_word))]) if by_word else np.zeros((0, labels)))
    return result


def ner_soft_labels(features: Dataset, word_logits: Sequence[np.ndarray], num_labels: int) -> list[np.ndarray]:
    """Per student feature row, one soft-label item per token: [1, gold id or -100, the word's teacher logits] at
    a word's scored first subword, [0, -100, zeros] elsewhere (special tokens, later subwords, context)."""
    gold_rows = features["labels"] if "labels" in features.column_names else None
    rows = []
    for row, (words, example) in enumerate(zip(features["word_index"], features["example_index"], strict=True)):
        items = np.zeros((len(words), 2 + num_labels), dtype=np.float32)
        items[:, 1] = IGNORE_INDEX
        for position, word in enumerate(words):
            if word == NO_WORD:
                continue
            items[position, 0] = 1
            if gold_rows is not None:
                items[position, 1] = gold_rows[row][position]
            items[position, 2:] = word_logits[example][word]
        rows.append(items)
    return rows


def _sentence(location: str, record: Any) -> dict[str, Any]:
    """A line as a sentence: a .txt line's words split on ASCII spaces; a JSON object's `tokens` list (or `text`)."""
    if isinstance(record, dict) and "tokens" in record:
        words = record["tokens"]
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
            raise DataError("`tokens` must be a non-empty list of non-empty strings", source=location)
    else:
        words = split_words(text_field(record, location))
    if not words:
        raise DataError("holds no word", source=location)
    return {"tokens": words, "location": location}


def read_ner_unlabelled(path: str, data_args) -> Dataset:
    """A --distill_file as NER rows (tokens, location), without tags."""
    return unlabelled_dataset(path, _sentence, getattr(data_args, "cache_dir", None))
