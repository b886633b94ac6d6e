"""The Hub push at its network boundary, secrets kept out of outputs, and the default run's TensorBoard/curves."""

import json
from typing import ClassVar

import pytest

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


def test_push_uploads_the_deliverables_privately(tiny_model, tmp_path, hub, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    out = tmp_path / "run"
    run_ner.main(["--model", tiny_model, "--output_dir", str(out), "--max_train_samples", "32", "--num_train_epochs",
                  "1", "--push_to_hub", "--hub_model_id", "someone/ner-demo", "--hub_private_repo", "true",
                  "--hub_token", SECRET, "--report_to", "tensorboard"])
    calls = dict((name, kwargs) for name, kwargs in hub.calls)
    assert calls["create_repo"]["repo_id"] == "someone/ner-demo" and calls["create_repo"]["private"] is True
    assert calls["init"]["token"] == SECRET  # the token reaches the client and nothing else
    upload = calls["upload_folder"]
    assert upload["repo_id"] == "someone/ner-demo" and upload["folder_path"] == str(out)
    files = set(upload["allow_patterns"])
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md",
                 "all_results.json", "eval_results.json", "predictions.conll", "training_curves.png"):
        assert name in files, name
    assert any(name.startswith("runs/") and "tfevents" in name for name in files)
    assert not any(name.startswith("checkpoint-") or name == "training_args.bin" for name in files)
    # the token is nowhere in the output directory (binary files included) nor in what was printed
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    printed = capsys.readouterr()
    assert SECRET not in printed.out and SECRET not in printed.err
    assert "--hub_token '***'" in (out / "README.md").read_text()


def test_card_has_hub_metadata_and_curves(tiny_model, tmp_path):
    out = tmp_path / "run"
    run_ner.main(["--model", tiny_model, "--output_dir", str(out), "--max_train_samples", "32", "--num_train_epochs",
                  "2", "--logging_steps", "1"])
    card = (out / "README.md").read_text()
    front_matter = card.split("---")[1]
    for key in ("pipeline_tag: token-classification", "base_model:", "model-index:", "library_name: transformers"):
        assert key in front_matter, key
    assert "![Loss and validation metric over training steps](training_curves.png)" in card
    assert (out / "training_curves.png").read_bytes().startswith(b"\x89PNG")
    assert list(out.glob("runs/*/events.out.tfevents.*")), "TensorBoard is on by default"
    for section in ("## Intended use", "## Limitations", "## Hyperparameters", "## Results", "## Labels"):
        assert section in card, section
    assert json.loads((out / "all_results.json").read_text())["eval_f1"] >= 0


def test_fp16_without_a_gpu_is_a_clear_error(tmp_path):
    from utils.core.errors import ConfigError

    with pytest.raises(ConfigError, match="--fp16 needs a CUDA"):
        run_ner.main(["--fp16", "--output_dir", str(tmp_path)])


def test_accelerate_configs_are_documented_with_a_command():
    readme = (ROOT / "README.md").read_text()
    for config in sorted((ROOT / "configs" / "accelerate").glob("*.yaml")):
        assert f"configs/accelerate/{config.name}" in readme, config.name
