"""The proof that a task needs no shared code of its own: `WORD_SCORES_TASK` (tests/word_scores_task.py), defined
only under tests/, trains through the shared pipeline (packed batches, evaluation, predictions, model card), predicts
through `Predictor` with an option of its own, serves over HTTP with its own request fields and exports to ONNX,
validated by its own decisions. No file under utils/ names it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.conftest import ROOT
from tests.word_scores_task import WORD_SCORES_TASK
from utils.core.conll import read_conll
from utils.serving.http import Limits, create_app
from utils.serving.onnx_export import export_model
from utils.serving.predictor import Predictor
from utils.training.pipeline import run

UTILS = ROOT / "utils"


def scores(tokens: list[str]) -> list[float]:
    """The target: 1 for punctuation and numbers, 0 for words (a tiny model learns it in a few epochs)."""
    return [0.0 if token.isalpha() else 1.0 for token in tokens]


def write_split(path: Path, conll: str, limit: int) -> str:
    sentences = read_conll(str(ROOT / "data" / "ner" / conll)).tokens[:limit]
    path.write_text(
        "".join(json.dumps({"tokens": list(s), "scores": scores(s)}) + "\n" for s in sentences), encoding="utf-8"
    )
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model) -> tuple[str, dict]:
    folder = tmp_path_factory.mktemp("word-scores")
    output_dir = folder / "run"
    results = run(
        WORD_SCORES_TASK,
        [
            "--model_name_or_path",
            tiny_model,
            "--output_dir",
            str(output_dir),
            "--train_file",
            write_split(folder / "train.jsonl", "train.conll", 160),
            "--validation_file",
            write_split(folder / "validation.jsonl", "validation.conll", 40),
            "--test_file",
            write_split(folder / "test.jsonl", "test.conll", 40),
            "--num_train_epochs",
            "4",
            "--learning_rate",
            "2e-3",
            "--per_device_train_batch_size",
            "8",
            "--eval_before_training",
            "--report_to",
            "none",
            "--seed",
            "0",
            "--max_seq_length",
            "128",
        ],
    )
    return str(output_dir), results


def test_the_third_task_names_no_file_under_utils():
    names = ("WORD_SCORES_TASK", "word_scores_task", '"word_scores"', "'word_scores'")
    hits = [path for path in UTILS.rglob("*.py") if any(name in path.read_text(encoding="utf-8") for name in names)]
    assert not hits, hits


def test_it_trains_through_the_shared_pipeline(trained):
    output_dir, results = trained
    assert results["eval_mse"] < 0.5 * results["before_eval_mse"], results  # it learned
    assert results["train_padding_fraction"] < 0.2  # token outputs: batches were packed by the shared decision
    config = json.loads((Path(output_dir) / "config.json").read_text())
    assert config["finetune_task"] == "word_scores" and config["id2label"] == {"0": "score"}
    for name in ("model.safetensors", "all_results.json", "README.md", "word_scores_report.txt", "predictions.jsonl"):
        assert (Path(output_dir) / name).is_file(), name


def test_it_predicts_serves_and_exports(trained):
    output_dir, _ = trained
    written = [json.loads(line) for line in (Path(output_dir) / "predictions.jsonl").read_text().splitlines()]
    predictor = Predictor.from_pretrained(
        output_dir, device="cpu", tasks=(WORD_SCORES_TASK,), decimals=5, threshold=0.3
    )  # another task's option name: not this task's
    assert predictor.task is WORD_SCORES_TASK and predictor.settings()["decimals"] == 5
    sentences = [record["tokens"] for record in written[:12]]
    results = predictor.predict(sentences)
    for result, record in zip(results, written[:12], strict=True):
        assert result["tokens"] == record["tokens"]
        assert result["scores"] == pytest.approx(record["scores"], abs=1e-4)  # training's own predictions
    assert predictor.predict([" ".join(sentences[0])])[0]["scores"] == results[0]["scores"]  # texts: split words

    with TestClient(create_app(predictor, output_dir, Limits(max_texts=16))) as client:
        answer = client.post("/predict", json={"tokens": sentences})
        assert answer.status_code == 200 and answer.json()["results"] == results
        refused = client.post("/predict", json={"texts": ["a"], "text_pairs": ["b"]})
        assert (
            refused.status_code == 422
            and "'text_pairs' are not for this model (word_scores)" in refused.json()["error"]
        )
        info = client.get("/info").json()
        assert info["task"] == "word_scores" and info["inputs"] == ["texts", "tokens"]
        assert info["settings"]["decimals"] == 5
        schema = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"][
            "application/json"
        ]["schema"]
        assert set(schema["properties"]) == {"texts", "tokens", "document_ids"}

    report = export_model(output_dir, tasks=(WORD_SCORES_TASK,))
    assert report["passed"] and report["task"] == "word_scores" and report["validation"]["unit"] == "word"
    assert report["graphs"]["fp32"]["outputs"] == ["logits"]
    assert report["validation"]["fp32"]["max_abs_logit_diff"] < 1e-3
    onnx = Predictor.from_pretrained(output_dir, device="cpu", backend="onnx-fp32", tasks=(WORD_SCORES_TASK,))
    for mine, theirs in zip(onnx.predict(sentences), results, strict=True):
        assert mine["scores"] == pytest.approx(theirs["scores"], abs=1e-3)
