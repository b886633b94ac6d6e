"""The README's two commands cannot drift: CI runs the same test command, and the main job runs as written."""

import json
import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT
from utils.core.arguments import DataArguments, ModelArguments
from utils.core.conll import read_conll
from utils.core.parsing import parse_args
from utils.tasks.classification.arguments import ClassificationDataArguments
from utils.tasks.ner.arguments import NerDataArguments
from utils.training.arguments import FinetuneTrainingArguments


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_two_commands_and_ci_runs_the_same_tests():
    setup, tests = readme_commands()
    assert setup.startswith("python3 -m venv .venv") and "pip install torch==2.13.0" in setup
    test_command = tests.split("&&")[-1].strip()
    assert test_command == ".venv/bin/python -m pytest -q"
    assert test_command in (ROOT / ".ci" / "run").read_text()


RUN_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*/*.yaml") if p.parent.name != "accelerate")


@pytest.mark.parametrize("config", RUN_CONFIGS, ids=lambda p: p.name)
def test_configs_parse(config):
    data_type = NerDataArguments if config.parent.name == "ner" else ClassificationDataArguments
    parsed, given = parse_args(
        (ModelArguments, data_type, FinetuneTrainingArguments), [str(config)], {"output_dir": "x"}
    )
    values = yaml.safe_load(config.read_text())
    assert values and given == set(values)  # every key of the file, and only those, counts as given
    assert type(parsed[1]) is data_type and issubclass(data_type, DataArguments)
    # each value reaches the argument of its name, unchanged
    for key, value in values.items():
        holder = next(arguments for arguments in parsed if hasattr(arguments, key))
        assert getattr(holder, key) == value, key


def test_readme_main_job_runs_as_written(tmp_path):
    """`python run_ner.py` with no arguments: embedded model, shipped sample, train + eval + predict, offline."""
    main_job = readme_commands()[0].split("&&")[-1].strip()
    assert main_job == ".venv/bin/python run_ner.py"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_ner.py")], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| metric | before fine-tuning | validation | test |" in proc.stdout
    out = tmp_path / "outputs" / "ner"
    results = json.loads((out / "all_results.json").read_text())
    assert results["predict_f1"] > 0.3, results  # the real pretrained model learns the sample's entities
    # predictions.conll is the shipped test file word for word, and the test F1 is seqeval's on its columns
    from seqeval.metrics import f1_score

    gold, written = read_conll(ROOT / "data" / "ner" / "test.conll"), read_conll(out / "predictions.conll", 1)
    assert written.tokens == gold.tokens and written.tags == gold.tags
    predicted = read_conll(out / "predictions.conll", 2).tags
    assert results["predict_f1"] == pytest.approx(f1_score(gold.tags, predicted, zero_division=0), abs=1e-12)
    assert results["predict_samples"] == len(gold.tokens)

    from transformers import pipeline

    tagger = pipeline("token-classification", model=str(out), aggregation_strategy="simple")
    entities = tagger("Maria Schneider flew from Berlin to Madrid on Tuesday.")
    assert {e["entity_group"] for e in entities} & {"PER", "LOC"}, entities
