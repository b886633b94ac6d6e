"""Length-bucketed training batches: every example once per epoch, little padding, shuffled, unbiased loss weights."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.training.batching import BucketedSampler, bucketed_batches, labelled_items, padding_fraction


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 200), max_size=300),
    batch_size=st.integers(1, 17),
    pool_batches=st.integers(1, 9),
    seed=st.integers(0, 2**31),
)
def test_every_example_once_and_only_the_last_batch_short(lengths, batch_size, pool_batches, seed):
    batches = bucketed_batches(lengths, batch_size, pool_batches, torch.Generator().manual_seed(seed))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(len(batch) == batch_size for batch in batches[:-1])
    assert not batches or 1 <= len(batches[-1]) <= batch_size


def test_small_datasets_keep_four_pools_so_batches_change_between_epochs():
    """One pool holding every example would give the same batches every epoch, only reordered."""
    lengths = list(range(1, 65))
    epochs = [bucketed_batches(lengths, 4, 100, torch.Generator().manual_seed(seed)) for seed in range(2)]
    compositions = [sorted(sorted(batch) for batch in batches) for batches in epochs]
    assert compositions[0] != compositions[1]
    # Pools of 64 // (4 * 4) = 4 batches: each batch spans at most its pool's lengths, far less than random batches.
    batches = bucketed_batches(lengths, 4, 100, torch.Generator().manual_seed(0))
    assert padding_fraction(lengths, batches) < padding_fraction(lengths, [list(range(i, 64, 16)) for i in range(16)])


def test_padding_falls_and_batch_order_is_shuffled():
    rng = random.Random(0)
    lengths = [rng.choice([3, 5, 8, 13, 21, 34, 55]) for _ in range(6400)]
    batches = bucketed_batches(lengths, 32, 50, torch.Generator().manual_seed(0))
    in_order = [list(range(i, i + 32)) for i in range(0, 6400, 32)]
    assert padding_fraction(lengths, in_order) > 0.5
    assert padding_fraction(lengths, batches) < 0.05
    # Upstream's group_by_length runs each pool from the longest batch to the shortest: ours must not.
    longest = [max(lengths[i] for i in batch) for batch in batches]
    descents = sum(a > b for a, b in zip(longest, longest[1:]))
    assert 0.3 < descents / (len(longest) - 1) < 0.7


def test_padding_fraction_by_hand():
    assert padding_fraction([2, 4, 4], [[0, 1], [2]]) == pytest.approx(1 - 10 / 12)
    assert padding_fraction([], []) == 0.0


def test_sampler_order_depends_on_seed_and_epoch_only():
    lengths = [i % 17 + 1 for i in range(100)]
    sampler = BucketedSampler(lengths, batch_size=8, pool_batches=4, seed=7)
    first = list(sampler)
    assert list(sampler) == first == list(BucketedSampler(lengths, batch_size=8, pool_batches=4, seed=7))
    sampler.set_epoch(1)
    second = list(sampler)
    assert first != second and sorted(first) == sorted(second) == list(range(100))
    assert first != list(BucketedSampler(lengths, batch_size=8, pool_batches=4, seed=8))
    assert len(sampler) == 100


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="positive"):
        bucketed_batches([1, 2], 0, 1)


def test_labelled_items_per_row():
    assert labelled_items([-100, 3, 0, -100, 1]) == 3
    assert labelled_items(2) == 1


def test_loss_divisor_is_the_expected_count_not_the_batch_count(tmp_path, tiny_model):
    """A batch of short sentences gets the same per-token weight as a batch of long ones."""
    from datasets import Dataset
    from transformers import AutoModelForTokenClassification

    from utils.core.losses import SINGLE, make_loss
    from utils.training.arguments import FinetuneTrainingArguments
    from utils.training.batching import BatchingPlan
    from utils.training.trainer import FinetuneTrainer

    train = Dataset.from_dict(
        {
            "input_ids": [[101, 5, 102], [101, 5, 6, 7, 102], [101, 8, 9, 102]],
            "labels": [[-100, 1, -100], [-100, 1, 2, 0, -100], [-100, 0, 1, -100]],
        }
    )
    model = AutoModelForTokenClassification.from_pretrained(tiny_model, num_labels=3)

    def trainer(bucket: bool) -> FinetuneTrainer:
        args = FinetuneTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, report_to="none")
        return FinetuneTrainer(
            model=model,
            args=args,
            train_dataset=train,
            compute_loss_func=make_loss(SINGLE),
            batching=BatchingPlan("buckets" if bucket else "random"),
        )

    short_batch = [{"labels": torch.tensor([[-100, 1, -100, -100], [-100, 0, -100, -100]])}]
    bucketed = trainer(True)
    assert bucketed.items_per_example == pytest.approx(6 / 3)
    assert float(bucketed._get_num_items_in_batch(short_batch, torch.device("cpu"))) == pytest.approx(4.0)
    sampler = bucketed._get_train_sampler()
    assert isinstance(sampler, BucketedSampler)
    assert (sampler.lengths, sampler.batch_size, sampler.pool_batches, sampler.seed) == (
        [3, 5, 4],
        2,
        bucketed.args.bucket_pool_batches,
        bucketed.args.seed,
    )
    assert int(trainer(False)._get_num_items_in_batch(short_batch, torch.device("cpu"))) == 2


def test_one_batching_decision_from_the_flags(tmp_path, tiny_model):
    """--batching, or the older flags that decide it the same way; contradictions are refused."""
    from transformers import AutoModelForTokenClassification

    from utils.core.errors import ConfigError
    from utils.training.arguments import FinetuneTrainingArguments
    from utils.training.batching import decide_batching

    model = AutoModelForTokenClassification.from_pretrained(tiny_model, num_labels=3, attn_implementation="sdpa")

    def decide(given=(), token_outputs=True, pad_to_max_length=False, **flags):
        args = FinetuneTrainingArguments(output_dir=str(tmp_path), **flags)
        return decide_batching(args, set(given) | set(flags), model, 0, token_outputs, pad_to_max_length, 128)

    packed = decide()
    assert packed.kind == "packed" and packed.packer is not None and packed.pad_to is None
    assert decide(token_outputs=False).kind == "buckets"  # one output per sequence: never packed
    assert decide(pack_sequences=False).kind == "buckets"
    assert decide(pack_sequences=False, bucket_by_length=False).kind == "random"
    assert decide(token_outputs=False, train_sampling_strategy="sequential").kind == "random"
    assert decide(train_sampling_strategy="sequential").kind == "packed"  # packing keeps the sampler's batches
    padded = decide(pad_to_max_length=True, given={"pad_to_max_length"})
    assert (padded.kind, padded.pad_to, padded.packer) == ("max_length", 128, None)
    assert decide(batching="buckets").kind == "buckets"
    assert decide(batching="random").kind == "random"
    with pytest.raises(ConfigError, match="--batching packed: the task has one output per sequence"):
        decide(batching="packed", token_outputs=False)
    with pytest.raises(ConfigError, match="--batching buckets replaces --pack_sequences"):
        decide(batching="buckets", pack_sequences=True)
    with pytest.raises(ConfigError, match="--bucket_by_length replaces --train_sampling_strategy"):
        decide(train_sampling_strategy="sequential", bucket_by_length=True)
    eager = AutoModelForTokenClassification.from_pretrained(tiny_model, num_labels=3, attn_implementation="eager")
    args = FinetuneTrainingArguments(output_dir=str(tmp_path))
    assert decide_batching(args, set(), eager, 0, True, False, 128).kind == "packed"  # an additive 4-D mask
    with pytest.raises(ConfigError, match="--bucket_pool_batches must be 1 or more"):
        FinetuneTrainingArguments(output_dir=str(tmp_path), bucket_pool_batches=0)
