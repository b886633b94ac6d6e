"""Input bounds: a cell of more than `--max_cell_chars` characters is refused with its row named, before anything
tokenizes it. One 50 MB text cell in a 60-row file otherwise took minutes and gigabytes to tokenize and train on."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from utils.core.errors import DataError
from utils.core.splits import ROW_COLUMN


def cell_lengths(column: pa.ChunkedArray) -> np.ndarray | None:
    """Characters per row of a text column, or of a list-of-texts column (a sentence's words: their sum); None for
    columns of other types."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pc.utf8_length(column).to_numpy(zero_copy_only=False)
    if (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and (
        pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
    ):
        array = column.combine_chunks()
        lengths = pc.utf8_length(pc.list_flatten(array)).to_numpy(zero_copy_only=False)
        parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
        return np.bincount(parents, weights=np.nan_to_num(lengths.astype(float)), minlength=len(array))
    return None


def check_cell_sizes(dataset: Dataset, source: str, limit: int) -> None:
    """Every text cell (a list of words counts as one cell) holds at most `limit` characters; the first one over is
    an error naming its row (or line) and the flag that raises the limit."""
    arrow = dataset.with_format("arrow")  # the rows selected (--max_*_samples), not the whole file's table
    for name in dataset.column_names:
        if name in {"location", ROW_COLUMN}:
            continue
        lengths = cell_lengths(arrow[name])
        if lengths is None or not len(lengths):
            continue
        lengths = np.nan_to_num(lengths.astype(float))
        over = np.flatnonzero(lengths > limit)
        if not len(over):
            continue
        index = int(over[0])
        raise DataError(
            f"the cell in column '{name}' holds {int(lengths[index]):,} characters, more than "
            f"--max_cell_chars {limit:,} ({len(over)} cell(s) are over). A model reads at most a few "
            "thousand characters of it; split the text, fix the row, or raise --max_cell_chars if it is "
            "meant.",
            source=row_location(dataset, source, index),
        )


def row_location(dataset: Dataset, source: str, index: int) -> str:
    """Where row `index` came from: its own location (CoNLL line, annotation task), else its source row."""
    if "location" in dataset.column_names:
        return str(dataset[index]["location"])
    if ROW_COLUMN in dataset.column_names:
        return f"{source} row {dataset[index][ROW_COLUMN]}"
    return f"{source} row {index + 1}"
