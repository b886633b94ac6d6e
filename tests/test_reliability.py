"""Kill-and-resume gives the uninterrupted result; signals save a checkpoint; output_dir protection; determinism."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import run_ner
from tests.conftest import ROOT
from utils.core.errors import ConfigError

SAMPLE = ROOT / "data" / "ner"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
#: The embedded model on 160 sentences, 2 epochs of 20 steps, a checkpoint every 5 steps: slow enough to be
#: killed mid-epoch, fast enough for CI.
RUN = [
    "--max_train_samples",
    "160",
    "--num_train_epochs",
    "2",
    "--per_device_train_batch_size",
    "8",
    "--learning_rate",
    "1e-4",
    "--save_strategy",
    "steps",
    "--save_steps",
    "5",
    "--eval_strategy",
    "steps",
    "--eval_steps",
    "5",
    "--save_total_limit",
    "50",
    "--logging_steps",
    "5",
    "--report_to",
    "none",
    "--eval_before_training",
    "false",
]
VOLATILE = ("runtime", "per_second", "model_preparation_time")


def command(out, *extra):
    return [sys.executable, str(ROOT / "run_ner.py"), "--output_dir", str(out), *RUN, *extra]


def stable(results: dict) -> dict:
    return {k: v for k, v in results.items() if not any(word in k for word in VOLATILE)}


def finished(proc: subprocess.CompletedProcess) -> None:
    """The run exited 0; else its output's end in the failure message."""
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


def start_and_signal_after_first_checkpoint(out, signum) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(
        command(out), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 300
    while not (out / "checkpoint-5").is_dir():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, output, "")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    finished(subprocess.run(command(out), cwd=ROOT, env=ENV, capture_output=True, text=True))
    return out


def test_sigkill_then_resume_matches_the_uninterrupted_run(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    killed = start_and_signal_after_first_checkpoint(out, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert not (out / "all_results.json").exists()
    steps_done = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert steps_done < 40, "killed before the end"
    finished(
        subprocess.run(
            command(out, "--resume_from_checkpoint", "last"), cwd=ROOT, env=ENV, capture_output=True, text=True
        )
    )
    resumed = json.loads((out / "all_results.json").read_text())
    reference = json.loads((uninterrupted / "all_results.json").read_text())
    numbers = {k: v for k, v in stable(reference).items() if not isinstance(v, str)}
    assert {k: v for k, v in stable(resumed).items() if not isinstance(v, str)} == pytest.approx(numbers, rel=1e-6)
    assert {k: v for k, v in resumed.items() if isinstance(v, str)} == {
        k: v for k, v in reference.items() if isinstance(v, str)
    }  # the calibration map chosen
    assert (out / "predictions.conll").read_text() == (uninterrupted / "predictions.conll").read_text()


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(uninterrupted, tmp_path):
    out = tmp_path / "stopped"
    stopped = start_and_signal_after_first_checkpoint(out, signal.SIGTERM)
    assert stopped.returncode == 1
    assert "stopped by SIGTERM at step" in stopped.stdout and "--resume_from_checkpoint last" in stopped.stdout
    state = json.loads((out / "trainer_state.json").read_text())
    assert (out / f"checkpoint-{state['global_step']}").is_dir()  # the step it stopped at was saved
    assert not (out / "predictions.conll").exists()
    finished(
        subprocess.run(
            command(out, "--resume_from_checkpoint", "last"), cwd=ROOT, env=ENV, capture_output=True, text=True
        )
    )
    resumed = json.loads((out / "all_results.json").read_text())
    reference = json.loads((uninterrupted / "all_results.json").read_text())
    assert resumed["predict_f1"] == pytest.approx(reference["predict_f1"], rel=1e-6)


def test_a_finished_run_is_not_overwritten_by_accident(tiny_model, tmp_path):
    out = tmp_path / "run"
    args = [
        "--model",
        tiny_model,
        "--output_dir",
        str(out),
        "--max_train_samples",
        "16",
        "--num_train_epochs",
        "1",
        "--report_to",
        "none",
        "--train_file",
        str(SAMPLE / "train.conll"),
        "--validation_file",
        str(SAMPLE / "validation.conll"),
    ]
    run_ner.main(args)
    with pytest.raises(ConfigError, match=r"already holds a finished run.*--overwrite_output_dir"):
        run_ner.main(args)
    run_ner.main([*args, "--overwrite_output_dir"])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    # predicting with the finished model into its own directory is fine
    run_ner.main(["--model", str(out), "--test_file", str(SAMPLE / "test.conll"), "--output_dir", str(out)])


def test_same_seed_same_metrics(tiny_model, tmp_path):
    args = [
        "--model",
        tiny_model,
        "--max_train_samples",
        "48",
        "--num_train_epochs",
        "2",
        "--report_to",
        "none",
        "--per_device_train_batch_size",
        "8",
    ]
    first = run_ner.main([*args, "--output_dir", str(tmp_path / "a")])
    second = run_ner.main([*args, "--output_dir", str(tmp_path / "b")])
    assert stable(first) == stable(second)
    assert (tmp_path / "a" / "predictions.conll").read_text() == (tmp_path / "b" / "predictions.conll").read_text()
