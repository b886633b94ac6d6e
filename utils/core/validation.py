"""One pass over the parsed arguments before any data or model is loaded: values in range, paths that exist and can
be written, the Hub reachable when pushing. Each problem is one error naming the flag, the value and the fix, so a
bad run fails in a second instead of after loading data, the model, or a whole training."""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from utils.core.data import SPLIT_FILES
from utils.core.errors import ConfigError

#: (flag, lowest allowed value, whether the lowest is allowed, what to do): training values that must be positive.
POSITIVE = (
    ("per_device_train_batch_size", 1, True, "examples per device and step"),
    ("per_device_eval_batch_size", 1, True, "examples per device in evaluation"),
    ("gradient_accumulation_steps", 1, True, "steps summed into one update"),
    ("logging_steps", 0, False, "a step interval, or a ratio of the training below 1"),
    ("learning_rate", 0, True, "a rate such as 5e-5; 0 keeps the weights as they are"),
)
NON_NEGATIVE = ("weight_decay", "warmup_steps", "save_total_limit", "dataloader_num_workers", "max_grad_norm")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def check_finite(*argument_sets) -> None:
    """Every float argument is a real number: `nan` passes every `<`/`>` range check (all comparisons are False) and
    `inf` passes the lower bounds, and either then fails inside the optimizer after loading, or trains a model whose
    every weight is NaN. Checked over all fields, so a new float flag is covered without being listed."""
    for arguments in argument_sets:
        if not dataclasses.is_dataclass(arguments):
            continue
        for field in dataclasses.fields(arguments):
            value = getattr(arguments, field.name, None)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(
                    f"--{field.name} {value}: must be a finite number (not nan or inf); give a value "
                    "such as the default " + default_text(field) + "."
                )


def default_text(field: dataclasses.Field) -> str:
    """How an error shows a field's default."""
    return f"{field.default:g}" if isinstance(field.default, float) and math.isfinite(field.default) else "in --help"


def check_ranges(training_args) -> None:
    """Training values that would otherwise "succeed" with an untrained model or fail deep inside a library."""
    for name, lowest, inclusive, meaning in POSITIVE:
        value = getattr(training_args, name)
        if value is None:
            continue
        if (value < lowest) if inclusive else (value <= lowest):
            bound = f"at least {lowest}" if inclusive else f"more than {lowest}"
            raise ConfigError(f"--{name} {value}: must be {bound} ({meaning}).")
    for name in NON_NEGATIVE:
        value = getattr(training_args, name, None)
        if value is not None and value < 0:
            raise ConfigError(f"--{name} {value}: must be 0 or more.")
    if training_args.max_steps is not None and training_args.max_steps <= 0 and training_args.max_steps != -1:
        raise ConfigError(
            f"--max_steps {training_args.max_steps}: give a positive number of optimizer steps, or -1 "
            "to train for --num_train_epochs."
        )
    if training_args.max_steps == -1 and training_args.num_train_epochs <= 0:
        raise ConfigError(
            f"--num_train_epochs {training_args.num_train_epochs}: must be more than 0 (or give --max_steps)."
        )
    if not 0 <= training_args.label_smoothing_factor < 1:
        raise ConfigError(f"--label_smoothing_factor {training_args.label_smoothing_factor}: must be in [0, 1).")
    for name in ("eval_steps", "save_steps"):
        value = getattr(training_args, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name} {value}: must be more than 0 (a step interval, or a ratio below 1).")


def nearest_existing(path: str) -> str:
    """`path` itself, or the closest ancestor directory that exists."""
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def can_write_in(directory: str) -> bool:
    """Whether a file can be made in `directory`: tried, not guessed (permission bits say yes to root even on a
    read-only disk); the probe leaves nothing behind."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def check_output_dir(output_dir: str | None, flag: str = "--output_dir") -> None:
    """The output directory is a directory (or can be made one) that this user can write."""
    if not output_dir:
        raise ConfigError(f"{flag} is empty: name a directory for the model and results.")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ConfigError(f"{flag} {output_dir} is a file, not a directory: choose another {flag}.")
    existing = nearest_existing(output_dir)
    if not os.path.isdir(existing) or not can_write_in(existing):
        where = "it" if existing == os.path.abspath(output_dir) else f"its parent {existing}"
        raise ConfigError(
            f"{flag} {output_dir}: {where} is not writable (read-only disk or no permission); "
            "choose a directory you can write to."
        )


def looks_like_path(name: str) -> bool:
    """A local path rather than a Hub id (`org/name`): absolute, explicitly relative, home-relative, or deeper."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def check_model_source(flag: str, name: str | None) -> None:
    """A local model directory exists and holds a config; a Hub id is only possible when online or cached."""
    if not name:
        return
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise ConfigError(
                f"--{flag} {name}: the directory holds no config.json, so it is not a saved model. "
                "Point it at a model directory (a run's --output_dir, or a save_pretrained folder)."
            )
        return
    if os.path.exists(name) or looks_like_path(name):
        raise ConfigError(f"--{flag} {name}: no such directory. Check the path (a Hub id looks like org/name).")


def check_input_files(data_args) -> None:
    """Every data file named exists (the loaders name lines; this names the flag). A brat folder (one holding
    .ann files) is one too."""
    for flag in SPLIT_FILES.values():
        path = getattr(data_args, flag, None)
        brat = os.path.isdir(path or "") and any(Path(path).glob("*.ann"))
        if path and not os.path.isfile(path) and not brat:
            what = "a directory without .ann files (not a brat folder)" if os.path.isdir(path) else "not found"
            raise ConfigError(f"--{flag} {path}: {what}; give the path of a data file.")


def check_hub_access(training_args, environ: dict[str, str] | None = None) -> None:
    """--push_to_hub needs the Hub: not in offline mode, and a token (HF_TOKEN, the login cache or --hub_token)."""
    if not training_args.push_to_hub:
        return
    environ = os.environ if environ is None else environ
    offline = [name for name in OFFLINE_VARIABLES if truthy(environ.get(name))]
    if offline:
        raise ConfigError(
            f"--push_to_hub while offline mode is on ({', '.join(offline)}=1): unset it to push, or "
            "drop --push_to_hub and upload the output directory later."
        )
    from huggingface_hub import get_token

    if not (training_args.hub_token or get_token()):
        raise ConfigError(
            "--push_to_hub needs a Hub token: run `huggingface-cli login`, set HF_TOKEN, or pass --hub_token."
        )


def validate_job(model_args, data_args, training_args, given: Iterable[str] = ()) -> None:
    """Every check that needs no data and no model; the first problem found is raised."""
    check_finite(model_args, data_args, training_args)
    check_ranges(training_args)
    check_output_dir(training_args.output_dir)
    for flag in ("model_name_or_path", "config_name", "tokenizer_name"):
        check_model_source(flag, getattr(model_args, flag))
    check_input_files(data_args)
    check_hub_access(training_args)
