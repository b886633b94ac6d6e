"""Sentences with entity spans -> the span head's inputs: the token head's windows (`NerWindows`, `plan_windows`),
and per token a label for each offset j < max_span_tokens: the type of the word span that starts at this token
(a word's first subword, in the window owning it) and ends j tokens later (a word's last subword), `O` for a
candidate that is no entity, IGNORE_INDEX for everything else (not a candidate, or past the window)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial

import torch
from datasets import Dataset

from utils.core.labels import LabelSpace
from utils.core.losses import IGNORE_INDEX
from utils.core.task import LoadedData
from utils.tasks.ner.alignment import NO_WORD, plan_windows
from utils.tasks.ner.encoding import NerWindows, word_ids_without_gaps

logger = logging.getLogger(__name__)


def encode_span_batch(
    batch: dict[str, list],
    indices: list[int],
    *,
    tokenizer,
    windows: NerWindows,
    max_span_length: int,
    max_span_tokens: int,
    label2id: Mapping[str, int] | None = None,
) -> dict[str, list]:
    """Windows with `word_index` (the word starting at each scored token), `word_end` (the word ending at each
    token) and, for labelled rows, `labels` [tokens][max_span_tokens]."""
    ids, word_ids = word_ids_without_gaps(tokenizer, batch["tokens"])
    labelled = label2id is not None and "span_labels" in batch
    out: dict[str, list] = {
        "input_ids": [],
        "attention_mask": [],
        "word_index": [],
        "word_end": [],
        "example_index": [],
    }
    if windows.token_types:
        out["token_type_ids"] = []
    if labelled:
        out["labels"] = []
    prefix, suffix = list(windows.prefix), list(windows.suffix)
    for i, example in enumerate(indices):
        words = word_ids[i]
        gold = {}
        if labelled:
            gold = {
                (s, e): label2id[label]
                for s, e, label in zip(batch["span_starts"][i], batch["span_ends"][i], batch["span_labels"][i])
            }
        first = [t == 0 or words[t] != words[t - 1] for t in range(len(words))]
        last = [t == len(words) - 1 or words[t] != words[t + 1] for t in range(len(words))]
        for window in plan_windows(len(words), windows.max_tokens, windows.stride):
            content = range(window.start, window.end)
            starts = [
                words[t]
                if window.owned_start <= t < window.owned_end and words[t] is not None and first[t]
                else NO_WORD
                for t in content
            ]
            ends = [words[t] if words[t] is not None and last[t] else NO_WORD for t in content]
            pad = [NO_WORD] * len(prefix), [NO_WORD] * len(suffix)
            input_ids = prefix + ids[i][window.start : window.end] + suffix
            out["input_ids"].append(input_ids)
            out["attention_mask"].append([1] * len(input_ids))
            out["word_index"].append(pad[0] + starts + pad[1])
            out["word_end"].append(pad[0] + ends + pad[1])
            out["example_index"].append(example)
            if windows.token_types:
                out["token_type_ids"].append([0] * len(input_ids))
            if labelled:
                out["labels"].append(
                    span_labels(out["word_index"][-1], out["word_end"][-1], gold, max_span_length, max_span_tokens)
                )
    return out


def span_labels(
    word_index: Sequence[int],
    word_end: Sequence[int],
    gold: Mapping[tuple[int, int], int],
    max_span_length: int,
    max_span_tokens: int,
) -> list[list[int]]:
    """Each token's label per offset: the gold type id of word span (start word, end word + 1), 0 (`O`) for any
    other candidate, IGNORE_INDEX where there is no candidate."""
    rows = []
    for t, start in enumerate(word_index):
        row = [IGNORE_INDEX] * max_span_tokens
        if start != NO_WORD:
            for j in range(min(max_span_tokens, len(word_end) - t)):
                end = word_end[t + j]
                if end != NO_WORD and 0 <= end - start < max_span_length:
                    row[j] = gold.get((start, end + 1), 0)
        rows.append(row)
    return rows


def candidate_spans(word_index: Sequence[int], word_end: Sequence[int], max_span_length: int, max_span_tokens: int):
    """(token, offset, start word, end word exclusive) of every candidate of a window (as `span_labels`)."""
    for t, start in enumerate(word_index):
        if start == NO_WORD:
            continue
        for j in range(min(max_span_tokens, len(word_end) - t)):
            end = word_end[t + j]
            if end != NO_WORD and 0 <= end - start < max_span_length:
                yield t, j, start, end + 1


def encode_spans(split: Dataset, tokenizer, labels: LabelSpace, data: LoadedData) -> Dataset:
    """A split in the span head's windows; gold entities no candidate covers are counted in the log (they stay in
    the gold entities the scores count)."""
    data_args = data.args
    windows = NerWindows.build(tokenizer, data_args.max_seq_length, data_args.stride)
    encode = partial(
        encode_span_batch,
        tokenizer=tokenizer,
        windows=windows,
        max_span_length=data_args.max_span_length,
        max_span_tokens=data_args.max_span_tokens,
        label2id=labels.label2id,
    )
    features = split.map(
        encode, batched=True, with_indices=True, remove_columns=split.column_names, desc="Span windows"
    )
    if "span_starts" in split.column_names:
        covered = set()
        for index, starts, ends in zip(features["example_index"], features["word_index"], features["word_end"]):
            covered.update(
                (index, s, e)
                for _, _, s, e in candidate_spans(starts, ends, data_args.max_span_length, data_args.max_span_tokens)
            )
        gold = [
            (i, s, e)
            for i, (ss, es) in enumerate(zip(split["span_starts"], split["span_ends"]))
            for s, e in zip(ss, es)
        ]
        missed = sum(g not in covered for g in gold)
        if missed:
            logger.warning(
                "%d of %d gold entities are longer than --max_span_length %d words or --max_span_tokens %d "
                "tokens: the span head cannot predict them (they count as misses).",
                missed,
                len(gold),
                data_args.max_span_length,
                data_args.max_span_tokens,
            )
    return features


class SpanCollator:
    """Pads inputs as the tokenizer does and `labels` [tokens][offsets] with IGNORE_INDEX (to `pad_to` tokens when
    given); drops the bookkeeping columns."""

    def __init__(self, tokenizer, pad_to: int | None = None):
        self.tokenizer, self.pad_to = tokenizer, pad_to

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        labels = [f["labels"] for f in features] if "labels" in features[0] else None
        inputs = [{k: f[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in f} for f in features]
        padding = {"padding": "max_length", "max_length": self.pad_to} if self.pad_to else {"padding": True}
        batch = self.tokenizer.pad(inputs, return_tensors="pt", **padding)
        if labels is not None:
            width, k = batch["input_ids"].shape[1], len(labels[0][0])
            padded = torch.full((len(labels), width, k), IGNORE_INDEX, dtype=torch.long)
            for row, rows in enumerate(labels):
                padded[row, : len(rows)] = torch.tensor(rows, dtype=torch.long)
            batch["labels"] = padded
        return dict(batch)


def span_collator(tokenizer, data: LoadedData, pad_to: int | None = None) -> SpanCollator:
    return SpanCollator(tokenizer, pad_to)
