"""Length order for batching: evaluation features, prediction inputs and embeddings are batched longest first, so
each batch pads little and running out of memory shows at once; results are mapped back to input order."""

from __future__ import annotations

from collections.abc import Sequence


def longest_first(lengths: Sequence[int]) -> list[int]:
    """Indices from the longest item to the shortest (ties keep input order)."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of `batch_size` items of similar length, longest first."""
    order = longest_first(lengths)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
