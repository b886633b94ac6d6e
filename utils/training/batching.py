"""Length-bucketed training batches that stay shuffled, and the loss weighting that keeps them unbiased.

Padding every random batch to its longest member wastes most of the compute on CoNLL-2003 (62% of the tokens are
padding at batch 32). Upstream's `group_by_length` removes it, but it also orders each pool of 50 batches from the
longest to the shortest, so the epoch becomes a saw-tooth curriculum that ends on a run of one-word sentences at the
smallest learning rate, and a per-batch mean loss gives each token of a short-sentence batch many times the weight
of a token in a long one. Both cost accuracy (1.5 test F1 points on CoNLL-2003 after one epoch, docs/benchmarks.md).

Here, batches are cut from length-sorted pools as upstream does, then shuffled across the whole epoch, and the loss
of token tasks is divided by the *expected* number of labelled items per step instead of the batch's own count, so
every labelled token weighs the same as it does with random batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from utils.core.losses import IGNORE_INDEX


def bucketed_batches(lengths: Sequence[int], batch_size: int, pool_batches: int,
                     generator: torch.Generator | None = None) -> list[list[int]]:
    """Batches of example indices: a random permutation cut into pools of `pool_batches * batch_size` (smaller where
    that would leave fewer than four pools), each pool sorted by length and cut into batches, every full batch
    shuffled across the epoch; a short last batch (there is at most one) stays last, so the batches a data loader
    cuts from the flattened order are these batches. Every index appears exactly once."""
    if batch_size < 1 or pool_batches < 1:
        raise ValueError(f"batch_size and pool_batches must be positive, got {batch_size} and {pool_batches}.")
    order = torch.randperm(len(lengths), generator=generator).tolist()
    # At least four pools, as upstream: one pool holding the whole dataset would give the same batches every epoch.
    pool_size = batch_size * max(1, min(pool_batches, len(lengths) // (4 * batch_size)))
    batches: list[list[int]] = []
    for start in range(0, len(order), pool_size):
        pool = sorted(order[start:start + pool_size], key=lambda index: lengths[index])
        batches.extend(pool[i:i + batch_size] for i in range(0, len(pool), batch_size))
    full = [batch for batch in batches if len(batch) == batch_size]
    short = [index for batch in batches if len(batch) < batch_size for index in batch]
    shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    tail = [short[i:i + batch_size] for i in range(0, len(short), batch_size)]
    return shuffled + tail


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of the tokens in batches padded to their longest member that are padding."""
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if batch)
    real = sum(lengths[i] for batch in batches for i in batch)
    return 1 - real / padded if padded else 0.0


class BucketedSampler(Sampler[int]):
    """Yields the flattened `bucketed_batches`, arranged anew each epoch from `seed + epoch` (`Trainer` calls
    `set_epoch`): every process of a distributed run draws the same order, and a resumed run replays it."""

    def __init__(self, lengths: Sequence[int], batch_size: int, pool_batches: int, seed: int = 0) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.pool_batches = pool_batches
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        for batch in bucketed_batches(self.lengths, self.batch_size, self.pool_batches, generator):
            yield from batch


def labelled_items(labels: Sequence) -> int:
    """How many items a row's labels contribute to the loss: label positions other than -100 for token tasks (a
    list), one for a sequence label."""
    if isinstance(labels, (list, tuple)):
        return sum(1 for label in labels if label != IGNORE_INDEX)
    return 1
