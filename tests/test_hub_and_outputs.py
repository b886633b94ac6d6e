"""The Hub push at its network boundary, secrets kept out of outputs, and the default run's TensorBoard/curves."""

import json
from typing import ClassVar

import pytest
import torch

import run_ner
from tests.conftest import ROOT

SECRET = "hf_SECRETtoken1234567890"


class RecordingApi:
    """Stands in for huggingface_hub.HfApi: records what would be created and uploaded."""

    calls: ClassVar[list] = []

    def __init__(self, token=None):
        RecordingApi.calls.append(("init", {"token": token}))

    def create_repo(self, **kwargs):
        RecordingApi.calls.append(("create_repo", kwargs))
        return type("RepoUrl", (), {"repo_id": kwargs["repo_id"]})()

    def upload_folder(self, **kwargs):
        RecordingApi.calls.append(("upload_folder", kwargs))


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub

    RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    return RecordingApi


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails unless the file is a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_push_uploads_the_deliverables_privately(tiny_model, tmp_path, hub, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # pushing is refused offline, before any work; the client is faked
    out = tmp_path / "run"
    run_ner.main(
        [
            "--model",
            tiny_model,
            "--output_dir",
            str(out),
            "--max_train_samples",
            "32",
            "--num_train_epochs",
            "1",
            "--push_to_hub",
            "--hub_model_id",
            "someone/ner-demo",
            "--hub_private_repo",
            "true",
            "--hub_token",
            SECRET,
            "--report_to",
            "tensorboard",
        ]
    )
    calls = dict((name, kwargs) for name, kwargs in hub.calls)
    assert calls["create_repo"]["repo_id"] == "someone/ner-demo" and calls["create_repo"]["private"] is True
    assert calls["init"]["token"] == SECRET  # the token reaches the client and nothing else
    upload = calls["upload_folder"]
    assert upload["repo_id"] == "someone/ner-demo" and upload["folder_path"] == str(out)
    # every file of the output directory but the checkpoints (optimizer state) and the pickled arguments
    written = sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file())
    assert upload["allow_patterns"] == [
        name for name in written if not name.startswith("checkpoint-") and name != "training_args.bin"
    ]
    assert [name for name in upload["allow_patterns"] if "/" not in name] == [
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
        "reliability_diagram.png",
        "tokenizer.json",
        "tokenizer_config.json",
        "train_results.json",
        "trainer_state.json",
        "training_curves.png",
    ]
    events = [name for name in upload["allow_patterns"] if "/" in name]
    assert events and all(name.startswith("runs/") and "/events.out.tfevents." in name for name in events)
    assert "training_args.bin" in written and any(name.startswith("checkpoint-") for name in written)
    # the token is nowhere in the output directory (binary files included) nor in what was printed
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    printed = capsys.readouterr()
    assert SECRET not in printed.out and SECRET not in printed.err
    assert "--hub_token '***'" in (out / "README.md").read_text()


def test_card_has_hub_metadata_and_curves(tiny_model, tmp_path):
    out = tmp_path / "run"
    run_ner.main(
        [
            "--model",
            tiny_model,
            "--output_dir",
            str(out),
            "--max_train_samples",
            "32",
            "--num_train_epochs",
            "2",
            "--logging_steps",
            "1",
        ]
    )
    card = (out / "README.md").read_text()
    front_matter = card.split("---")[1]
    for key in ("pipeline_tag: token-classification", "base_model:", "model-index:", "library_name: transformers"):
        assert key in front_matter, key
    assert "![Loss and validation metric over training steps](training_curves.png)" in card
    width, height = png_size(out / "training_curves.png")
    assert width > 0 and height > 0
    assert list(out.glob("runs/*/events.out.tfevents.*")), "TensorBoard is on by default"
    for section in ("## Intended use", "## Limitations", "## Hyperparameters", "## Results", "## Labels"):
        assert section in card, section
    results = json.loads((out / "all_results.json").read_text())
    state = json.loads((out / "trainer_state.json").read_text())
    batch = torch.load(out / "training_args.bin", weights_only=False).per_device_train_batch_size
    steps = -(-32 // batch)  # one epoch of --max_train_samples 32
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == list(range(1, 2 * steps + 1))
    evaluations = [entry for entry in state["log_history"] if "eval_f1" in entry]
    assert [(entry["step"], entry["epoch"]) for entry in evaluations] == [(steps, 1.0), (2 * steps, 2.0)]
    # the reported validation F1 is the best epoch's (the model kept at the end), and the card shows it
    assert results["eval_f1"] == state["best_metric"] == max(entry["eval_f1"] for entry in evaluations)
    f1_row = next(line for line in card.splitlines() if line.startswith("| f1 |"))
    assert f"| {results['eval_f1']:.4f} | {results['predict_f1']:.4f} |" in f1_row


def test_fp16_without_a_gpu_is_a_clear_error(tmp_path):
    from utils.core.errors import ConfigError

    with pytest.raises(ConfigError, match="--fp16 needs a CUDA"):
        run_ner.main(["--fp16", "--output_dir", str(tmp_path)])


def test_accelerate_configs_are_documented_with_a_command():
    readme = (ROOT / "README.md").read_text()
    for config in sorted((ROOT / "configs" / "accelerate").glob("*.yaml")):
        assert f"configs/accelerate/{config.name}" in readme, config.name
