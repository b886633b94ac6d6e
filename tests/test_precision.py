"""The training precision: bf16 autocast by default on the CPUs where it was measured faster at the same accuracy,
fp32 elsewhere, and what the user says always wins."""

from __future__ import annotations

import pytest
from transformers import HfArgumentParser

from utils.core.errors import ConfigError
from utils.training import arguments
from utils.training.arguments import FinetuneTrainingArguments, bf16_pays_on_cpu, cpu_identity, precision_note

AMX_XEON = ("GenuineIntel", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}))
BF16_XEON = ("GenuineIntel", frozenset({"avx2", "avx512f", "avx512_bf16"}))
BF16_EPYC = ("AuthenticAMD", frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}))
AVX2_ONLY = ("AuthenticAMD", frozenset({"avx2", "fma"}))
UNKNOWN = ("", frozenset())


@pytest.mark.parametrize(
    ("cpu", "expected"),
    [(AMX_XEON, True), (BF16_EPYC, True), (BF16_XEON, False), (AVX2_ONLY, False), (UNKNOWN, False)],
    ids=["amx", "epyc-avx512bf16", "xeon-avx512bf16-no-amx", "avx2", "unknown"],
)
def test_bf16_is_the_default_only_where_it_was_measured_faster(cpu, expected):
    assert bf16_pays_on_cpu(*cpu) is expected


def parse(argv: list[str], monkeypatch, cpu=None) -> FinetuneTrainingArguments:
    if cpu is not None:
        monkeypatch.setattr(arguments, "cpu_identity", lambda: cpu)
    (parsed,) = HfArgumentParser(FinetuneTrainingArguments).parse_args_into_dataclasses(["--output_dir", "x", *argv])
    return parsed


@pytest.mark.parametrize(
    ("cpu", "argv", "bf16"),
    [
        (BF16_EPYC, [], True),
        (AMX_XEON, [], True),
        (BF16_XEON, [], False),
        (AVX2_ONLY, [], False),
        (BF16_EPYC, ["--bf16", "false"], False),
        (BF16_XEON, ["--bf16"], True),
        (BF16_EPYC, ["--bf16", "true"], True),
    ],
)
def test_the_flag_wins_over_the_processor_rule(monkeypatch, cpu, argv, bf16):
    parsed = parse(argv, monkeypatch, cpu)
    assert parsed.bf16 is bf16 and parsed.use_cpu


def test_bf16_on_a_cpu_without_it_is_one_error_and_the_default_there_is_fp32(monkeypatch):
    with pytest.raises(ConfigError, match="--bf16: this CPU has no bfloat16 support"):
        parse(["--bf16"], monkeypatch, AVX2_ONLY)
    assert parse([], monkeypatch, AVX2_ONLY).bf16 is False


def test_this_machine_gets_its_rule_and_the_log_says_which(monkeypatch):
    parsed = parse([], monkeypatch)
    assert parsed.bf16 is bf16_pays_on_cpu(*cpu_identity())
    assert precision_note(parsed).startswith("Precision: bf16 autocast" if parsed.bf16 else "Precision: fp32")
    assert precision_note(parse(["--bf16", "false"], monkeypatch)) == "Precision: fp32."


def test_evaluation_under_bf16_training_runs_the_fp32_forward(tiny_model):
    """accelerate wraps `forward` in bf16 autocast for the whole run; the Trainer's evaluation takes the wrapper off,
    so its scores are those of the saved fp32 weights (what predict.py computes)."""
    import torch
    from accelerate import Accelerator
    from transformers import AutoModelForTokenClassification

    from utils.training.trainer import full_precision_forward

    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(tiny_model, num_labels=5).eval()
    inputs = {"input_ids": torch.randint(5, 1000, (3, 17)), "attention_mask": torch.ones(3, 17, dtype=torch.long)}
    with torch.no_grad():
        fp32 = model(**inputs).logits
        prepared = Accelerator(mixed_precision="bf16", cpu=True).prepare_model(model)
        autocast = prepared(**inputs).logits
        with full_precision_forward(prepared):
            restored = prepared(**inputs).logits
        after = prepared(**inputs).logits
    assert not torch.equal(autocast, fp32)  # the wrapper is there: bf16 changes the logits
    assert torch.equal(restored, fp32)
    assert torch.equal(after, autocast)  # and it is back afterwards, for training
