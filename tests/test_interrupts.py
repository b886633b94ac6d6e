"""An interrupted and resumed run ends exactly as an uninterrupted one, with the default epoch strategy (evaluate
and save each epoch, best checkpoint restored at the end). The signal is sent at a fixed step from inside the run,
so the test is deterministic; SIGKILL (which no handler sees) is covered in test_reliability.py."""

import json
import os
import signal

import pytest
from transformers import TrainerCallback

import run_ner
from utils.training.trainer import Interrupted

#: 64 sentences, batch 8: 8 steps an epoch, 2 epochs; the signal comes during step 3 (mid-epoch 1).
RUN = [
    "--max_train_samples",
    "64",
    "--max_eval_samples",
    "24",
    "--max_predict_samples",
    "24",
    "--per_device_train_batch_size",
    "8",
    "--num_train_epochs",
    "2",
    "--learning_rate",
    "1e-3",
    "--report_to",
    "none",
    "--eval_before_training",
    "false",
    "--logging_steps",
    "1",
]
VOLATILE = ("runtime", "per_second", "model_preparation_time")


class SignalAt(TrainerCallback):
    """Sends `signum` to this process as step `step` begins (as Ctrl-C or `kill` would)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            os.kill(os.getpid(), self.signum)


def stable(results: dict) -> dict:
    return {k: v for k, v in results.items() if not any(word in k for word in VOLATILE)}


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    run_ner.main(["--model", tiny_model, "--output_dir", str(out), *RUN])
    return out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_then_resume_gives_the_uninterrupted_model_metrics_and_predictions(
    tiny_model, uninterrupted, tmp_path, signum
):
    out = tmp_path / "run"
    args = ["--model", tiny_model, "--output_dir", str(out), *RUN]
    with pytest.raises(Interrupted, match=f"stopped by {signal.Signals(signum).name} at step 3 "):
        run_ner.main(args, callbacks=[SignalAt(3, signum)])
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert [entry for entry in state["log_history"] if "eval_loss" in entry] == []  # no evaluation mid-epoch
    run_ner.main([*args, "--resume_from_checkpoint", "last"])
    reference = json.loads((uninterrupted / "all_results.json").read_text())
    resumed = json.loads((out / "all_results.json").read_text())
    assert stable(resumed) == pytest.approx(stable(reference), rel=1e-6)
    assert (out / "predictions.conll").read_text() == (uninterrupted / "predictions.conll").read_text()
    final, expected = (json.loads((d / "trainer_state.json").read_text()) for d in (out, uninterrupted))
    assert os.path.basename(final["best_model_checkpoint"]) == os.path.basename(expected["best_model_checkpoint"])
    assert [e["eval_loss"] for e in final["log_history"] if "eval_loss" in e] == pytest.approx(
        [e["eval_loss"] for e in expected["log_history"] if "eval_loss" in e], rel=1e-6
    )
    assert (out / "model.safetensors").read_bytes() == (uninterrupted / "model.safetensors").read_bytes()
