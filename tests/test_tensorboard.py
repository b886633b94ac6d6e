"""TensorBoard logs land in output_dir/runs and hold the whole training, with or without --eval_before_training
(an evaluation before training used to open the writer in ./runs of the working directory)."""

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import run_ner


def logged_scalars(runs: Path) -> dict[str, list[int]]:
    """Every scalar tag in every event file under `runs`, with the steps it was logged at (sorted)."""
    steps: dict[str, list[int]] = {}
    for events in runs.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            steps.setdefault(tag, []).extend(event.step for event in accumulator.Scalars(tag))
    return {tag: sorted(values) for tag, values in steps.items()}


@pytest.mark.parametrize("before", [True, False])
def test_event_files_hold_every_training_loss_and_evaluation(tiny_model, tmp_path, monkeypatch, before):
    monkeypatch.chdir(tmp_path)  # a writer opened without a directory would write to ./runs here
    out = tmp_path / "run"
    run_ner.main(
        [
            "--model",
            tiny_model,
            "--output_dir",
            str(out),
            "--max_train_samples",
            "48",
            "--max_eval_samples",
            "16",
            "--per_device_train_batch_size",
            "16",
            "--num_train_epochs",
            "2",
            "--logging_steps",
            "1",
            "--report_to",
            "tensorboard",
            "--eval_before_training",
            str(before).lower(),
            "--do_predict",
            "false",
            "--do_train",
            "true",
            "--do_eval",
            "true",
        ]
    )
    assert not (tmp_path / "runs").exists()
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    train_steps = [entry["step"] for entry in history if "loss" in entry]
    eval_steps = [entry["step"] for entry in history if "eval_loss" in entry]
    assert train_steps == [1, 2, 3, 4, 5, 6] and eval_steps == [3, 6]  # 48 sentences / 16 a step, 2 epochs
    scalars = logged_scalars(out / "runs")
    for tag in ("train/loss", "train/learning_rate", "train/grad_norm"):
        assert scalars[tag] == train_steps, tag
    # the per-epoch evaluations and the final one (at the last step again); the one before training at step 0
    # (transformers files keys without the eval_ prefix under train/)
    assert scalars["eval/loss"] == scalars["eval/f1"] == eval_steps + [6]
    assert scalars.get("train/before_eval_loss") == ([0] if before else None)
    assert scalars.get("train/before_eval_f1") == ([0] if before else None)
