"""Hyper-parameter search with Optuna: each trial is an ordinary run (train + validation) in its own directory,
scored on the validation metric the run selects checkpoints by; the best setting is then trained into output_dir.

Trials are whole runs through the shared pipeline rather than `Trainer.hyperparameter_search`, so a trial can change
anything a flag can (the LoRA rank, the batch size, the epochs) and writes the same outputs a normal run does. The
study lives in Optuna's storage (utils/training/hp_study.py, whose notes say how), so a killed search resumes and
several processes or machines can share one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from utils.core.arguments import ModelArguments
from utils.core.errors import ConfigError, FinetuneError
from utils.core.files import write_json, write_jsonl
from utils.core.parsing import read_config_file
from utils.training.arguments import FinetuneTrainingArguments
from utils.training.hp_study import (
    ERROR,
    POLL_SECONDS,
    RECORD,
    SLOT,
    SURPLUS,
    WORKER,
    QuietSurplus,
    Surplus,
    best_trial,
    claim_final_training,
    fail_dead_trials,
    holds_slot,
    is_retry,
    mark_claim_finished,
    open_storage,
    open_study,
    retry_callback,
    storage_label,
    study_settings,
    trial_records,
    work_left,
    worker_identity,
    worker_label,
)
from utils.training.trainer import Interrupted

logger = logging.getLogger(__name__)

TRIALS_FILE = "hp_search.jsonl"

BEST_FILE = "hp_search_best.json"

TRIALS_DIR = "hp_search"

#: Flags a trial sets itself; a search space may not vary them.
RESERVED = {
    "output_dir",
    "hp_search_trials",
    "hp_search_space",
    "do_train",
    "do_eval",
    "do_predict",
    "push_to_hub",
    "overwrite_output_dir",
    "resume_from_checkpoint",
    "eval_before_training",
}


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
    argv = [
        *base,
        "--hp_search_trials",
        "0",
        "--output_dir",
        output_dir,
        "--overwrite_output_dir",
        "true",
        "--do_train",
        "true",
        "--do_eval",
        "true",
        "--do_predict",
        "false",
        "--push_to_hub",
        "false",
        "--eval_before_training",
        "false",
    ]
    for name, value in params.items():
        argv += [f"--{name}", flag_value(value)]
    return strip_search_flags(argv)


#: Flags of the search itself: trials and the final run get them stripped, so they never search again.
SEARCH_FLAGS = ("--hp_search_space", "--hp_search_storage", "--hp_search_study_name")


def strip_search_flags(argv: Sequence[str]) -> list[str]:
    """Drop the search's own flags (and their values) so trials and the final run do not search again."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in SEARCH_FLAGS:
            skip = True
            continue
        if arg.startswith(tuple(f"{flag}=" for flag in SEARCH_FLAGS)):
            continue
        out.append(arg)
    return out


def objective_key(args: FinetuneTrainingArguments) -> str:
    metric = args.metric_for_best_model or "loss"
    return metric if metric.startswith("eval_") else f"eval_{metric}"


def prune_trial_dir(directory: str) -> None:
    """Keep a trial's metrics and state; drop its checkpoints and weights (the best setting is retrained)."""
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith("checkpoint-") and os.path.isdir(path):
            shutil.rmtree(path)
        elif name.endswith((".safetensors", ".bin")) or name == "adapter":
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


@dataclass(frozen=True)
class SearchOutcome:
    """What a worker that did not train the best setting hands back (the pipeline reads `results`)."""

    results: dict[str, Any]
    args: FinetuneTrainingArguments


def search(
    argv: Sequence[str],
    model_args: ModelArguments,
    args: FinetuneTrainingArguments,
    known: set[str],
    run_job: Callable[[list[str]], Any],
):
    """Run (or join, or resume) the study's `args.hp_search_trials` trials, then train the best setting once."""
    if args.world_size > 1:
        raise ConfigError(
            "--hp_search_trials runs in a single process: launch it with python, not accelerate or "
            "torchrun (then train the best setting distributed, from hp_search_best.json)."
        )
    dimensions = load_space(args.hp_search_space, model_args, known)
    output_dir = args.output_dir
    os.makedirs(os.path.join(output_dir, TRIALS_DIR), exist_ok=True)
    trials_path = os.path.join(output_dir, TRIALS_FILE)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.hp_search_storage, output_dir)
    space = [dataclasses.asdict(dimension) for dimension in dimensions]
    study = open_study(storage, args.hp_search_study_name, study_settings(args, space))
    n_slots, me = args.hp_search_trials, worker_identity()
    logger.info(
        "Hyper-parameter search: %d trials over %s in study %s (%s)",
        n_slots,
        [d.name for d in dimensions],
        study.study_name,
        storage_label(storage),
    )
    current: dict[str, int] = {}
    quiet = QuietSurplus()

    def objective(trial) -> float:
        current["number"] = trial.number
        trial.set_user_attr(WORKER, me)
        slot = trial.user_attrs.get(SLOT)  # a re-run keeps its slot (and its parameters)
        if slot is None:
            trials = study.get_trials(deepcopy=False)
            frozen = next(t for t in trials if t.number == trial.number)
            # a re-run of a trial killed before it recorded its slot takes the slot of that trial's number
            number = frozen.system_attrs.get("failed_trial", trial.number)
            slot = number - sum(is_retry(t) for t in trials if t.number < number)
            trial.set_user_attr(SLOT, slot)
            if not is_retry(frozen) and sum(holds_slot(t) for t in trials if t.number < trial.number) >= n_slots:
                trial.set_user_attr(SURPLUS, True)
                quiet.numbers.add(trial.number)
                logger.info("Trial %d: another worker took the last slot; given up before training.", trial.number)
                raise Surplus(f"trial {trial.number}: every one of the {n_slots} slots is taken")
        params = {dimension.name: dimension.suggest(trial) for dimension in dimensions}
        directory = os.path.join(output_dir, TRIALS_DIR, f"trial-{trial.number}")
        logger.info("Trial %d (slot %d): %s", trial.number, slot, params)
        started = time.monotonic()
        try:
            outcome = run_job(trial_argv(argv, params, directory))
        except RuntimeError as err:
            trial.set_user_attr(ERROR, str(err).splitlines()[0][:300] if str(err) else type(err).__name__)
            raise
        key = objective_key(outcome.args)
        if key not in outcome.results:
            raise ConfigError(
                f"The search scores trials on {key}, which the run did not report: it needs a "
                "validation split (--validation_file) and a metric it computes."
            )
        value = float(outcome.results[key])
        sign = 1.0 if outcome.args.greater_is_better else -1.0
        record = {
            "trial": trial.number,
            "slot": slot,
            "params": params,
            "metric": key,
            "value": value,
            "wall_seconds": round(time.monotonic() - started, 1),
            "output_dir": directory,
            "worker": worker_label(me),
            "eval": {k: v for k, v in outcome.results.items() if k.startswith("eval_")},
        }
        trial.set_user_attr("value", value)
        trial.set_user_attr(RECORD, record)
        prune_trial_dir(directory)
        return sign * value if math.isfinite(value) else -math.inf

    optuna_log = logging.getLogger("optuna.study._optimize")
    optuna_log.addFilter(quiet)
    try:
        run_slots(study, storage, objective, current, n_slots, output_dir, trials_path)
    finally:
        optuna_log.removeFilter(quiet)
    return train_best(study, storage, argv, args, me, run_job)


def run_slots(
    study,
    storage,
    objective: Callable[[Any], float],
    current: dict[str, int],
    n_slots: int,
    output_dir: str,
    trials_path: str,
) -> None:
    """This worker's part of the search: trials while a slot or a re-run is left, then wait for the other workers'
    last trials (re-running those whose worker dies meanwhile) until every slot has ended."""
    while True:
        current.clear()
        for number in fail_dead_trials(study, storage):  # its directory (if here) keeps no weights
            prune_trial_dir(os.path.join(output_dir, TRIALS_DIR, f"trial-{number}"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # trials of workers elsewhere whose heartbeat stopped
        trials = study.get_trials(deepcopy=False)
        if work_left(trials, n_slots):
            try:
                study.optimize(objective, n_trials=1, catch=(RuntimeError, Surplus))
            except (Interrupted, KeyboardInterrupt):
                stopped = next(
                    (t for t in study.get_trials(deepcopy=False) if t.number == current.get("number")), None
                )
                if stopped is not None and stopped.state == TrialState.FAIL and not stopped.user_attrs.get(SURPLUS):
                    retry_callback()(study, stopped)
                    prune_trial_dir(os.path.join(output_dir, TRIALS_DIR, f"trial-{stopped.number}"))
                write_jsonl(trials_path, trial_records(study.get_trials(deepcopy=False)))
                raise Interrupted(
                    "the search stopped during a trial; run the same command again to resume it (the "
                    "stopped trial is run again from its start)."
                ) from None
            write_jsonl(trials_path, trial_records(study.get_trials(deepcopy=False)))
        elif any(trial.state == TrialState.RUNNING for trial in trials):
            time.sleep(POLL_SECONDS)  # another worker's last trials; one of them may still need a re-run here
        else:
            break


def train_best(
    study,
    storage,
    argv: Sequence[str],
    args: FinetuneTrainingArguments,
    me: Mapping[str, Any],
    run_job: Callable[[list[str]], Any],
):
    """Every slot has ended: the worker that wins the claim trains the best setting; the others say who does."""
    output_dir = args.output_dir
    trials_path = os.path.join(output_dir, TRIALS_FILE)
    trials = study.get_trials(deepcopy=False)
    write_jsonl(trials_path, trial_records(trials))
    best = best_trial(trials)
    if best is None:
        raise FinetuneError(f"Every search trial failed; see the log and {trials_path}.")
    summary = {
        "trial": best.number,
        "slot": best.user_attrs[SLOT],
        "params": best.params,
        "value": best.user_attrs["value"],
        "trials": sum(1 for t in trials if t.state == TrialState.COMPLETE and not t.user_attrs.get(SURPLUS)),
    }
    trained_before = any(n.startswith(f"{study.study_name}/train-best/") for n in optuna.get_all_study_names(storage))
    held = claim_final_training(storage, study.study_name, best.number, me)
    if held is not None:
        holder = worker_label(held.user_attrs.get(WORKER))
        done = "trained" if held.user_attrs.get("finished") else "is training"
        logger.info("Search complete: best trial %d %s; %s %s it.", best.number, best.params, holder, done)
        return SearchOutcome({"hp_search_best_trial": best.number, "hp_search_trained_by": holder}, args)
    write_json(os.path.join(output_dir, BEST_FILE), {**summary, "trained_by": worker_label(me)})
    logger.info("Best trial %d: %s; training it into %s", best.number, best.params, output_dir)
    final = strip_search_flags([*argv, "--hp_search_trials", "0"])
    if trained_before:  # this search's own earlier final run (finished, or died): replace it
        final += ["--overwrite_output_dir", "true"]
    for name, value in best.params.items():
        final += [f"--{name}", flag_value(value)]
    outcome = run_job(final)
    mark_claim_finished(storage, study.study_name, me)
    return outcome
