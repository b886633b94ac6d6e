"""End-to-end runs of run_classification.main: each problem type, pairs, weights, reload through pipeline."""

import json

import pytest
from transformers import pipeline

import run_classification
from tests.conftest import ROOT

DATA = ROOT / "data" / "classification"
FAST = ["--per_device_train_batch_size", "16", "--logging_steps", "5", "--report_to", "none",
        "--num_train_epochs", "1"]


def run(tiny_model, out, dataset, suffix, *extra):
    files = {split: str(DATA / dataset / f"{split}.{suffix}") for split in ("train", "validation", "test")}
    return run_classification.main(["--model", tiny_model, "--output_dir", str(out), "--train_file", files["train"],
                                    "--validation_file", files["validation"], "--test_file", files["test"],
                                    *FAST, *extra])


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_single_label_outputs_and_pipeline_reload(tiny_model, tmp_path):
    out = tmp_path / "run"
    results = run(tiny_model, out, "sentiment", "tsv", "--eval_before_training", "--class_weights", "auto")
    for key in ("eval_accuracy", "eval_f1_macro", "eval_f1_micro", "eval_f1_weighted", "eval_mcc", "predict_accuracy",
                "before_eval_accuracy", "train_loss"):
        assert key in results, key
    test_rows = (DATA / "sentiment" / "test.tsv").read_text().splitlines()[1:]
    records = read_jsonl(out / "predictions.jsonl")
    assert [r["text"] for r in records] == [row.split("\t", 1)[1] for row in test_rows]
    assert [r["gold"] for r in records] == [row.split("\t", 1)[0] for row in test_rows]
    assert all(set(r["probabilities"]) == {"negative", "positive"} for r in records)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in records)
    tsv = (out / "predictions.tsv").read_text().splitlines()
    assert tsv[0] == "index\ttext\tprediction\tprobabilities\tgold" and len(tsv) == len(test_rows) + 1
    matrix = json.loads((out / "confusion_matrix.json").read_text())
    assert matrix["labels"] == ["negative", "positive"] and sum(map(sum, matrix["matrix"])) == len(test_rows)
    assert (out / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    assert "negative" in (out / "classification_report.txt").read_text()
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "Class weights in the loss: negative=" in card
    classifier = pipeline("text-classification", model=str(out))
    assert classifier("a warm and funny film")[0]["label"] in {"negative", "positive"}


def test_multi_label(tiny_model, tmp_path):
    out = tmp_path / "run"
    results = run(tiny_model, out, "topics", "jsonl", "--threshold", "0.4")
    assert {"eval_f1_micro", "eval_f1_macro", "eval_subset_accuracy"} <= set(results)
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert set(config["label2id"]) == {"sports", "politics", "business", "science", "health"}
    records = read_jsonl(out / "predictions.jsonl")
    assert len(records) == len((DATA / "topics" / "test.jsonl").read_text().splitlines())
    for record in records:
        assert record["labels"] == [n for n, p in record["probabilities"].items() if p > 0.4]


def test_regression_on_sentence_pairs(tiny_model, tmp_path):
    out = tmp_path / "run"
    results = run(tiny_model, out, "similarity", "csv")
    assert {"eval_mse", "eval_mae", "eval_pearson", "eval_spearman", "predict_mse"} <= set(results)
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1
    records = read_jsonl(out / "predictions.jsonl")
    assert all(isinstance(r["value"], float) and "text_pair" in r for r in records)
    assert "Inputs are sentence pairs" in (out / "README.md").read_text()


def test_weighted_loss_changes_the_training_loss(tiny_model, tmp_path):
    plain = run(tiny_model, tmp_path / "a", "sentiment", "tsv", "--max_train_samples", "32")
    weighted = run(tiny_model, tmp_path / "b", "sentiment", "tsv", "--max_train_samples", "32",
                   "--class_weights", "1,4")
    assert weighted["train_loss"] != pytest.approx(plain["train_loss"], rel=1e-3)
