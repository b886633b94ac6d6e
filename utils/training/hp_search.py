"""Hyper-parameter search with Optuna: each trial is an ordinary run (train + validation) in its own directory,
scored on the validation metric the run selects checkpoints by; the best setting is then trained into output_dir.

Trials are whole runs through the shared pipeline rather than `Trainer.hyperparameter_search`, so a trial can change
anything a flag can (the LoRA rank, the batch size, the epochs) and writes the same outputs a normal run does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from utils.core.arguments import ModelArguments
from utils.core.errors import ConfigError, FinetuneError
from utils.core.files import write_json, write_jsonl
from utils.core.parsing import read_config_file
from utils.training.arguments import FinetuneTrainingArguments
from utils.training.trainer import Interrupted

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


# ---------------------------------------------------------------- the study in Optuna's storage
#
# How the search is shared, resumed and counted (the tests in tests/test_hp_search_storage.py hold it to this):
#
# * Slots. `--hp_search_trials N` means N slots, each run to an end exactly once (COMPLETE, or FAIL by an error of
#   its own). A new trial's slot is its trial number minus the re-runs numbered before it: trial numbers are handed
#   out atomically by the storage, and a re-run is marked as one from its creation, so no two trials share a slot.
#   A new trial holds its slot when fewer than N trials numbered before it hold one; otherwise it is a worker that
#   lost the race for the last slot (it looked, saw one free, and another took it), and gives the trial up (FAIL,
#   "surplus") before training anything. A trial not yet marked counts as holding, which can only make a later
#   trial give up, never two hold one slot too many; a worker asks again while fewer than N hold a slot. Optuna's
#   `MaxTrialsCallback` is not used: it counts finished trials after the fact, so every worker that starts a trial
#   while N-1 are done runs one too many, and a killed trial would count as nothing or as a finished one.
# * Killed trials. A trial whose worker died stays RUNNING in the storage. A worker fails it (one storage update,
#   which only one worker can win) and Optuna's `RetryHeartbeatStaleTrialCallback` enqueues a re-run with the same
#   parameters and slot: at once when the worker ran on this machine and its process is gone, otherwise when its
#   heartbeat (`RDBStorage(heartbeat_interval=...)`) has been silent for GRACE_PERIOD seconds. Re-runs are taken
#   before new slots (Optuna pops waiting trials first), so a resumed search sees the history an uninterrupted
#   one saw.
# * Seeding. Each slot gets its own `TPESampler` seeded from (--seed, slot), so what a slot samples depends only on
#   its number and the finished trials before it, not on how many samples this process drew before (a resumed
#   process starts with a fresh sampler, and a slot's re-run reuses its parameters). One worker, killed and resumed,
#   therefore reaches the same trials and the same best trial as an uninterrupted run. Several workers sample from
#   whatever has finished when they start a slot, as any parallel search does (`constant_liar` keeps them from
#   sampling next to each other's running trials once TPE leaves its random start-up trials).
# * Training the best once. Workers wait until every slot has ended (failing and re-running dead workers' trials
#   meanwhile), then each tries to create a small claim study "<name>/train-best/trial-<best>/<attempt>": study
#   names are unique in the storage, so exactly one creation succeeds (the storage's own atomic operation rather
#   than a lock file, which would not reach other machines). The winner writes hp_search_best.json and trains the
#   best setting into its --output_dir; the others log who trains it and exit. A claim whose worker died on this
#   machine before finishing is taken over with the next attempt; a study extended by a larger N claims again only
#   if its best trial changed.
# * Outputs. Each trial writes only its own directory (hp_search/trial-NUMBER, numbers are unique); its record
#   goes into the storage, and hp_search.jsonl is rewritten atomically from the storage after every trial, so
#   workers sharing an output_dir never write half a file and the last rewrite holds every trial.

STUDY_FILE = "hp_search.db"

#: Seconds between a running trial's heartbeats, and of silence after which another worker re-runs the trial.
HEARTBEAT_INTERVAL = 30
GRACE_PERIOD = 120

#: Re-runs of one slot after its worker died; a slot whose worker dies every time (out of memory) is given up.
MAX_RETRIES = 2

#: Openings of the storage tried when workers started together race to create its tables.
TABLE_RACE_TRIES = 4

#: Seconds an idle worker waits between looks at other workers' running trials.
POLL_SECONDS = 2.0

SLOT, WORKER, RECORD, SURPLUS, ERROR = "slot", "worker", "record", "surplus", "error"

SETTINGS = "finetune_kit_settings"


class Surplus(Exception):
    """A trial asked for after the last slot was taken by another worker: given up before any training."""


class QuietSurplus(logging.Filter):
    """Optuna logs a given-up surplus trial as a failure, with a traceback; here it is the expected end of a race
    between workers (this worker logs it in one line), so those records are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.numbers: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(f"Trial {number} failed ") for number in self.numbers)


@dataclass(frozen=True)
class SearchOutcome:
    """What a worker that did not train the best setting hands back (the pipeline reads `results`)."""

    results: dict[str, Any]
    args: FinetuneTrainingArguments


def default_storage_url(output_dir: str) -> str:
    return f"sqlite:///{os.path.abspath(os.path.join(output_dir, STUDY_FILE))}"


def open_storage(url: str | None, output_dir: str):
    """Optuna's `RDBStorage` with heartbeats; a URL it cannot use is one `ConfigError` naming the flag."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    url = url or default_storage_url(output_dir)
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"--hp_search_storage {url!r} is not a database URL: give one Optuna's RDBStorage takes, "
                          "e.g. sqlite:///path/hp_search.db or postgresql+psycopg2://user:password@host/db.") from None
    shown = parsed.render_as_string(hide_password=True)
    # SQLite serialises writers; wait for the lock (default 5 s) rather than fail a trial when workers write at once
    engine_kwargs = {"connect_args": {"timeout": 60}} if parsed.get_backend_name() == "sqlite" else {}
    try:
        for attempt in range(TABLE_RACE_TRIES - 1):
            try:
                return rdb_storage(url, engine_kwargs)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as err:
                # Workers started together on an empty database all create Optuna's tables; on PostgreSQL the
                # losers' CREATE TABLE fails (duplicate pg_type entry). The tables exist then: open it again.
                if not any(text in str(err) for text in ("already exists", "duplicate key")):
                    raise
                time.sleep(1.0 + attempt)
        return rdb_storage(url, engine_kwargs)
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as err:
        raise ConfigError(f"--hp_search_storage {shown}: its database driver is not installed ({err}); for "
                          "PostgreSQL: pip install psycopg2-binary.") from None
    except sqlalchemy.exc.SQLAlchemyError as err:
        cause = str(err).splitlines()[0][:200]
        raise ConfigError(f"--hp_search_storage {shown}: cannot open the database ({cause}). Check the URL, that the "
                          "server runs and that the user may create tables.") from None


def rdb_storage(url: str, engine_kwargs: dict[str, Any]):
    """Optuna's `RDBStorage` with heartbeats, whose silence gets a trial re-run by another worker."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_INTERVAL,
                                          grace_period=GRACE_PERIOD, heartbeat_stale_trial_callback=retry_callback())


def retry_callback():
    """Optuna's re-run of a stale trial: same parameters and user attributes (the slot), marked as a re-run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRIES)


def study_settings(args: FinetuneTrainingArguments, dimensions: Sequence[Dimension]) -> dict[str, Any]:
    """What makes two commands the same search: a worker or a resume with other settings would mix two searches."""
    settings = {"metric_for_best_model": args.metric_for_best_model, "greater_is_better": args.greater_is_better,
                "seed": args.seed, "space": [dataclasses.asdict(dimension) for dimension in dimensions]}
    return json.loads(json.dumps(settings))  # as the storage gives it back (tuples as lists)


def open_study(storage, name: str, settings: Mapping[str, Any]):
    """Create the study, or join the one of that name, refusing one made for another search."""
    where = f"--hp_search_study_name {name} in --hp_search_storage {storage_label(storage)}"
    sampler = SlotSampler(int(settings["seed"]))
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name, sampler=sampler)
    if len(study.directions) != 1 or study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"{where} is a study that {'/'.join(d.name.lower() for d in study.directions)}s: not one "
                          "of this search (which maximizes); choose another --hp_search_study_name.")
    stored = study.user_attrs.get(SETTINGS)
    if stored is None:  # a new study (its creator may not have written them yet: the same flags give the same)
        if study.get_trials(deepcopy=False):
            raise ConfigError(f"{where} holds trials of another program; choose another --hp_search_study_name.")
        study.set_user_attr(SETTINGS, dict(settings))
    elif stored != settings:
        differ = ", ".join(f"{key} {stored.get(key)!r} (now {settings[key]!r})" for key in settings
                           if stored.get(key) != settings[key])
        raise ConfigError(f"{where} was started with other settings: {differ}. Give the same flags to resume or "
                          "join it, or choose another --hp_search_study_name.")
    return study


def storage_label(storage) -> str:
    from sqlalchemy.engine import make_url

    return make_url(storage.url).render_as_string(hide_password=True)


def slot_seed(seed: int, slot: int) -> int:
    """A well-mixed seed for one slot (seed + slot would give neighbouring searches overlapping streams)."""
    import numpy

    return int(numpy.random.SeedSequence([seed, slot]).generate_state(1)[0])


class SlotSampler(optuna.samplers.BaseSampler):
    """TPE with one sampler per slot, seeded from (seed, slot): the n-th slot's suggestions depend on n and the
    finished trials only, never on what this process sampled before (see the notes above)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._samplers: dict[int, Any] = {}

    def for_slot(self, slot: int):
        if slot not in self._samplers:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._samplers[slot] = optuna.samplers.TPESampler(seed=slot_seed(self.seed, slot), constant_liar=True)
        return self._samplers[slot]

    def infer_relative_search_space(self, study, trial) -> dict[str, Any]:
        return {}  # independent sampling, as TPE's default (multivariate=False)

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def sample_independent(self, study, trial, param_name: str, param_distribution) -> Any:
        sampler = self.for_slot(trial.user_attrs[SLOT])  # set by the objective before its first suggestion
        return sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        if trial.user_attrs.get(SLOT) in self._samplers:
            self._samplers.pop(trial.user_attrs[SLOT]).after_trial(study, trial, state, values)


def worker_identity() -> dict[str, Any]:
    """This process, told apart from a later one with the same pid (its start time) and from another machine
    (host name and boot time, as containers may share a host name)."""
    import psutil

    return {"host": socket.gethostname(), "boot": int(psutil.boot_time()), "pid": os.getpid(),
            "started": round(psutil.Process().create_time(), 2)}


def worker_label(worker: Mapping[str, Any] | None) -> str:
    return f"{worker['host']}:{worker['pid']}" if worker else "another worker"


def is_gone(worker: Mapping[str, Any] | None) -> bool:
    """Whether a worker ran on this machine and its process has ended. Workers elsewhere: unknown (False); their
    trials are re-run when their heartbeat stops instead."""
    import psutil

    here = worker_identity()
    if not worker or (worker.get("host"), worker.get("boot")) != (here["host"], here["boot"]):
        return False
    try:
        return abs(psutil.Process(worker["pid"]).create_time() - worker["started"]) > 1.0
    except psutil.Error:
        return True


def is_retry(trial) -> bool:
    return "failed_trial" in trial.system_attrs  # set by RetryHeartbeatStaleTrialCallback when it enqueues


def holds_slot(trial) -> bool:
    """A new trial not given up as surplus (yet): it runs its slot (a re-run runs the slot of the trial it repeats)."""
    return not is_retry(trial) and not trial.user_attrs.get(SURPLUS)


def work_left(trials: Sequence[Any], n_slots: int) -> bool:
    """A re-run waits, or fewer than n_slots trials hold a slot."""
    from optuna.trial import TrialState

    return any(t.state == TrialState.WAITING for t in trials) or sum(holds_slot(t) for t in trials) < n_slots


def fail_dead_trials(study, storage, output_dir: str) -> None:
    """Fail the running trials whose worker on this machine has died, and enqueue their re-runs: what the heartbeat
    does after GRACE_PERIOD, at once (a resumed search then takes up the killed trial first, as it was)."""
    from optuna.trial import TrialState

    retry = retry_callback()
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_gone(trial.user_attrs.get(WORKER)):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            failed = storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            failed = False  # another worker failed it first, and enqueued the re-run
        if failed:
            logger.warning("Trial %d (slot %s) stopped with its worker %s; it is run again.", trial.number,
                           trial.user_attrs.get(SLOT), worker_label(trial.user_attrs.get(WORKER)))
            retry(study, storage.get_trial(trial_id))
            directory = os.path.join(output_dir, TRIALS_DIR, f"trial-{trial.number}")
            if os.path.isdir(directory):
                prune_trial_dir(directory)


def trial_records(trials: Sequence[Any]) -> list[dict[str, Any]]:
    """hp_search.jsonl's lines: every finished trial in number order (surplus trials never ran: left out)."""
    from optuna.trial import TrialState

    reruns = {number: trial.number for trial in trials for number in trial.system_attrs.get("retry_history", [])}
    records = []
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.user_attrs.get(SURPLUS) or not trial.state.is_finished():
            continue
        if trial.state == TrialState.COMPLETE and RECORD in trial.user_attrs:
            records.append(trial.user_attrs[RECORD])
            continue
        record = {"trial": trial.number, "slot": trial.user_attrs.get(SLOT), "state": trial.state.name,
                  "params": trial.params, "worker": worker_label(trial.user_attrs.get(WORKER))}
        if trial.number in reruns:
            record["error"] = ("stopped before it ended (its worker was killed or interrupted); run again as trial "
                               f"{reruns[trial.number]}")
        elif ERROR in trial.user_attrs:
            record["error"] = trial.user_attrs[ERROR]
        records.append(record)
    return records


def best_trial(trials: Sequence[Any]):
    """The highest score; ties go to the lowest slot, so a resumed search (whose trial numbers differ) and an
    uninterrupted one name the same trial."""
    from optuna.trial import TrialState

    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE and not trial.user_attrs.get(SURPLUS)]
    return max(complete, key=lambda t: (t.value, -t.user_attrs[SLOT])) if complete else None


def claim_final_training(storage, name: str, best: int, me: Mapping[str, Any]):
    """Claim the training of best trial `best`'s setting: None when this worker won, else the claim study it lost to.
    Creating a study is atomic in the storage (study names are unique), so exactly one worker wins an attempt. A
    study extended with more trials claims again only if its best trial changed."""
    prefix = f"{name}/train-best/trial-{best}/"
    attempts = [int(n[len(prefix):]) for n in optuna.get_all_study_names(storage)
                if n.startswith(prefix) and n[len(prefix):].isdigit()]
    attempt = max(attempts, default=-1) + 1
    if attempts:
        held = optuna.load_study(storage=storage, study_name=f"{prefix}{attempt - 1}")
        if held.user_attrs.get("finished") or not is_gone(held.user_attrs.get(WORKER)):
            return held
    try:
        claim = optuna.create_study(storage=storage, study_name=f"{prefix}{attempt}")
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(storage=storage, study_name=f"{prefix}{attempt}")
    claim.set_user_attr(WORKER, dict(me))
    return None


def search(argv: Sequence[str], model_args: ModelArguments, args: FinetuneTrainingArguments, known: set[str],
           run_job: Callable[[list[str]], Any]):
    """Run (or join, or resume) the study's `args.hp_search_trials` trials, then train the best setting once."""
    if args.world_size > 1:
        raise ConfigError("--hp_search_trials runs in a single process: launch it with python, not accelerate or "
                          "torchrun (then train the best setting distributed, from hp_search_best.json).")
    dimensions = load_space(args.hp_search_space, model_args, known)
    output_dir = args.output_dir
    os.makedirs(os.path.join(output_dir, TRIALS_DIR), exist_ok=True)
    trials_path = os.path.join(output_dir, TRIALS_FILE)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.hp_search_storage, output_dir)
    study = open_study(storage, args.hp_search_study_name, study_settings(args, dimensions))
    n_slots, me = args.hp_search_trials, worker_identity()
    logger.info("Hyper-parameter search: %d trials over %s in study %s (%s)", n_slots,
                [d.name for d in dimensions], study.study_name, storage_label(storage))
    current: dict[str, int] = {}
    quiet = QuietSurplus()

    def objective(trial) -> float:
        current["number"] = trial.number
        slot = trial.user_attrs.get(SLOT)  # a re-run keeps its slot (and its parameters)
        if slot is None:
            earlier = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
            slot = trial.number - sum(is_retry(t) for t in earlier)
            trial.set_user_attr(SLOT, slot)
            if sum(holds_slot(t) for t in earlier) >= n_slots:
                trial.set_user_attr(SURPLUS, True)
                quiet.numbers.add(trial.number)
                logger.info("Trial %d: another worker took the last slot; given up before training.", trial.number)
                raise Surplus(f"trial {trial.number}: every one of the {n_slots} slots is taken")
        trial.set_user_attr(WORKER, me)
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
            raise ConfigError(f"The search scores trials on {key}, which the run did not report: it needs a "
                              "validation split (--validation_file) and a metric it computes.")
        value = float(outcome.results[key])
        sign = 1.0 if outcome.args.greater_is_better else -1.0
        record = {"trial": trial.number, "slot": slot, "params": params, "metric": key, "value": value,
                  "wall_seconds": round(time.monotonic() - started, 1), "output_dir": directory,
                  "worker": worker_label(me),
                  "eval": {k: v for k, v in outcome.results.items() if k.startswith("eval_")}}
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


def run_slots(study, storage, objective: Callable[[Any], float], current: dict[str, int], n_slots: int,
              output_dir: str, trials_path: str) -> None:
    """This worker's part of the search: trials while a slot or a re-run is left, then wait for the other workers'
    last trials (re-running those whose worker dies meanwhile) until every slot has ended."""
    from optuna.trial import TrialState

    while True:
        current.clear()
        fail_dead_trials(study, storage, output_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # trials of workers elsewhere whose heartbeat stopped
        trials = study.get_trials(deepcopy=False)
        if work_left(trials, n_slots):
            try:
                study.optimize(objective, n_trials=1, catch=(RuntimeError, Surplus))
            except (Interrupted, KeyboardInterrupt):
                stopped = next((t for t in study.get_trials(deepcopy=False) if t.number == current.get("number")),
                               None)
                if stopped is not None and stopped.state == TrialState.FAIL and not stopped.user_attrs.get(SURPLUS):
                    retry_callback()(study, stopped)
                write_jsonl(trials_path, trial_records(study.get_trials(deepcopy=False)))
                raise Interrupted("the search stopped during a trial; run the same command again to resume it (the "
                                  "stopped trial is run again from its start).") from None
            write_jsonl(trials_path, trial_records(study.get_trials(deepcopy=False)))
        elif any(trial.state == TrialState.RUNNING for trial in trials):
            time.sleep(POLL_SECONDS)  # another worker's last trials; one of them may still need a re-run here
        else:
            break


def train_best(study, storage, argv: Sequence[str], args: FinetuneTrainingArguments, me: Mapping[str, Any],
               run_job: Callable[[list[str]], Any]):
    """Every slot has ended: the worker that wins the claim trains the best setting; the others say who does."""
    from optuna.trial import TrialState

    output_dir = args.output_dir
    trials_path = os.path.join(output_dir, TRIALS_FILE)
    trials = study.get_trials(deepcopy=False)
    write_jsonl(trials_path, trial_records(trials))
    best = best_trial(trials)
    if best is None:
        raise FinetuneError(f"Every search trial failed; see the log and {trials_path}.")
    summary = {"trial": best.number, "slot": best.user_attrs[SLOT], "params": best.params,
               "value": best.user_attrs["value"], "trials": sum(1 for t in trials if t.state == TrialState.COMPLETE
                                                                and not t.user_attrs.get(SURPLUS))}
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


def mark_claim_finished(storage, name: str, me: Mapping[str, Any]) -> None:
    prefix = f"{name}/train-best/"
    for study_name in optuna.get_all_study_names(storage):
        if study_name.startswith(prefix):
            claim = optuna.load_study(storage=storage, study_name=study_name)
            if claim.user_attrs.get(WORKER) == dict(me):
                claim.set_user_attr("finished", True)
