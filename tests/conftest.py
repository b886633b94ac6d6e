"""Shared fixtures: offline mode, Hypothesis profiles, a tiny random BERT with the embedded tokenizer, paths to
data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
from hypothesis import settings

# CI (which sets CI=true) explores the same examples every run and prints how to reproduce a failure; developers get
# fresh random examples each run. HYPOTHESIS_PROFILE=ci|dev chooses either one explicitly.
settings.register_profile("ci", derandomize=True, print_blob=True, deadline=None, database=None)
settings.register_profile("dev", derandomize=False, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; the test is skipped with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the real-data integration tests need ../shared/data beside the project")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A 2-layer, 32-wide random BERT saved with the embedded model's tokenizer: real code paths, seconds to train.
    No dropout, so runs that should be equal (one process vs two) are equal to the last digit."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from utils.core.modeling import embedded_model_path

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)  # the same weights whichever tests ran before (the global generator's state varies)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture
def write_file(tmp_path):
    """Write text (or bytes) to a file under tmp_path and return its path as a string."""

    def write(name: str, content: str | bytes) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    return write


#: The keys every training run puts in all_results.json besides its splits' metrics (both tasks).
RUN_KEYS = {
    "train_loss",
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "train_samples",
    "train_features",
    "train_padding_fraction",
    "total_flos",
    "epoch",
    "total_parameters",
    "trainable_parameters",
    "trainable_percent",
}
