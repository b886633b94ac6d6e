"""Numbers that cannot train: non-finite flags are refused before loading, and a run whose loss or weights stop being
finite stops with one line naming the step, never exit 0 with a NaN model."""

import time

import pytest
import torch

import run_classification
import run_ner
from tests.conftest import ROOT
from utils.core.errors import ConfigError
from utils.tasks.ner.arguments import NerDataArguments
from utils.training.guards import NonFiniteGuard, TrainingDiverged

NER = ["--train_file", str(ROOT / "data" / "ner" / "train.conll")]
CLASSIFICATION = ["--train_file", str(ROOT / "data" / "classification" / "sentiment" / "train.tsv")]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--learning_rate", "nan"],
            "--learning_rate nan: must be a finite number (not nan or inf); give a value such as the default 5e-05.",
        ),
        (["--learning_rate", "inf"], "--learning_rate inf: must be a finite number"),
        (["--weight_decay", "nan"], "--weight_decay nan: must be a finite number"),
        (["--num_train_epochs", "inf"], "--num_train_epochs inf: must be a finite number"),
        (["--max_grad_norm", "nan"], "--max_grad_norm nan: must be a finite number"),
        (["--warmup_steps", "nan"], "--warmup_steps nan: must be a finite number"),
        (["--adam_beta1", "nan"], "--adam_beta1 nan: must be a finite number"),
    ],
)
def test_non_finite_flags_fail_before_loading(tmp_path, flags, message):
    started = time.monotonic()
    with pytest.raises(ConfigError) as raised:
        run_ner.main([*NER, "--output_dir", str(tmp_path / "out"), *flags])
    assert message in str(raised.value)
    assert time.monotonic() - started < 30 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--threshold", "nan"], "--threshold nan: must be a probability in [0, 1]"),
        (["--threshold", "1.5"], "--threshold 1.5: must be a probability in [0, 1]"),
        (["--few_shot_learning_rate", "inf"], "--few_shot_learning_rate inf: must be a finite number of 0 or more"),
    ],
)
def test_classification_numbers_are_checked_when_parsed(tmp_path, flags, message):
    with pytest.raises(ConfigError) as raised:
        run_classification.main([*CLASSIFICATION, "--output_dir", str(tmp_path / "out"), *flags])
    assert message in str(raised.value)


def test_short_max_seq_length_does_not_blame_a_stride_never_given():
    assert NerDataArguments(max_seq_length=8).stride == 3  # half the room left by [CLS] and [SEP]
    assert NerDataArguments().stride == NerDataArguments(max_seq_length=48).stride == 32  # unchanged where it fits
    assert NerDataArguments(max_seq_length=34).stride == 16
    assert NerDataArguments(max_seq_length=16, stride=5).stride == 5


def test_a_stride_given_that_cannot_fit_names_both_flags_before_loading(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"^--stride 20 must be smaller than --max_seq_length 16 less the special "
        r"tokens \(at most 13 here\)",
    ):
        run_ner.main([*NER, "--max_seq_length", "16", "--stride", "20", "--output_dir", str(tmp_path / "out")])


def test_max_seq_length_8_trains(tiny_model, tmp_path):
    results = run_ner.main(
        [
            *NER,
            "--model",
            tiny_model,
            "--max_seq_length",
            "8",
            "--max_train_samples",
            "8",
            "--max_steps",
            "1",
            "--report_to",
            "none",
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    assert results["train_samples"] == 8


def test_a_diverging_run_stops_at_the_step_that_spoiled_the_weights(tiny_model, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(TrainingDiverged) as raised:
        run_ner.main(
            [
                *NER,
                "--model",
                tiny_model,
                "--learning_rate",
                "1e38",
                "--max_train_samples",
                "32",
                "--per_device_train_batch_size",
                "8",
                "--num_train_epochs",
                "1",
                "--report_to",
                "none",
                "--output_dir",
                str(out),
            ]
        )
    message = str(raised.value)
    assert message.startswith("training diverged at step 1: weight classifier.")
    assert "became NaN or infinite after the optimizer step" in message and "--learning_rate (now 1e+38)" in message
    assert "\n" not in message
    assert not list(out.glob("checkpoint-*")) and not (out / "model.safetensors").exists()


class Args:
    fp16 = False
    learning_rate = 5e-5
    max_grad_norm = 1.0


class State:
    global_step = 6


class Control:
    should_save = False


def test_a_nan_gradient_is_named_before_the_optimizer_applies_it():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model(torch.tensor([[float("nan"), 1.0]])).sum().backward()
    with pytest.raises(
        TrainingDiverged,
        match=r"^training diverged at step 7: the gradient of 1.weight is not "
        r"finite \(NaN or infinite loss\)",
    ):
        NonFiniteGuard().on_pre_optimizer_step(Args(), State(), Control(), model=model)
    Args.fp16 = True  # the loss scaler skips such steps itself
    try:
        NonFiniteGuard().on_pre_optimizer_step(Args(), State(), Control(), model=model)
    finally:
        Args.fp16 = False


def test_a_logged_nan_grad_norm_stops_the_run():
    with pytest.raises(TrainingDiverged, match=r"^training diverged at step 6: the logged grad_norm is nan"):
        NonFiniteGuard().on_log(Args(), State(), Control(), logs={"loss": 0.5, "grad_norm": float("nan")})
    NonFiniteGuard().on_log(Args(), State(), Control(), logs={"loss": 0.5, "grad_norm": 1.5})


def test_the_whole_model_is_checked_before_a_checkpoint():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight[0, 0] = float("inf")
    guard, control = NonFiniteGuard(), Control()
    guard.on_step_end(Args(), State(), control, model=model)  # the head is fine: no full check without a save
    control.should_save = True
    with pytest.raises(TrainingDiverged, match=r"weight 0.weight is NaN or infinite before its checkpoint"):
        guard.on_step_end(Args(), State(), control, model=model)
