"""Length order for batching: evaluation features, prediction inputs and embeddings are batched longest first, so
each batch pads little and running out of memory shows at once; results are mapped back to input order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def longest_first(lengths: Sequence[int]) -> list[int]:
    """Indices from the longest item to the shortest (ties keep input order)."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of `batch_size` items of similar length, longest first."""
    order = longest_first(lengths)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def token_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped longest first into batches of at most `max_tokens` tokens in all (an item longer than that
    alone): for inputs that are packed end to end, where what a batch costs is its tokens, not its rows."""
    batches: list[list[int]] = []
    total = 0
    for index in longest_first(lengths):
        if batches and total + lengths[index] <= max_tokens:
            batches[-1].append(index)
            total += lengths[index]
        else:
            batches.append([index])
            total = lengths[index]
    return batches


def pad_rows(rows: Sequence[Sequence[int]], value: int) -> np.ndarray:
    """Rows as one int64 array, padded on the right to the longest: the batch both backends feed a model."""
    width = max(len(row) for row in rows)
    padded = np.full((len(rows), width), value, dtype=np.int64)
    for index, row in enumerate(rows):
        padded[index, : len(row)] = row
    return padded
