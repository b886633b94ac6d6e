"""Hyper-parameter search with Optuna: each trial is an ordinary run (train + validation) in its own directory,
scored on the validation metric the run selects checkpoints by; the best setting is then trained into output_dir.

Trials are whole runs through the shared pipeline rather than `Trainer.hyperparameter_search`, so a trial can change
anything a flag can (the LoRA rank, the batch size, the epochs) and writes the same outputs a normal run does.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from utils.core.arguments import ModelArguments
from utils.core.errors import ConfigError, FinetuneError
from utils.core.files import write_json
from utils.core.parsing import read_config_file
from utils.training.arguments import FinetuneTrainingArguments

logger = logging.getLogger(__name__)

TRIALS_FILE = "hp_search.jsonl"

BEST_FILE = "hp_search_best.json"

TRIALS_DIR = "hp_search"

#: Flags a trial sets itself; a search space may not vary them.
RESERVED = {"output_dir", "hp_search_trials", "hp_search_space", "do_train", "do_eval", "do_predict", "push_to_hub",
            "overwrite_output_dir", "resume_from_checkpoint", "eval_before_training"}


@dataclass(frozen=True)
class Dimension:
    """One searched flag: a categorical list of choices, or an int/float range (log-uniform when `log`)."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


def default_space(model_args: ModelArguments) -> dict[str, Any]:
    """Learning rate (around the rate that suits what trains), batch size, epochs, weight decay; LoRA r with PEFT."""
    low, high = (1e-4, 3e-3) if model_args.use_peft else (1e-4, 1e-2) if model_args.train_head_only else (1e-5, 1e-4)
    space: dict[str, Any] = {
        "learning_rate": {"low": low, "high": high, "log": True},
        "per_device_train_batch_size": [16, 32],
        "num_train_epochs": {"low": 1, "high": 4},
        "weight_decay": {"low": 0.0, "high": 0.1},
    }
    if model_args.use_peft:
        space["lora_r"] = [4, 8, 16]
    return space


def parse_space(spec: Mapping[str, Any], known: set[str], source: str) -> list[Dimension]:
    """Check a search-space mapping: known flag names, lists of choices or {low, high[, log]} ranges."""
    if not spec:
        raise ConfigError(f"{source}: the search space is empty.")
    dimensions = []
    for name, value in spec.items():
        where = f"{source}: '{name}'"
        if name not in known:
            raise ConfigError(f"{where} is not an argument of this script.")
        if name in RESERVED:
            raise ConfigError(f"{where} is set by the search itself and cannot be searched.")
        if isinstance(value, list):
            if not value:
                raise ConfigError(f"{where} has an empty list of choices.")
            dimensions.append(Dimension(name, choices=tuple(value)))
            continue
        if isinstance(value, Mapping) and "choices" in value:
            dimensions.append(Dimension(name, choices=tuple(value["choices"])))
            continue
        if not isinstance(value, Mapping) or not {"low", "high"} <= set(value) or set(value) - {"low", "high", "log"}:
            raise ConfigError(f"{where} must be a list of choices or a mapping with low, high (and log: true).")
        low, high = value["low"], value["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low > high:
            raise ConfigError(f"{where}: low and high must be numbers with low <= high, got {low!r} and {high!r}.")
        log = bool(value.get("log", False))
        if log and low <= 0:
            raise ConfigError(f"{where}: a log range needs low > 0, got {low}.")
        integer = isinstance(low, int) and isinstance(high, int)
        dimensions.append(Dimension(name, low=low, high=high, log=log, integer=integer))
    return dimensions


def load_space(path: str | None, model_args: ModelArguments, known: set[str]) -> list[Dimension]:
    if path is None:
        return parse_space(default_space(model_args), known, "the default search space")
    spec = read_config_file(path)
    return parse_space(spec, known, path)


def flag_value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def trial_argv(base: Sequence[str], params: Mapping[str, Any], output_dir: str) -> list[str]:
    """The user's command with this trial's settings: training and validation only, in the trial's directory."""
    argv = [*base, "--hp_search_trials", "0", "--output_dir", output_dir, "--overwrite_output_dir", "true",
            "--do_train", "true", "--do_eval", "true", "--do_predict", "false", "--push_to_hub", "false",
            "--eval_before_training", "false"]
    for name, value in params.items():
        argv += [f"--{name}", flag_value(value)]
    return strip_search_flags(argv)


def strip_search_flags(argv: Sequence[str]) -> list[str]:
    """Drop --hp_search_space (and its value) so trials and the final run do not search again."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--hp_search_space":
            skip = True
            continue
        if arg.startswith("--hp_search_space="):
            continue
        out.append(arg)
    return out


def objective_key(args: FinetuneTrainingArguments) -> str:
    metric = args.metric_for_best_model or "loss"
    return metric if metric.startswith("eval_") else f"eval_{metric}"


def prune_trial_dir(directory: str) -> None:
    """Keep a trial's metrics and state; drop its checkpoints and weights (the best setting is retrained)."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith("checkpoint-") and os.path.isdir(path):
            shutil.rmtree(path)
        elif name.endswith((".safetensors", ".bin")) or name == "adapter":
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def search(argv: Sequence[str], model_args: ModelArguments, args: FinetuneTrainingArguments, known: set[str],
           run_job: Callable[[list[str]], Any]):
    """Run `args.hp_search_trials` Optuna trials, log each to hp_search.jsonl, then train the best setting."""
    import optuna

    if args.world_size > 1:
        raise ConfigError("--hp_search_trials runs in a single process: launch it with python, not accelerate or "
                          "torchrun (then train the best setting distributed, from hp_search_best.json).")
    dimensions = load_space(args.hp_search_space, model_args, known)
    output_dir = args.output_dir
    os.makedirs(os.path.join(output_dir, TRIALS_DIR), exist_ok=True)
    trials_path = os.path.join(output_dir, TRIALS_FILE)
    open(trials_path, "w", encoding="utf-8").close()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed))
    logger.info("Hyper-parameter search: %d trials over %s", args.hp_search_trials, [d.name for d in dimensions])

    def objective(trial) -> float:
        params = {dimension.name: dimension.suggest(trial) for dimension in dimensions}
        directory = os.path.join(output_dir, TRIALS_DIR, f"trial-{trial.number}")
        logger.info("Trial %d: %s", trial.number, params)
        started = time.monotonic()
        outcome = run_job(trial_argv(argv, params, directory))
        key = objective_key(outcome.args)
        if key not in outcome.results:
            raise ConfigError(f"The search scores trials on {key}, which the run did not report: it needs a "
                              "validation split (--validation_file) and a metric it computes.")
        value = float(outcome.results[key])
        sign = 1.0 if outcome.args.greater_is_better else -1.0
        record = {"trial": trial.number, "params": params, "metric": key, "value": value,
                  "wall_seconds": round(time.monotonic() - started, 1), "output_dir": directory,
                  "eval": {k: v for k, v in outcome.results.items() if k.startswith("eval_")}}
        trial.set_user_attr("value", value)
        with open(trials_path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
        prune_trial_dir(directory)
        return sign * value if math.isfinite(value) else -math.inf

    study.optimize(objective, n_trials=args.hp_search_trials, catch=(RuntimeError,))
    finished = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise FinetuneError(f"Every search trial failed; see the log and {trials_path}.")
    best = study.best_trial
    write_json(os.path.join(output_dir, BEST_FILE), {"trial": best.number, "params": best.params,
                                                      "value": best.user_attrs["value"], "trials": len(study.trials)})
    logger.info("Best trial %d: %s; training it into %s", best.number, best.params, output_dir)
    final = strip_search_flags([*argv, "--hp_search_trials", "0"])
    for name, value in best.params.items():
        final += [f"--{name}", flag_value(value)]
    return run_job(final)
