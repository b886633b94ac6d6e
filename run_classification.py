"""Fine-tune a pretrained encoder for text classification: single-label, multi-label, regression, sentence pairs.

    python run_classification.py                        # embedded MiniLM on the shipped sentiment sample, offline
    python run_classification.py --train_file train.tsv --validation_file dev.tsv --test_file test.tsv
    python run_classification.py --train_file pairs.csv --text_column_names sentence1,sentence2   # sentence pairs
    accelerate launch run_classification.py --model bert-base-uncased --dataset_name stanfordnlp/sst2

The problem type comes from the labels (names or ids: single-label; lists or delimited names: multi-label;
non-integer numbers: regression) unless --problem_type says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import TrainerCallback

from utils.core.errors import run_command
from utils.tasks.classification.task import CLASSIFICATION_TASK
from utils.training.pipeline import run


def main(argv: list[str] | None = None, callbacks: Sequence[TrainerCallback] = ()) -> dict:
    """Train / evaluate / predict; returns the metrics written to all_results.json (`callbacks`: extra
    `TrainerCallback`s, e.g. for benchmarks)."""
    return run(CLASSIFICATION_TASK, argv, callbacks)


if __name__ == "__main__":
    run_command(main)
