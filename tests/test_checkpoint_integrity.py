"""Checkpoints are verified before resuming (a damaged one is named, the newest intact one offered, `last` skips it),
and a write that fails (disk full) is one line that leaves no half checkpoint behind."""

import errno
import os
import re
import shutil

import pytest
import safetensors

import run_ner
from tests.conftest import ROOT
from utils.core.errors import ConfigError
from utils.core.files import WriteFailed, write_json
from utils.training.checkpoints import CheckpointWriteFailed, checkpoint_problem, last_complete_checkpoint

TRAIN = [
    "--train_file",
    str(ROOT / "data" / "ner" / "train.conll"),
    "--max_train_samples",
    "16",
    "--per_device_train_batch_size",
    "8",
    "--save_strategy",
    "steps",
    "--save_steps",
    "1",
    "--eval_strategy",
    "no",
    "--report_to",
    "none",
    "--save_total_limit",
    "5",
]


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory):
    """A 2-step run with a checkpoint after each step (checkpoint-1 keeps weights and trainer state only)."""
    out = tmp_path_factory.mktemp("run") / "out"
    run_ner.main([*TRAIN, "--model", tiny_model, "--max_steps", "2", "--output_dir", str(out)])
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    return out


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return len(data)


def test_intact_checkpoints_pass(finished_run):
    assert checkpoint_problem(str(finished_run / "checkpoint-2")) is None
    assert checkpoint_problem(str(finished_run / "checkpoint-1")) is None


@pytest.mark.parametrize(
    ("name", "damage", "problem"),
    [
        ("model.safetensors", truncate, r"model.safetensors is truncated \([\d,]+ bytes of [\d,]+\)"),
        (
            "optimizer.pt",
            truncate,
            r"optimizer.pt is truncated or damaged \([\d,]+ bytes, not a complete torch archive\)",
        ),
        (
            "trainer_state.json",
            truncate,
            r"trainer_state.json is truncated or damaged \([\d,]+ bytes, not valid JSON\)",
        ),
        ("rng_state.pth", lambda path: path.write_bytes(b""), r"rng_state.pth is empty \(0 bytes\)"),
    ],
)
def test_each_damaged_file_is_named(run_copy, name, damage, problem):
    damage(run_copy / "checkpoint-2" / name)
    assert re_full(problem, checkpoint_problem(str(run_copy / "checkpoint-2")))


def re_full(pattern, text):
    return re.fullmatch(pattern, text or "") is not None


def test_a_damaged_checkpoint_named_by_path_is_refused_before_loading(run_copy, tiny_model):
    size = truncate(run_copy / "checkpoint-2" / "model.safetensors")
    with pytest.raises(ConfigError) as raised:
        run_ner.main(
            [
                *TRAIN,
                "--model",
                tiny_model,
                "--max_steps",
                "3",
                "--output_dir",
                str(run_copy),
                "--resume_from_checkpoint",
                str(run_copy / "checkpoint-2"),
            ]
        )
    message = str(raised.value)
    assert message.startswith(
        f"--resume_from_checkpoint {run_copy}/checkpoint-2: the checkpoint is damaged: "
        f"model.safetensors is truncated ({size // 2:,} bytes of {size:,}). It cannot be "
        f"resumed from; resume from the newest intact one instead, --resume_from_checkpoint "
        f"{run_copy}/checkpoint-1 (it holds the weights and the training state but no optimizer "
        "state"
    )
    assert "\n" not in message


def test_last_skips_a_damaged_checkpoint_and_says_so(run_copy, tiny_model, capsys):
    (run_copy / "checkpoint-2" / "rng_state.pth").write_bytes(b"")
    assert last_complete_checkpoint(str(run_copy)) == str(run_copy / "checkpoint-1")
    results = run_ner.main(
        [
            *TRAIN,
            "--model",
            tiny_model,
            "--max_steps",
            "3",
            "--output_dir",
            str(run_copy),
            "--resume_from_checkpoint",
            "last",
        ]
    )
    log = capsys.readouterr().out
    assert f"skipping {run_copy}/checkpoint-2: rng_state.pth is empty (0 bytes)." in log
    assert f"Resuming from {run_copy}/checkpoint-1, the newest intact checkpoint (it holds" in log
    assert results["train_samples"] == 16


@pytest.mark.parametrize(
    "failure",
    [
        lambda path: OSError(errno.ENOSPC, "No space left on device", path),
        lambda path: safetensors.SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        ),
    ],
)
def test_a_full_disk_while_saving_is_one_line_and_leaves_no_half_checkpoint(
    tiny_model, tmp_path, monkeypatch, failure
):
    import transformers.modeling_utils

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as stream:
            stream.write(b"half a file")
        raise failure(filename)

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full_disk)
    out = tmp_path / "out"
    with pytest.raises(CheckpointWriteFailed) as raised:
        run_ner.main([*TRAIN, "--model", tiny_model, "--max_steps", "2", "--output_dir", str(out)])
    message = str(raised.value)
    assert message.startswith(f"could not write checkpoint {out}/checkpoint-1: ")
    assert "No space left on device" in message and "A checkpoint of this run needs about " in message
    assert " MB are free there. The partial checkpoint was removed." in message and "\n" not in message
    assert not (out / "checkpoint-1").exists()


def test_a_full_disk_while_writing_a_result_file_is_one_line(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteFailed) as raised:
        write_json(tmp_path / "all_results.json", {"eval_f1": 0.5})
    assert str(raised.value).startswith(f"could not write {tmp_path}/all_results.json: No space left on device (")
    assert isinstance(raised.value, OSError) and list(tmp_path.iterdir()) == []  # no temporary file left either
