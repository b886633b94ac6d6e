"""Fine-tune a pretrained encoder for named-entity recognition.

    python run_ner.py                                   # embedded MiniLM on the shipped sample, fully offline
    python run_ner.py --train_file train.txt --validation_file valid.txt --test_file test.txt --output_dir out
    python run_ner.py configs/ner/conll2003.yaml --num_train_epochs 1
    accelerate launch run_ner.py --model bert-base-cased --dataset_name conll2003

Data: CoNLL files (token per line, tag in the last column), CSV/TSV/JSON/JSONL/parquet with `tokens` and `ner_tags`
columns, or a Hub dataset. Long sentences are windowed, never truncated: every word gets one prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import TrainerCallback

from utils.core.errors import run_command
from utils.tasks.ner.task import NER_TASK
from utils.training.pipeline import run


def main(argv: list[str] | None = None, callbacks: Sequence[TrainerCallback] = ()) -> dict:
    """Train / evaluate / predict; returns the metrics written to all_results.json (`callbacks`: extra
    `TrainerCallback`s, e.g. for benchmarks)."""
    return run(NER_TASK, argv, callbacks)


if __name__ == "__main__":
    run_command(main)
