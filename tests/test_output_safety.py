"""Outputs are durable and readable, and a run never removes another run's files by accident."""

import os
import stat

import pytest

import run_classification
import run_ner
from utils.core.errors import ConfigError
from utils.core.files import atomic_write, write_json


def test_atomic_write_gives_the_umask_mode_and_leaves_no_temporary_file(tmp_path):
    previous = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
        with atomic_write(tmp_path / "b.bin", "wb") as stream:
            stream.write(b"x")
    finally:
        os.umask(previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]
    assert {stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("a.json", "b.bin")} == {0o644}
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "a.json") as stream:
        stream.write("half")
        raise RuntimeError("killed while writing")
    assert (tmp_path / "a.json").read_text() == '{\n  "a": 1\n}\n'  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_every_output_of_a_run_is_readable_by_others(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the card shows paths inside the working directory relative to it, others by name
    previous = os.umask(0o022)
    try:
        run_ner.main(
            [
                "--model",
                tiny_model,
                "--output_dir",
                str(tmp_path / "run"),
                "--max_train_samples",
                "16",
                "--max_eval_samples",
                "8",
                "--max_predict_samples",
                "8",
                "--num_train_epochs",
                "1",
                "--report_to",
                "none",
            ]
        )
    finally:
        os.umask(previous)
    private = [
        str(path.relative_to(tmp_path))
        for path in (tmp_path / "run").rglob("*")
        if path.is_file() and stat.S_IMODE(path.stat().st_mode) & 0o044 != 0o044
    ]
    assert private == []
    assert stat.S_IMODE((tmp_path / "run" / "model.safetensors").stat().st_mode) == 0o644
    # the card goes to the Hub: no absolute local path in it (the data, model and output dir by their names)
    card = (tmp_path / "run" / "README.md").read_text()
    assert str(tmp_path) not in card and tiny_model not in card and os.path.dirname(tiny_model) not in card
    assert f"--model {os.path.basename(tiny_model)} --output_dir run " in card, card
    assert 'model="run"' in card and "- train: `train.conll`" in card


def test_the_sample_recipe_never_overwrites_another_directory(tmp_path):
    """`python run_classification.py --output_dir DIR` runs the sample recipe, whose overwrite_output_dir is for its
    own default directory only: a finished run in DIR is refused, and nothing of it is removed."""
    finished = tmp_path / "finished"
    finished.mkdir()
    for name in ("all_results.json", "predictions.jsonl", "confusion_matrix.json"):
        (finished / name).write_text("{}\n")
    with pytest.raises(ConfigError, match="already holds a finished run"):
        run_classification.main(["--output_dir", str(finished)])
    with pytest.raises(ConfigError, match="already holds a finished run"):
        run_ner.main(["--output_dir", str(finished)])
    assert sorted(p.name for p in finished.iterdir()) == [
        "all_results.json",
        "confusion_matrix.json",
        "predictions.jsonl",
    ]
