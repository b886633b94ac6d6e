"""Real 2-process DDP on CPU through `accelerate launch` and configs/accelerate/cpu_ddp.yaml, for both scripts.

Proves that the two ranks trained together (world size 2, half the optimizer steps), that evaluation and prediction
neither drop nor duplicate examples, that the metrics equal a single-process evaluation of the saved model, and that
the loss and gradient norm equal those of one process with the same global batch (no world-size-scaled loss).
"""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from utils.core.conll import read_conll

NER_DATA = ROOT / "data" / "ner"
SENTIMENT = ROOT / "data" / "classification" / "sentiment"
COMMON = [
    "--report_to",
    "none",
    "--num_train_epochs",
    "1",
    "--logging_steps",
    "1",
    "--seed",
    "7",
    "--train_sampling_strategy",
    "sequential",
    "--eval_before_training",
    "false",
    # the equalities below hold to 1e-4 in fp32; bf16 autocast (the default on some CPUs) rounds each process's
    # partial sums on their own
    "--bf16",
    "false",
]
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
}


def launch(script: str, *args: str) -> subprocess.CompletedProcess:
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    command = [
        accelerate,
        "launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "cpu_ddp.yaml"),
        str(ROOT / script),
        *args,
    ]
    proc = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def single(script: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def state(directory) -> dict:
    return json.loads((directory / "trainer_state.json").read_text())


def results(directory) -> dict:
    return json.loads((directory / "all_results.json").read_text())


def first_logged_step(directory) -> dict:
    return next(entry for entry in state(directory)["log_history"] if "loss" in entry)


def train_in_two_and_in_one(script: str, ddp, one, *args: str) -> None:
    """The same run in two processes of 8 rows each per step (`ddp`) and in one process of 16 (`one`)."""
    proc = launch(script, "--output_dir", str(ddp), "--per_device_train_batch_size", "8", *args, *COMMON)
    assert "World size 2 (distributed)" in proc.stdout
    single(script, "--output_dir", str(one), "--per_device_train_batch_size", "16", *args, *COMMON)


def check_same_training_as_one_process(ddp_dir, one_dir, n_train: int) -> None:
    assert state(ddp_dir)["global_step"] == math.ceil(n_train / 16)  # 2 ranks x 8 per device
    assert state(ddp_dir)["global_step"] < math.ceil(n_train / 8)  # one process with 8 per device: twice the steps
    assert state(one_dir)["global_step"] == state(ddp_dir)["global_step"]
    ddp_step, one_step = first_logged_step(ddp_dir), first_logged_step(one_dir)
    assert ddp_step["loss"] == pytest.approx(one_step["loss"], rel=1e-4)  # not doubled
    assert ddp_step["grad_norm"] == pytest.approx(one_step["grad_norm"], rel=1e-4)


def test_ner_two_processes(tiny_model, tmp_path):
    ddp, one, rescore = tmp_path / "ddp", tmp_path / "one", tmp_path / "rescore"
    train_in_two_and_in_one("run_ner.py", ddp, one, "--model", tiny_model)
    gold = read_conll(NER_DATA / "test.conll")
    written = read_conll(ddp / "predictions.conll", tag_column=1)
    assert written.tokens == gold.tokens and written.tags == gold.tags  # every test word once, in order
    check_same_training_as_one_process(ddp, one, len(read_conll(NER_DATA / "train.conll").tokens))
    single(
        "run_ner.py",
        "--model",
        str(ddp),
        "--validation_file",
        str(NER_DATA / "validation.conll"),
        "--test_file",
        str(NER_DATA / "test.conll"),
        "--output_dir",
        str(rescore),
        "--report_to",
        "none",
    )
    for key in ("eval_f1", "eval_precision", "eval_recall", "eval_accuracy", "predict_f1", "predict_accuracy"):
        assert results(ddp)[key] == pytest.approx(results(rescore)[key], abs=1e-9), key
    assert (ddp / "predictions.conll").read_text() == (rescore / "predictions.conll").read_text()


def test_classification_two_processes(tiny_model, tmp_path):
    ddp, one, rescore = tmp_path / "ddp", tmp_path / "one", tmp_path / "rescore"
    train_in_two_and_in_one("run_classification.py", ddp, one, "--model", tiny_model)
    test_rows = (SENTIMENT / "test.tsv").read_text().splitlines()[1:]
    records = [json.loads(line) for line in (ddp / "predictions.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == [row.split("\t", 1)[1] for row in test_rows]
    check_same_training_as_one_process(ddp, one, len((SENTIMENT / "train.tsv").read_text().splitlines()) - 1)
    single(
        "run_classification.py",
        "--model",
        str(ddp),
        "--validation_file",
        str(SENTIMENT / "validation.tsv"),
        "--test_file",
        str(SENTIMENT / "test.tsv"),
        "--output_dir",
        str(rescore),
        "--report_to",
        "none",
    )
    for key in ("eval_accuracy", "eval_f1_macro", "predict_accuracy", "predict_mcc"):
        assert results(ddp)[key] == pytest.approx(results(rescore)[key], abs=1e-9), key
    rescored = [json.loads(line) for line in (rescore / "predictions.jsonl").read_text().splitlines()]
    assert [r["label"] for r in records] == [r["label"] for r in rescored]


def test_ner_span_head_two_processes(tiny_model, tmp_path):
    """The span head under DDP: the ranks train as one process with the same global batch, every test sentence is
    predicted once and in order, and the metrics and predictions equal a single-process scoring of the saved model."""
    nested = ROOT / "data" / "ner_nested"
    data = ["--train_file", str(nested / "train.jsonl"), "--validation_file", str(nested / "validation.jsonl")]
    data += ["--test_file", str(nested / "test.jsonl")]
    span = ["--head", "span", *data]
    ddp, one, rescore = tmp_path / "ddp", tmp_path / "one", tmp_path / "rescore"
    train_in_two_and_in_one("run_ner.py", ddp, one, "--model", tiny_model, *span)
    records = [json.loads(line) for line in (ddp / "predictions.jsonl").read_text().splitlines()]
    gold = [json.loads(line) for line in (nested / "test.jsonl").read_text().splitlines()]
    assert [r["tokens"] for r in records] == [row["tokens"] for row in gold]
    check_same_training_as_one_process(ddp, one, len((nested / "train.jsonl").read_text().splitlines()))
    single("run_ner.py", "--model", str(ddp), *data[2:], "--output_dir", str(rescore), "--report_to", "none")
    for key in ("eval_f1", "eval_precision", "eval_recall", "predict_f1", "predict_nested_recall"):
        assert results(ddp)[key] == pytest.approx(results(rescore)[key], abs=1e-9), key
    assert (ddp / "predictions.jsonl").read_text() == (rescore / "predictions.jsonl").read_text()


def test_ner_distillation_two_processes(tiny_model, tmp_path):
    """Distillation under DDP: the soft labels made once and shared, the loss divided by the global count of teacher
    targets, so two processes train as one with the same global batch."""
    teacher, ddp, one = tmp_path / "teacher", tmp_path / "ddp", tmp_path / "one"
    single("run_ner.py", "--model", tiny_model, "--output_dir", str(teacher), *COMMON)
    student = ["--teacher_model", str(teacher), "--student_layers", "1"]
    train_in_two_and_in_one("run_ner.py", ddp, one, *student)
    check_same_training_as_one_process(ddp, one, len(read_conll(NER_DATA / "train.conll").tokens))
    assert results(ddp)["distill_retention"] == pytest.approx(results(one)["distill_retention"], rel=1e-3)
