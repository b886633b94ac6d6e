"""Which splits a run uses: train/validation/test out of a loaded dataset or the data files, with the transformers
example run_classification.py's --remove_splits, --<split>_split_name, --remove_columns and --shuffle_train_dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from datasets import Dataset, DatasetDict

from utils.core.arguments import DataArguments, split_names
from utils.core.errors import DataError

logger = logging.getLogger(__name__)

SPLIT_FILES = {"train": "train_file", "validation": "validation_file", "test": "test_file"}

SPLIT_ALIASES = {"validation": ("validation", "valid", "dev", "val"), "test": ("test",), "train": ("train",)}

#: Where a split was shuffled (--shuffle_train_dataset), each example's 1-based row in its source, so that errors
#: still name the row of the file (`source_rows`).
ROW_COLUMN = "__row__"


def find_split(dataset: DatasetDict, split: str) -> str | None:
    """The name under which a Hub dataset keeps a split (`validation` may be called `dev` or `valid`)."""
    return next((name for name in SPLIT_ALIASES[split] if name in dataset), None)


def choose_splits(loaded: DatasetDict, data_args: DataArguments, source: str) -> DatasetDict:
    """train/validation/test out of a loaded dataset, as run_classification.py chooses them: --remove_splits first,
    then each --<split>_split_name (a split used once), else the usual names (`validation` may be `dev`...)."""
    loaded = DatasetDict(loaded)
    for name in split_names(data_args.remove_splits):
        if name not in loaded:
            raise DataError(f"--remove_splits {name}: {source} has no such split; its splits are {list(loaded)}.")
        logger.info("--remove_splits: dropped the %s split of %s", name, source)
        del loaded[name]
    result = DatasetDict()
    for split in SPLIT_FILES:
        wanted = getattr(data_args, f"{split}_split_name", None)
        if wanted is not None:
            if wanted not in loaded:
                raise DataError(
                    f"--{split}_split_name {wanted}: {source} has no such split; its splits are {list(loaded)}."
                )
            logger.info("Using the %s split of %s as the %s split.", wanted, source, split)
            result[split] = loaded.pop(wanted)
    for split in SPLIT_FILES:
        name = find_split(loaded, split) if split not in result else None
        if name is not None:
            result[split] = loaded.pop(name)
    if not result:
        raise DataError(
            f"{source} has none of the splits train/validation/test: {list(loaded)}; choose them with "
            "--train_split_name/--validation_split_name/--test_split_name."
        )
    return DatasetDict({split: result[split] for split in SPLIT_FILES if split in result})


def drop_columns(raw: DatasetDict, names: Sequence[str]) -> DatasetDict:
    """--remove_columns: each named column goes from every split that has it; a name no split has is an error."""
    for name in names:
        holders = [split for split, dataset in raw.items() if name in dataset.column_names]
        if not holders:
            raise DataError(
                f"--remove_columns {name}: no split has such a column; they have "
                f"{sorted({c for d in raw.values() for c in d.column_names})}."
            )
        for split in holders:
            raw[split] = raw[split].remove_columns(name)
        logger.info("--remove_columns: dropped column %s from %s", name, ", ".join(holders))
    return raw


def source_rows(dataset: Dataset) -> list[int]:
    """The 1-based source row of each example (as loaded, or as it was before --shuffle_train_dataset)."""
    if ROW_COLUMN in dataset.column_names:
        return list(dataset[ROW_COLUMN])
    return list(range(1, len(dataset) + 1))


def split_source(data_args: DataArguments, split: str) -> str:
    """How error messages name a split's origin: its file, or dataset[split] (as --<split>_split_name chose it)."""
    chosen = getattr(data_args, f"{split}_split_name", None) or split
    if data_args.dataset_name or chosen not in SPLIT_FILES:
        return f"{data_args.dataset_name or 'the data files'}[{chosen}]"
    return getattr(data_args, SPLIT_FILES[chosen]) or f"{data_args.dataset_name}[{split}]"


def shuffled(train: Dataset, seed: int) -> Dataset:
    """--shuffle_train_dataset: the split in random order, each example keeping its source row (`ROW_COLUMN`)."""
    if ROW_COLUMN not in train.column_names:
        train = train.add_column(ROW_COLUMN, list(range(1, len(train) + 1)))
    logger.info("--shuffle_train_dataset: training examples shuffled with seed %d", seed)
    return train.shuffle(seed=seed)
