"""End-to-end runs of run_ner.main on a tiny random BERT: outputs, windows, resume, early stopping, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import run_ner
from tests.conftest import ROOT
from utils.core.conll import read_conll
from utils.core.errors import DataError

SAMPLE = ROOT / "data" / "ner"
FAST = ["--per_device_train_batch_size", "16", "--logging_steps", "5", "--report_to", "none"]


def sample_args(tiny_model, output_dir, *extra):
    return ["--model", tiny_model, "--output_dir", str(output_dir), "--max_train_samples", "64",
            "--max_eval_samples", "24", *FAST, *extra]


def conll_words(path):
    corpus = read_conll(path)
    return corpus.tokens, corpus.tags


def test_full_run_writes_every_output(tiny_model, tmp_path):
    out = tmp_path / "run"
    results = run_ner.main(sample_args(tiny_model, out, "--num_train_epochs", "1", "--eval_before_training",
                                       "--report_to", "tensorboard", "--return_entity_level_metrics"))
    for name in ("model.safetensors", "config.json", "tokenizer.json", "all_results.json", "train_results.json",
                 "eval_results.json", "predict_results.json", "before_eval_results.json", "trainer_state.json",
                 "predictions.conll", "predictions.jsonl", "classification_report.txt", "README.md"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")) or all(p.name == "training_args.bin" for p in out.glob("*.bin"))
    assert list(out.glob("runs/*/events.out.tfevents.*")), "TensorBoard logs"
    all_results = json.loads((out / "all_results.json").read_text())
    assert all_results == results
    for key in ("train_loss", "eval_f1", "predict_f1", "before_eval_f1", "predict_accuracy", "eval_PER_f1"):
        assert key in results, key
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["0"] == "O" and set(config["label2id"]) >= {"B-PER", "I-PER", "B-LOC", "B-ORG"}
    # predictions.conll is the test file word for word, with gold tags beside the predictions
    test_tokens, test_tags = conll_words(SAMPLE / "test.conll")
    lines = (out / "predictions.conll").read_text().split("\n\n")
    predicted = [[row.split(" ") for row in block.splitlines()] for block in lines if block.strip()]
    assert [[row[0] for row in s] for s in predicted] == test_tokens
    assert [[row[1] for row in s] for s in predicted] == test_tags
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["tokens"] for r in records] == test_tokens
    assert all(len(r["predicted"]) == len(r["tokens"]) for r in records)
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "pipeline_tag: token-classification" in card and "| f1 |" in card
    assert "== test ==" in (out / "classification_report.txt").read_text()


def test_long_sentences_and_empty_pieces_keep_every_word(tiny_model, tmp_path, write_file):
    words = [f"word{i}" for i in range(150)] + ["\u200b", "Bonn"]
    tags = ["O"] * 150 + ["O", "B-LOC"]
    text = "".join(f"{w}\t{t}\n" for w, t in zip(words, tags)) + "\nAda\tB-PER\n"
    train = write_file("train.conll", text)
    out = tmp_path / "run"
    run_ner.main(["--model", tiny_model, "--train_file", train, "--validation_file", train, "--test_file", train,
                  "--output_dir", str(out), "--max_seq_length", "32", "--stride", "8", "--num_train_epochs", "1",
                  *FAST])
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [len(r["predicted"]) for r in records] == [152, 1]
    assert records[0]["tokens"][150] == "\u200b"
    results = json.loads((out / "all_results.json").read_text())
    assert results["predict_samples"] == 2


def test_resume_from_last_checkpoint_continues(tiny_model, tmp_path):
    out = tmp_path / "run"
    run_ner.main(sample_args(tiny_model, out, "--num_train_epochs", "1"))
    steps_one_epoch = json.loads((out / "trainer_state.json").read_text())["global_step"]
    run_ner.main(sample_args(tiny_model, out, "--num_train_epochs", "2", "--resume_from_checkpoint", "last"))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 * steps_one_epoch
    train_logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert train_logs[0]["step"] > steps_one_epoch  # no step of the first epoch was trained again


def test_early_stopping_stops(tiny_model, tmp_path):
    out = tmp_path / "run"
    run_ner.main(sample_args(tiny_model, out, "--num_train_epochs", "10", "--learning_rate", "0",
                             "--early_stopping_patience", "1"))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["epoch"] == 2.0  # epoch 1 sets the best F1, epoch 2 does not improve on it: stop


def test_unknown_labels_fail_cleanly_from_the_command_line(tiny_model, tmp_path, write_file):
    train = write_file("train.conll", "Ada B-PER\n")
    valid = write_file("valid.conll", "Bonn B-LOC\n")
    with pytest.raises(DataError, match="never seen in training"):
        run_ner.main(["--model", tiny_model, "--train_file", train, "--validation_file", valid,
                      "--output_dir", str(tmp_path / "x")])
    proc = subprocess.run([sys.executable, "run_ner.py", "--model", tiny_model, "--train_file", train,
                           "--validation_file", valid, "--output_dir", str(tmp_path / "y")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1
    assert "error: validation tags never seen in training: B-LOC (1x, first at" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_predict_only_from_a_fine_tuned_model(tiny_model, tmp_path, write_file):
    out = tmp_path / "run"
    run_ner.main(sample_args(tiny_model, out, "--num_train_epochs", "1", "--report_to", "none"))
    unlabelled = write_file("new.txt", "Ada\nLovelace\nvisited\nBonn\n")
    again = tmp_path / "again"
    results = run_ner.main(["--model", str(out), "--test_file", unlabelled, "--output_dir", str(again)])
    records = [json.loads(line) for line in (again / "predictions.jsonl").read_text().splitlines()]
    assert records[0]["tokens"] == ["Ada", "Lovelace", "visited", "Bonn"] and len(records[0]["predicted"]) == 4
    assert "gold" not in records[0] and "predict_f1" not in results
    assert Path(again / "predictions.conll").read_text().splitlines()[0].split(" ")[0] == "Ada"
