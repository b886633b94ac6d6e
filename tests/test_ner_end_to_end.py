"""End-to-end runs of run_ner.main on a tiny random BERT: outputs, windows, resume, early stopping, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import run_ner
from tests.conftest import ROOT, RUN_KEYS
from tests.test_calibration import bias_key, calibration_keys
from utils.core.conll import read_conll
from utils.core.errors import DataError

SAMPLE = ROOT / "data" / "ner"
FAST = ["--per_device_train_batch_size", "16", "--logging_steps", "5", "--report_to", "none"]


def sample_args(tiny_model, output_dir, *extra):
    return [
        "--model",
        tiny_model,
        "--output_dir",
        str(output_dir),
        "--max_train_samples",
        "64",
        "--max_eval_samples",
        "24",
        *FAST,
        *extra,
    ]


def conll_words(path):
    corpus = read_conll(path)
    return corpus.tokens, corpus.tags


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails unless the file is a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def invalid_transitions(tags):
    """I-X after O, or after another type's tag (what conlleval counts as the start of a new entity)."""
    return sum(
        tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:])
        for previous, tag in zip(["O", *tags], tags)
    )


def entity_keys(prefix, types, samples=True):
    keys = {
        f"{prefix}_{name}"
        for name in (
            "f1",
            "precision",
            "recall",
            "accuracy",
            "loss",
            "invalid_iob_predictions",
            "runtime",
            "samples_per_second",
            "steps_per_second",
            "model_preparation_time",
        )
    }
    keys |= {f"{prefix}_{t}_{name}" for t in types for name in ("f1", "precision", "recall", "support", "number")}
    keys |= {f"{prefix}_overall_{name}" for name in ("precision", "recall", "f1", "accuracy")}  # the example's keys
    return keys | ({f"{prefix}_samples"} if samples else set())


SAMPLE_LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_full_run_writes_every_output(tiny_model, tmp_path):
    from safetensors.torch import load_file
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    out = tmp_path / "run"
    results = run_ner.main(
        sample_args(
            tiny_model,
            out,
            "--num_train_epochs",
            "1",
            "--eval_before_training",
            "--report_to",
            "tensorboard",
            "--return_entity_level_metrics",
        )
    )
    steps = 64 // 16  # --max_train_samples 64, batches of 16, one epoch
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "README.md",
            "all_results.json",
            "before_eval_results.json",
            "calibration_results.json",
            "classification_report.txt",
            "config.json",
            "eval_results.json",
            "model.safetensors",
            "predict_results.json",
            "predictions.conll",
            "predictions.jsonl",
            "tokenizer.json",
            "tokenizer_config.json",
            "train_results.json",
            "trainer_state.json",
            "training_args.bin",
            "training_curves.png",
            "reliability_diagram.png",
            "runs",
            f"checkpoint-{steps}",
        ]
    )
    assert list(out.glob("runs/*/events.out.tfevents.*")), "TensorBoard logs"
    width, height = png_size(out / "training_curves.png")
    assert width > 0 and height > 0
    all_results = json.loads((out / "all_results.json").read_text())
    assert all_results == results
    types = ["LOC", "MISC", "ORG", "PER"]
    assert set(results) == (
        RUN_KEYS
        | entity_keys("eval", types)
        | entity_keys("predict", types)
        | entity_keys("before_eval", types, samples=False)
        | calibration_keys("precision")
        | bias_key(results)
    )
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(SAMPLE_LABELS)}
    assert config["label2id"] == {name: i for i, name in enumerate(SAMPLE_LABELS)}
    # predictions.conll is the test file word for word, with gold tags beside the predictions
    test_tokens, test_tags = conll_words(SAMPLE / "test.conll")
    lines = (out / "predictions.conll").read_text().split("\n\n")
    predicted = [[row.split(" ") for row in block.splitlines()] for block in lines if block.strip()]
    assert {len(row) for s in predicted for row in s} == {3}
    assert [[row[0] for row in s] for s in predicted] == test_tokens
    assert [[row[1] for row in s] for s in predicted] == test_tags
    tags = [[row[2] for row in s] for s in predicted]
    assert {tag for s in tags for tag in s} <= set(SAMPLE_LABELS)
    # the test scores are seqeval's (conlleval mode) on the written gold and predicted columns
    report = classification_report(test_tags, tags, output_dict=True, zero_division=0)
    expected = {
        "predict_f1": f1_score(test_tags, tags, zero_division=0),
        "predict_precision": precision_score(test_tags, tags, zero_division=0),
        "predict_recall": recall_score(test_tags, tags, zero_division=0),
        "predict_accuracy": accuracy_score(test_tags, tags),
        "predict_invalid_iob_predictions": sum(map(invalid_transitions, tags)),
        **{
            f"predict_{t}_{name}": report[t][key]
            for t in types
            for name, key in (
                ("f1", "f1-score"),
                ("precision", "precision"),
                ("recall", "recall"),
                ("support", "support"),
            )
        },
    }
    assert {key: results[key] for key in expected} == pytest.approx(expected, abs=1e-12)
    # validation: the first 24 sentences' entities are the support; the best (only) evaluation is the reported one
    valid_tags = conll_words(SAMPLE / "validation.conll")[1][:24]
    support = {t: sum(entity[0] == t for s in valid_tags for entity in get_entities(s)) for t in types}
    assert {t: results[f"eval_{t}_support"] for t in types} == support
    assert {t: results[f"before_eval_{t}_support"] for t in types} == support
    assert (
        results["train_samples"],
        results["train_features"],
        results["eval_samples"],
        results["predict_samples"],
    ) == (64, 64, 24, len(test_tokens))
    state = json.loads((out / "trainer_state.json").read_text())
    assert (state["global_step"], state["max_steps"], state["epoch"], results["epoch"]) == (steps, steps, 1.0, 1.0)
    assert state["best_metric"] == results["eval_f1"]
    assert state["log_history"][-1]["train_loss"] == results["train_loss"]
    saved = load_file(str(out / "model.safetensors"))
    n_weights = sum(tensor.numel() for name, tensor in saved.items() if not name.endswith("position_ids"))
    assert results["total_parameters"] == results["trainable_parameters"] == n_weights
    assert results["trainable_percent"] == 100.0
    # predictions.jsonl: one record per test sentence, the same predictions, entities as conlleval reads the tags
    records = read_jsonl(out / "predictions.jsonl")
    assert [sorted(r) for r in records] == [["document_id", "entities", "gold", "id", "predicted", "tokens"]] * len(
        test_tokens
    )
    assert [r["id"] for r in records] == list(range(len(test_tokens)))
    assert [r["tokens"] for r in records] == test_tokens
    assert [r["gold"] for r in records] == test_tags
    assert [r["predicted"] for r in records] == tags
    assert [r["entities"] for r in records] == [
        [
            {"label": label, "start": start, "end": end + 1, "text": " ".join(r["tokens"][start : end + 1])}
            for label, start, end in get_entities(r["predicted"])
        ]
        for r in records
    ]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "pipeline_tag: token-classification" in card and "| f1 |" in card
    report_text = (out / "classification_report.txt").read_text()
    assert [line for line in report_text.splitlines() if line.startswith("==")] == [
        "== validation (before fine-tuning) ==",
        "== validation ==",
        "== test ==",
    ]
    n_valid_words, n_test_words = sum(map(len, valid_tags)), sum(map(len, test_tokens))
    validation, test = report_text.split("== validation ==\n")[1].split("== test ==\n")
    assert f"\nword accuracy: {results['eval_accuracy']:.4f} over {n_valid_words} words\n" in validation
    assert f"\nword accuracy: {results['predict_accuracy']:.4f} over {n_test_words} words\n" in test


def test_long_sentences_and_empty_pieces_keep_every_word(tiny_model, tmp_path, write_file):
    words = [f"word{i}" for i in range(150)] + ["\u200b", "Bonn"]
    tags = ["O"] * 150 + ["O", "B-LOC"]
    text = "".join(f"{w}\t{t}\n" for w, t in zip(words, tags)) + "\nAda\tB-PER\n"
    train = write_file("train.conll", text)
    out = tmp_path / "run"
    run_ner.main(
        [
            "--model",
            tiny_model,
            "--train_file",
            train,
            "--validation_file",
            train,
            "--test_file",
            train,
            "--output_dir",
            str(out),
            "--max_seq_length",
            "32",
            "--stride",
            "8",
            "--num_train_epochs",
            "1",
            *FAST,
        ]
    )
    records = read_jsonl(out / "predictions.jsonl")
    assert [r["tokens"] for r in records] == [words, ["Ada"]]  # the zero-width space is a word like any other
    assert [len(r["predicted"]) for r in records] == [152, 1]
    assert [r["gold"] for r in records] == [tags, ["B-PER"]]
    results = json.loads((out / "all_results.json").read_text())
    assert (results["train_samples"], results["eval_samples"], results["predict_samples"]) == (2, 2, 2)
    written = read_conll(out / "predictions.conll")
    assert written.tokens == [words, ["Ada"]] and written.tags == [r["predicted"] for r in records]


def test_resume_from_last_checkpoint_continues(tiny_model, tmp_path):
    out = tmp_path / "run"
    run_ner.main(sample_args(tiny_model, out, "--num_train_epochs", "1"))
    steps_one_epoch = json.loads((out / "trainer_state.json").read_text())["global_step"]
    run_ner.main(sample_args(tiny_model, out, "--num_train_epochs", "2", "--resume_from_checkpoint", "last"))
    assert steps_one_epoch == 64 // 16
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 * steps_one_epoch
    # one evaluation per epoch and one loss log (step 5 of 8, --logging_steps 5): nothing of epoch 1 ran twice
    assert [(entry["step"], entry["epoch"]) for entry in state["log_history"] if "eval_loss" in entry] == [
        (steps_one_epoch, 1.0),
        (2 * steps_one_epoch, 2.0),
    ]
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [5]


def test_early_stopping_stops(tiny_model, tmp_path):
    out = tmp_path / "run"
    run_ner.main(
        sample_args(
            tiny_model, out, "--num_train_epochs", "10", "--learning_rate", "0", "--early_stopping_patience", "1"
        )
    )
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["epoch"] == 2.0  # epoch 1 sets the best F1, epoch 2 does not improve on it: stop
    assert state["global_step"] == 2 * (64 // 16)
    evaluations = [entry for entry in state["log_history"] if "eval_f1" in entry]
    assert [entry["step"] for entry in evaluations] == [4, 8]
    assert evaluations[1]["eval_f1"] == evaluations[0]["eval_f1"] == state["best_metric"]  # a learning rate of 0


def test_unknown_labels_fail_cleanly_from_the_command_line(tiny_model, tmp_path, write_file):
    train = write_file("train.conll", "Ada B-PER\n")
    valid = write_file("valid.conll", "Bonn B-LOC\n")
    with pytest.raises(DataError, match="never seen in training"):
        run_ner.main(
            [
                "--model",
                tiny_model,
                "--train_file",
                train,
                "--validation_file",
                valid,
                "--output_dir",
                str(tmp_path / "x"),
            ]
        )
    proc = subprocess.run(
        [
            sys.executable,
            "run_ner.py",
            "--model",
            tiny_model,
            "--train_file",
            train,
            "--validation_file",
            valid,
            "--output_dir",
            str(tmp_path / "y"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1
    assert "error: validation tags never seen in training: B-LOC (1x, first at" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_predict_only_from_a_fine_tuned_model(tiny_model, tmp_path, write_file):
    out = tmp_path / "run"
    run_ner.main(sample_args(tiny_model, out, "--num_train_epochs", "1", "--report_to", "none"))
    unlabelled = write_file("new.txt", "Ada\nLovelace\nvisited\nBonn\n")
    again = tmp_path / "again"
    results = run_ner.main(["--model", str(out), "--test_file", unlabelled, "--output_dir", str(again)])
    records = read_jsonl(again / "predictions.jsonl")
    assert len(records) == 1 and sorted(records[0]) == ["document_id", "entities", "id", "predicted", "tokens"]
    assert records[0]["tokens"] == ["Ada", "Lovelace", "visited", "Bonn"] and len(records[0]["predicted"]) == 4
    labels = json.loads((out / "config.json").read_text())["label2id"]
    assert set(records[0]["predicted"]) <= set(labels)
    # no gold tags: no scores, and predictions.conll is word and prediction only
    assert set(results) == {
        "predict_samples",
        "predict_runtime",
        "predict_samples_per_second",
        "predict_steps_per_second",
        "predict_model_preparation_time",
        "total_parameters",
        "trainable_parameters",
        "trainable_percent",
    }
    assert results["predict_samples"] == 1
    assert (
        Path(again / "predictions.conll").read_text()
        == "".join(f"{word} {tag}\n" for word, tag in zip(records[0]["tokens"], records[0]["predicted"])) + "\n"
    )
    assert sorted(p.name for p in again.iterdir()) == [
        "README.md",
        "all_results.json",
        "classification_report.txt",
        "predict_results.json",
        "predictions.conll",
        "predictions.jsonl",
        "runs",
    ]  # (TensorBoard is on by default)
