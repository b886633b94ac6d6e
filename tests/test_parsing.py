"""Config file as defaults, CLI overrides, aliases, unknown keys."""

import json

import pytest

from utils.core.arguments import DataArguments, ModelArguments
from utils.core.errors import ConfigError
from utils.core.parsing import parse_args
from utils.training.arguments import FinetuneTrainingArguments

TYPES = (ModelArguments, DataArguments, FinetuneTrainingArguments)
DEFAULTS = {"output_dir": "out", "learning_rate": 5e-5}


def test_yaml_positional_then_cli_overrides(write_file):
    path = write_file("run.yaml", "model: some/model\nlearning_rate: 1e-4\nnum_train_epochs: 2\nbf16: false\n")
    (model, data, training), given = parse_args(TYPES, [path, "--num_train_epochs", "5"], DEFAULTS)
    assert model.model_name_or_path == "some/model"
    assert training.learning_rate == 1e-4  # YAML's 1e-4 is a string; argparse converts it
    assert training.num_train_epochs == 5
    assert given == {"model_name_or_path", "learning_rate", "num_train_epochs", "bf16"}


def test_json_with_config_flag(write_file):
    path = write_file("run.json", json.dumps({"train_file": "t.conll", "max_seq_length": 64}))
    (model, data, training), _ = parse_args(TYPES, ["--max_seq_length", "96", "--config", path], DEFAULTS)
    assert data.train_file == "t.conll" and data.max_seq_length == 96


def test_model_alias_on_cli():
    (model, _, _), given = parse_args(TYPES, ["--model", "bert-base-cased"], DEFAULTS)
    assert model.model_name_or_path == "bert-base-cased" and given == {"model_name_or_path"}


def test_defaults_apply_when_nothing_is_given():
    (_, data, training), given = parse_args(TYPES, [], DEFAULTS)
    assert training.output_dir == "out" and training.learning_rate == 5e-5 and data.max_seq_length == 128
    assert given == set()


def test_unknown_config_keys_are_named(write_file):
    path = write_file("bad.yaml", "learning_rat: 1e-4\ncolour: blue\n")
    with pytest.raises(ConfigError, match=r"learning_rat \(did you mean learning_rate\?\), colour"):
        parse_args(TYPES, [path], DEFAULTS)


def test_config_must_be_a_mapping(write_file):
    with pytest.raises(ConfigError, match="must hold a mapping"):
        parse_args(TYPES, [write_file("list.yaml", "- a\n- b\n")], DEFAULTS)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist"):
        parse_args(TYPES, ["nowhere.yaml"], DEFAULTS)


def test_dataset_and_files_together_are_refused():
    with pytest.raises(ConfigError, match="either --dataset_name or data files"):
        parse_args(TYPES, ["--dataset_name", "conll2003", "--train_file", "x.conll"], DEFAULTS)


def test_every_training_argument_is_a_flag():
    (_, _, training), _ = parse_args(TYPES, ["--warmup_steps", "7", "--weight_decay", "0.1", "--seed", "3"], DEFAULTS)
    assert (training.warmup_steps, training.weight_decay, training.seed) == (7, 0.1, 3)
