"""Classification's part of distillation (`TaskDistillation`): per text. The teacher's logits of a text (or pair)
become the soft label of the student's input of the same text, whatever tokenizer either uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import Dataset

from utils.core.errors import ConfigError
from utils.core.losses import IGNORE_INDEX, SINGLE
from utils.core.task import LoadedData
from utils.core.unlabelled import text_field, unlabelled_dataset


def text_logits(features: Dataset, row_logits: Sequence[Any], examples: int) -> list[np.ndarray]:
    """Per example, the teacher's logits ([1, labels]: a text is one unit)."""
    found: list[np.ndarray | None] = [None] * examples
    for row, example in enumerate(features["example_index"]):
        found[example] = np.asarray(row_logits[row], dtype=np.float32).reshape(1, -1)
    missing = [example for example, logits in enumerate(found) if logits is None]
    if missing:
        raise ValueError(f"the teacher gave no logits for examples {missing[:5]}")
    return found  # type: ignore[return-value]


def text_soft_labels(features: Dataset, logits: Sequence[np.ndarray], num_labels: int) -> list[np.ndarray]:
    """Per student feature row: [1, gold id or -100, the text's teacher logits]."""
    gold = features["labels"] if "labels" in features.column_names else [IGNORE_INDEX] * len(features)
    rows = []
    for example, label in zip(features["example_index"], gold, strict=True):
        rows.append(np.concatenate([[1.0, float(label)], logits[example][0]]).astype(np.float32))
    return rows


def check_classification_distillation(data: LoadedData) -> None:
    """Soft targets are a softmax over classes: single-label only."""
    problem = data.settled.problem_type
    if problem != SINGLE:
        raise ConfigError(
            f"--teacher_model: distillation is for single-label classification (softmax over classes); this "
            f"data is {problem}."
        )


def _text(location: str, record: Any) -> dict[str, Any]:
    return {"text": text_field(record, location), "location": location}


def read_classification_unlabelled(path: str, data_args) -> Dataset:
    """A --distill_file as classification rows (text, location), without labels."""
    if data_args.text_columns and len(data_args.text_columns) > 1:
        raise ConfigError("--distill_file holds single texts; this run classifies sentence pairs.")
    return unlabelled_dataset(path, _text, getattr(data_args, "cache_dir", None))
