"""Every argument is checked before any data or model is loaded: one error naming the flag (or config key), the
value and the fix."""

import time

import pytest

import run_classification
import run_ner
from utils.core.errors import ConfigError, DataError
from utils.core.validation import check_hub_access

SAMPLE = ["--train_file", "data/ner/train.conll", "--validation_file", "data/ner/validation.conll"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num_train_epochs", "-1"], "--num_train_epochs -1.0: must be more than 0"),
        (["--num_train_epochs", "0"], "--num_train_epochs 0.0: must be more than 0"),
        (["--max_steps", "0"], "--max_steps 0: give a positive number of optimizer steps, or -1"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0: must be at least 1"),
        (["--per_device_eval_batch_size", "-4"], "--per_device_eval_batch_size -4: must be at least 1"),
        (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps 0: must be at least 1"),
        (["--learning_rate", "-0.001"], "--learning_rate -0.001: must be at least 0"),
        (["--weight_decay", "-1"], "--weight_decay -1.0: must be 0 or more"),
        (["--warmup_steps", "-2"], "Got warmup_steps = -2.0, Expected value warmup_steps >= 0"),  # TrainingArguments
        (["--label_smoothing_factor", "1.5"], "--label_smoothing_factor 1.5: must be in [0, 1)"),
        (["--model", "./no/such/model"], "--model_name_or_path ./no/such/model: no such directory"),
        (["--train_file", "missing.conll"], "--train_file missing.conll: not found"),
        (["--test_file", "data"], "--test_file data: a directory"),
    ],
)
def test_bad_values_fail_before_any_work(tmp_path, flags, message):
    started = time.monotonic()
    with pytest.raises(ConfigError) as raised:
        run_ner.main([*SAMPLE, "--output_dir", str(tmp_path / "out"), *flags])
    assert message in str(raised.value)
    assert time.monotonic() - started < 30  # refused before the data or the model is loaded
    assert not (tmp_path / "out").exists()


def test_output_dir_that_is_a_file_or_unwritable(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory: choose another --output_dir"):
        run_classification.main(["--output_dir", str(afile)])
    with pytest.raises(ConfigError, match="its parent /proc is not writable"):
        run_classification.main(["--output_dir", "/proc/finetune-kit-test/out"])


def test_model_directory_without_config(tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(ConfigError, match=r"holds no config\.json, so it is not a saved model"):
        run_ner.main(["--model", str(tmp_path / "model"), "--output_dir", str(tmp_path / "out")])


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("learning_rate: [1, 2]\n", "key 'learning_rate' is [1, 2] (list); it takes a float."),
        ("per_device_train_batch_size: 8.5\n", "key 'per_device_train_batch_size' is 8.5 (float); it takes a whole"),
        ("num_train_epochs: three\n", "key 'num_train_epochs' is 'three' (str); it takes a float."),
        ("eval_before_training: 1\n", "key 'eval_before_training' is 1 (int); it takes a bool."),
        ("per_device_train_batch_size: 0\n", "--per_device_train_batch_size 0: must be at least 1"),
    ],
)
def test_config_values_are_checked_by_key_and_file(tmp_path, yaml, message):
    config = tmp_path / "run.yaml"
    config.write_text(yaml)
    with pytest.raises(ConfigError) as raised:
        run_ner.main([str(config), "--output_dir", str(tmp_path / "out")])
    assert message in str(raised.value)
    if "key" in message:
        assert f"config file {config}" in str(raised.value)


def test_config_numbers_convert_where_exact(tmp_path):
    """A whole float where an int belongs, or an int where a float belongs, is the same number: accepted."""
    from utils.core.parsing import parse_args
    from utils.training.arguments import FinetuneTrainingArguments

    config = tmp_path / "run.yaml"
    config.write_text("per_device_train_batch_size: 8.0\nlearning_rate: 1\n")
    (args,), _ = parse_args((FinetuneTrainingArguments,), [str(config), "--output_dir", str(tmp_path)])
    assert args.per_device_train_batch_size == 8 and args.learning_rate == 1.0


def test_push_to_hub_needs_the_hub(monkeypatch):
    class Args:
        push_to_hub, hub_token = True, None

    with pytest.raises(ConfigError, match=r"offline mode is on \(HF_HUB_OFFLINE=1\)"):
        check_hub_access(Args(), {"HF_HUB_OFFLINE": "1"})
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(ConfigError, match="needs a Hub token: run `huggingface-cli login`, set HF_TOKEN"):
        check_hub_access(Args(), {})
    Args.hub_token = "hf_x"
    check_hub_access(Args(), {})  # a token and online: nothing to refuse here


def test_messages_say_what_is_wrong(tmp_path, write_file, monkeypatch):
    with pytest.raises(ConfigError, match="--stride -5 must be 0 or more: it is how many tokens"):
        run_ner.main([*SAMPLE, "--stride", "-5", "--output_dir", str(tmp_path / "out")])
    short = write_file("short.tsv", "sentence\tlabel\ngood film\tpos\nbad film\n")
    with pytest.raises(DataError, match=r"short.tsv:3: 1 field\(s\) but the header has 2 .*a field is missing"):
        run_classification.main(["--train_file", short, "--output_dir", str(tmp_path / "out")])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as raised:
        run_ner.main([*SAMPLE, "--model", "someorg/not-in-the-cache", "--output_dir", str(tmp_path / "out")])
    message = str(raised.value)
    assert "\n" not in message and message.endswith(
        "Offline mode is on (HF_HUB_OFFLINE=1), so only models already "
        "in the cache or on disk load: download it once online, or point "
        "--model_name_or_path at a local directory."
    )
