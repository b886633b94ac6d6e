"""The architecture matrix: tiny random models of the ten encoder architectures (tests/tiny_architectures.py), each
with a tokenizer of its real kind, through NER training (packed) and classification training with the real entry
points, save and reload into predict.py's `Predictor` (same predictions, character offsets that slice the text
back), and fp32 ONNX export (logits within 1e-4 of PyTorch's).

ONNX export runs by default for one architecture of each position scheme and tokenizer kind (BERT: absolute
positions and WordPiece; RoBERTa: positions after the padding index and byte-level BPE; DeBERTa-v3-style: relative
positions and Metaspace; ModernBERT: rotary positions, sliding-window layers and the TokenizersBackend tokenizer);
the other six are marked `slow` (deselected by default: `pytest -m slow tests/test_architectures.py`)."""

from __future__ import annotations

import json
import logging

import pytest

import run_classification
import run_ner
from tests.conftest import ROOT
from tests.tiny_architectures import ARCHITECTURES, build, conll_texts
from utils.core.conll import read_conll
from utils.serving.onnx_export import export_model
from utils.serving.predictor import Predictor

NER = ROOT / "data" / "ner"
SENTIMENT = ROOT / "data" / "classification" / "sentiment"
#: A handful of steps: enough to run every stage, far too few to learn (the head stays near random, so the
#: untrained model still tags entities for the offset check).
SHORT_RUN = [
    "--max_steps",
    "3",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "32",
    "--report_to",
    "none",
    "--save_strategy",
    "no",
    "--learning_rate",
    "1e-4",
    "--max_seq_length",
    "512",
]
EXPORTED_BY_DEFAULT = ("bert", "roberta", "deberta-v2", "modernbert")
TEXTS = [
    "Peter Blackburn of the European Commission said on Thursday in Brussels it disagreed .",
    "Ägypten's Präsident visited Zürich, then Kyoto\u00a0and  Berlin!",
    "(Tariq Hussain) — Belgium.",
]

_RUNS: dict[tuple[str, str], tuple[str, list[str]]] = {}


class Messages(logging.Handler):
    """The messages logged during a run (how its training batches were laid out)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """Each architecture's tiny model and tokenizer, trained on the NER and sentiment samples' text."""
    texts = conll_texts(NER / "train.conll") + [
        line.split("\t", 1)[1] for line in (SENTIMENT / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    ]
    root = tmp_path_factory.mktemp("architectures")
    return {model_type: build(model_type, root / model_type, texts) for model_type in ARCHITECTURES}


def trained(task: str, model_type: str, models: dict[str, str], factory) -> tuple[str, list[str]]:
    """The output directory of a short `task` run on `model_type`, made once per module, and the training code's
    log messages."""
    key = (task, model_type)
    if key not in _RUNS:
        out = factory.mktemp(f"{task}-{model_type}")
        messages, trainer_log = Messages(), logging.getLogger("utils.training.batching")
        trainer_log.addHandler(messages)
        level, trainer_log.level = trainer_log.level, logging.INFO
        if task == "ner":
            run_ner.main(
                [
                    "--model",
                    models[model_type],
                    "--output_dir",
                    str(out),
                    "--train_file",
                    str(NER / "train.conll"),
                    "--test_file",
                    str(NER / "test.conll"),
                    *SHORT_RUN,
                ]
            )
        else:
            run_classification.main(
                [
                    "--model",
                    models[model_type],
                    "--output_dir",
                    str(out),
                    "--train_file",
                    str(SENTIMENT / "train.tsv"),
                    "--test_file",
                    str(SENTIMENT / "test.tsv"),
                    *SHORT_RUN,
                ]
            )
        trainer_log.removeHandler(messages)
        trainer_log.setLevel(level)
        _RUNS[key] = (str(out), messages.messages)
    return _RUNS[key]


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_ner_trains_packed_and_predict_reloads_it(model_type, models, tmp_path_factory):
    out, messages = trained("ner", model_type, models, tmp_path_factory)
    assert "Training batches: random, packed into rows of 64 tokens (--batching packed)." in messages
    corpus = read_conll(NER / "test.conll")
    blocks = [block for block in (ROOT / out / "predictions.conll").read_text().split("\n\n") if block.strip()]
    written = [[row.split(" ")[2] for row in block.splitlines()] for block in blocks]
    predictor = Predictor.from_pretrained(out, device="cpu", batch_size=8)
    assert [tags for tags, _ in predictor.prediction.tag_words(corpus.tokens)] == written
    results = predictor.predict(TEXTS)
    assert sum(len(result["entities"]) for result in results) > 0
    for result in results:
        for entity in result["entities"]:
            assert result["text"][entity["start"] : entity["end"]] == entity["text"]


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_classification_trains_and_predict_reloads_it(model_type, models, tmp_path_factory):
    out, _ = trained("classification", model_type, models, tmp_path_factory)
    written = [json.loads(line) for line in (ROOT / out / "predictions.jsonl").read_text().splitlines()]
    sentences = [line.split("\t", 1)[1] for line in (SENTIMENT / "test.tsv").read_text().splitlines()[1:]]
    assert len(written) == len(sentences) == 100
    predicted = Predictor.from_pretrained(out, device="cpu", batch_size=8).predict(sentences)
    assert [result["label"] for result in predicted] == [row["label"] for row in written]
    for mine, theirs in zip(predicted, written):
        assert mine["probabilities"] == pytest.approx(theirs["probabilities"], abs=2e-6)


@pytest.mark.parametrize(
    "model_type",
    [
        model_type if model_type in EXPORTED_BY_DEFAULT else pytest.param(model_type, marks=pytest.mark.slow)
        for model_type in ARCHITECTURES
    ],
)
def test_onnx_fp32_export_gives_pytorch_logits(model_type, models, tmp_path_factory):
    out, _ = trained("ner", model_type, models, tmp_path_factory)
    report = export_model(out, validation_file=str(NER / "test.conll"), atol=1e-4)
    assert report["passed"] and report["validation"]["fp32"]["max_abs_logit_diff"] <= 1e-4
    assert report["validation"]["examples"] == len(read_conll(NER / "test.conll").tokens)
