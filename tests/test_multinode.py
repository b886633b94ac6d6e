"""Two "machines" over loopback: two `accelerate launch` launchers on this host, one process each, each with its own
output directory (as separate machines have separate disks), for both scripts. The same checks as the 2-process
test, plus what multi-node adds: only machine 0 writes outputs, and a machine that dies mid-training makes the other
exit within a bounded time with a clear message, after which relaunching both with --resume_from_checkpoint last
ends exactly as an uninterrupted two-machine run."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.test_distributed import COMMON, ENV, NER_DATA, SENTIMENT, check_same_training_as_one_process, results
from utils.core.conll import read_conll

CONFIG = ROOT / "configs" / "accelerate" / "two_node_cpu.yaml"
#: What only the main process writes (checkpoints, with each rank's RNG state, are the Trainer's own business).
OUTPUTS = {"all_results.json", "README.md", "model.safetensors", "trainer_state.json", "predictions.jsonl"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_machines(
    script: str, out, *args: str, shared: bool = False, dying: dict[int, int] | None = None
) -> list[subprocess.Popen]:
    """Machine 0 and machine 1, each writing to its own directory (out/machine-R), or with `shared` both to `out`
    (a cluster's shared storage, which resuming a multi-node run needs: every rank reads the checkpoint).
    `dying`: {machine: step}, that machine's process kills itself as the step begins (tests/kill_at_step.py)."""
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    port = free_port()
    procs = []
    for rank in (0, 1):
        command = [
            accelerate,
            "launch",
            "--config_file",
            str(CONFIG),
            "--machine_rank",
            str(rank),
            "--main_process_ip",
            "127.0.0.1",
            "--main_process_port",
            str(port),
            *(
                [str(ROOT / "tests" / "kill_at_step.py"), str(dying[rank]), script]
                if rank in (dying or {})
                else [str(ROOT / script)]
            ),
            "--output_dir",
            str(out if shared else out / f"machine-{rank}"),
            *args,
        ]
        procs.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=ENV,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        )
    return procs


def finish(procs: list[subprocess.Popen], timeout: float = 600) -> list[str]:
    outputs = [proc.communicate(timeout=timeout)[0] for proc in procs]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-4000:]
    return outputs


def single(script: str, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def written_by(directory) -> set[str]:
    return (
        {path.name for path in directory.iterdir() if not path.name.startswith("checkpoint-")}
        if (directory.is_dir())
        else set()
    )


def test_ner_on_two_machines(tiny_model, tmp_path):
    out = tmp_path / "two"
    logs = finish(
        start_machines("run_ner.py", out, "--model", tiny_model, "--per_device_train_batch_size", "8", *COMMON)
    )
    main, other = out / "machine-0", out / "machine-1"
    assert "World size 2 (distributed)" in logs[0]
    assert OUTPUTS - {"predictions.jsonl"} <= written_by(main) and "predictions.conll" in written_by(main)
    assert written_by(other) == set()  # machine 1 trains and evaluates, but writes no output
    gold = read_conll(NER_DATA / "test.conll")
    written = read_conll(main / "predictions.conll", tag_column=1)
    assert written.tokens == gold.tokens and written.tags == gold.tags  # every test word once, in order
    one, rescore = tmp_path / "one", tmp_path / "rescore"
    single(
        "run_ner.py", "--model", tiny_model, "--output_dir", str(one), "--per_device_train_batch_size", "16", *COMMON
    )
    check_same_training_as_one_process(main, one, len(read_conll(NER_DATA / "train.conll").tokens))
    single(
        "run_ner.py",
        "--model",
        str(main),
        "--validation_file",
        str(NER_DATA / "validation.conll"),
        "--test_file",
        str(NER_DATA / "test.conll"),
        "--output_dir",
        str(rescore),
        "--report_to",
        "none",
    )
    for key in ("eval_f1", "eval_precision", "eval_recall", "predict_f1", "predict_accuracy"):
        assert results(main)[key] == pytest.approx(results(rescore)[key], abs=1e-9), key


def test_classification_on_two_machines(tiny_model, tmp_path):
    out = tmp_path / "two"
    logs = finish(
        start_machines(
            "run_classification.py", out, "--model", tiny_model, "--per_device_train_batch_size", "8", *COMMON
        )
    )
    main, other = out / "machine-0", out / "machine-1"
    assert "World size 2 (distributed)" in logs[0] and written_by(other) == set()
    test_rows = (SENTIMENT / "test.tsv").read_text().splitlines()[1:]
    records = [json.loads(line) for line in (main / "predictions.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == [row.split("\t", 1)[1] for row in test_rows]
    one = tmp_path / "one"
    single(
        "run_classification.py",
        "--model",
        tiny_model,
        "--output_dir",
        str(one),
        "--per_device_train_batch_size",
        "16",
        *COMMON,
    )
    check_same_training_as_one_process(
        main, one, len(test_rows) and len((SENTIMENT / "train.tsv").read_text().splitlines()) - 1
    )


#: 320 sentences, 8 a step on each of 2 machines: 20 steps an epoch, 2 epochs, a checkpoint every 5 steps.
KILL_RUN = [
    "--max_train_samples",
    "320",
    "--num_train_epochs",
    "2",
    "--per_device_train_batch_size",
    "8",
    "--save_strategy",
    "steps",
    "--save_steps",
    "5",
    "--eval_strategy",
    "steps",
    "--eval_steps",
    "10",
    "--save_total_limit",
    "50",
    "--logging_steps",
    "5",
    "--report_to",
    "none",
    "--eval_before_training",
    "false",
    "--learning_rate",
    "1e-3",
]
VOLATILE = ("runtime", "per_second", "model_preparation_time")


def test_a_dead_machine_stops_the_other_and_both_resume_to_the_same_result(tiny_model, tmp_path):
    """Machine 1's process is SIGKILLed as step 8 begins (after checkpoint-5); machine 0 must not hang on its next
    collective: it exits at once with one clear error line, and relaunching both machines resumes from checkpoint-5
    to the uninterrupted result. (Shared output directory: resuming needs every rank to read the checkpoint.)"""
    args = ["--model", tiny_model, *KILL_RUN]
    reference = tmp_path / "reference"
    finish(start_machines("run_ner.py", reference, *args, shared=True))
    out = tmp_path / "killed"
    procs = start_machines("run_ner.py", out, *args, shared=True, dying={1: 8})
    started = time.monotonic()
    logs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert time.monotonic() - started < 240, "the surviving machine hung"
    assert procs[0].returncode != 0 and procs[1].returncode != 0
    assert "error: another process of this distributed run stopped or cannot be reached" in logs[0], logs[0][-3000:]
    assert "Relaunch every machine with --resume_from_checkpoint last" in logs[0]
    assert not (out / "all_results.json").exists()
    assert sorted(path.name for path in out.glob("checkpoint-*")) == ["checkpoint-5"]
    finish(start_machines("run_ner.py", out, *args, "--resume_from_checkpoint", "last", shared=True))
    stable, expected = (
        {k: v for k, v in results(d).items() if not any(word in k for word in VOLATILE)} for d in (out, reference)
    )
    assert stable == pytest.approx(expected, rel=1e-6)
    assert (out / "predictions.conll").read_text() == (reference / "predictions.conll").read_text()
    assert (out / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
