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

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Sampler

from utils.core.errors import ConfigError
from utils.core.losses import IGNORE_INDEX
from utils.core.packing import SequencePacker, make_packer, packing_refusal

logger = logging.getLogger(__name__)


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, pool_batches: int, generator: torch.Generator | None = None
) -> list[list[int]]:
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
        pool = sorted(order[start : start + pool_size], key=lambda index: lengths[index])
        batches.extend(pool[i : i + batch_size] for i in range(0, len(pool), batch_size))
    full = [batch for batch in batches if len(batch) == batch_size]
    short = [index for batch in batches if len(batch) < batch_size for index in batch]
    shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    tail = [short[i : i + batch_size] for i in range(0, len(short), batch_size)]
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


# ---------------------------------------------------------------- the one batching decision

#: `--batching`: how training batches are made. `auto` packs token tasks on models that can take packed rows, else
#: uses length buckets (plain random batches when --train_sampling_strategy is given).
BATCHINGS = ("auto", "packed", "buckets", "random", "max_length")


@dataclass(frozen=True)
class BatchingPlan:
    """How training batches are made, decided once before the `Trainer` exists (`decide_batching`):

    - `packed`: random batches, their sequences laid end to end in rows (`packer`; utils/core/packing.py);
    - `buckets`: batches of similar lengths, shuffled across the epoch (`BucketedSampler`);
    - `random`: the upstream sampler (--train_sampling_strategy), each batch padded to its longest sequence;
    - `max_length`: the same, every batch padded to `pad_to` tokens (the examples' --pad_to_max_length)."""

    kind: str = "random"
    packer: SequencePacker | None = None
    pad_to: int | None = None


def requested_batching(args, given: set[str], pad_to_max_length: bool) -> str:
    """The batching the flags ask for: --batching, or what the older flags (--pack_sequences, --bucket_by_length,
    --train_sampling_strategy, --pad_to_max_length) say; `auto` when nothing decides. Contradictions are errors."""
    older = sorted(given & {"pack_sequences", "bucket_by_length", "pad_to_max_length"})
    if "batching" in given and args.batching != "auto":
        if older:
            raise ConfigError(f"--batching {args.batching} replaces --{older[0]}; drop one of them.")
        return args.batching
    if pad_to_max_length:
        return "max_length"
    if "train_sampling_strategy" in given and args.bucket_by_length and "bucket_by_length" in given:
        raise ConfigError(
            f"--bucket_by_length replaces --train_sampling_strategy; drop one of them (got "
            f"--train_sampling_strategy {args.train_sampling_strategy})."
        )
    return "auto"


def decide_batching(
    args,
    given: set[str],
    model,
    pad_token_id: int | None,
    token_outputs: bool,
    pad_to_max_length: bool,
    max_seq_length: int | None,
) -> BatchingPlan:
    """The one decision of how training batches are made (see `BatchingPlan`), logged with its reason. `auto`:
    packed where the task has one output per token and the model can take packed rows (--no_pack_sequences: not),
    else buckets (--no_bucket_by_length, or --train_sampling_strategy given: random)."""
    requested = requested_batching(args, given, pad_to_max_length)
    packer = make_packer(model, pad_token_id, args.pack_length) if token_outputs else None
    if requested == "max_length":
        if not max_seq_length:
            raise ConfigError("--batching max_length pads every batch to --max_seq_length: set --max_seq_length.")
        flag = "--pad_to_max_length" if pad_to_max_length else "--batching max_length"
        if packer is not None and args.pack_sequences:
            off = "; --pack_sequences turned off (it would remove that padding)"
        elif args.bucket_by_length and "train_sampling_strategy" not in given:
            off = "; --bucket_by_length turned off (it would remove most of that padding)"
        else:
            off = ""
        logger.info("%s: every batch is padded to %d tokens%s.", flag, max_seq_length, off)
        return BatchingPlan("max_length", pad_to=max_seq_length)
    config = getattr(model, "config", None)
    cannot_pack = (
        (packing_refusal(config) if config is not None else None) or "its model cannot take packed rows"
        if token_outputs
        else "the task has one output per sequence, not per token"
    )
    if requested == "packed":
        if packer is None:
            raise ConfigError(f"--batching packed: {cannot_pack}; use --batching buckets.")
        return logged(BatchingPlan("packed", packer=packer), args)
    if requested == "auto" and args.pack_sequences and packer is not None:
        return logged(BatchingPlan("packed", packer=packer), args)
    if requested == "auto" and token_outputs and args.pack_sequences:
        logger.info(
            "--pack_sequences: not packed (%s); training batches come from length buckets instead.", cannot_pack
        )
    if requested == "buckets" or (
        requested == "auto" and args.bucket_by_length and "train_sampling_strategy" not in given
    ):
        return logged(BatchingPlan("buckets"), args)
    return logged(BatchingPlan("random"), args)


def logged(plan: BatchingPlan, args) -> BatchingPlan:
    what = {
        "packed": f"random, packed into rows of {args.pack_length} tokens",
        "buckets": f"length buckets of {args.bucket_pool_batches} batches per pool, shuffled across the epoch",
        "random": f"{args.train_sampling_strategy} sampling, each padded to its longest sequence",
    }[plan.kind]
    logger.info("Training batches: %s (--batching %s).", what, plan.kind)
    return plan
