"""The hyper-parameter search's study in Optuna's storage: the database, the per-slot sampler, the workers, the
re-runs of killed trials and the claim on the final training (utils/training/hp_search.py runs the trials)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from utils.core.errors import ConfigError
from utils.training.arguments import FinetuneTrainingArguments

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------- the study in Optuna's storage
# How the search is shared, resumed and counted (slots, killed trials, seeding, training the best once, outputs), and
# why: docs/hp_search.md, "How the study is kept"; tests/test_hp_search_storage.py holds the code to it.

STUDY_FILE = "hp_search.db"

#: Seconds between a running trial's heartbeats, and of silence after which another worker re-runs the trial.
HEARTBEAT_INTERVAL = 30
GRACE_PERIOD = 120

#: Re-runs of one slot after its worker died; a slot whose worker dies every time (out of memory) is given up.
MAX_RETRIES = 2

#: Openings of the storage tried when workers started together race to create its tables, and what the losers hear.
TABLE_RACE_TRIES = 4
TABLE_RACE_ERRORS = ("already exists", "duplicate key", "unique constraint")

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
        raise ConfigError(
            f"--hp_search_storage {url!r} is not a database URL: give one Optuna's RDBStorage takes, "
            "e.g. sqlite:///path/hp_search.db or postgresql+psycopg2://user:password@host/db."
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    # SQLite serialises writers; wait for the lock (default 5 s) rather than fail a trial when workers write at once
    engine_kwargs = {"connect_args": {"timeout": 60}} if parsed.get_backend_name() == "sqlite" else {}
    try:
        for attempt in range(TABLE_RACE_TRIES - 1):
            try:
                return rdb_storage(url, engine_kwargs)
            except sqlalchemy.exc.DBAPIError as err:
                # Workers started together on an empty database all create Optuna's tables and version row; the
                # losers' CREATE TABLE or INSERT fails ("table studies already exists" on SQLite, a duplicate
                # pg_type key on PostgreSQL). The tables exist then: open it again.
                if not any(text in str(err).lower() for text in TABLE_RACE_ERRORS):
                    raise
                time.sleep(1.0 + attempt)
        return rdb_storage(url, engine_kwargs)
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as err:
        raise ConfigError(
            f"--hp_search_storage {shown}: its database driver is not installed ({err}); for "
            "PostgreSQL: pip install psycopg2-binary."
        ) from None
    except sqlalchemy.exc.SQLAlchemyError as err:
        cause = str(err).splitlines()[0][:200]
        raise ConfigError(
            f"--hp_search_storage {shown}: cannot open the database ({cause}). Check the URL, that the "
            "server runs and that the user may create tables."
        ) from None


def rdb_storage(url: str, engine_kwargs: dict[str, Any]):
    """Optuna's `RDBStorage` with heartbeats, whose silence gets a trial re-run by another worker."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_INTERVAL,
            grace_period=GRACE_PERIOD,
            heartbeat_stale_trial_callback=retry_callback(),
        )


def retry_callback():
    """Optuna's re-run of a stale trial: same parameters and user attributes (the slot), marked as a re-run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRIES)


def study_settings(args: FinetuneTrainingArguments, space: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What makes two commands the same search: a worker or a resume with other settings would mix two searches."""
    settings = {
        "metric_for_best_model": args.metric_for_best_model,
        "greater_is_better": args.greater_is_better,
        "seed": args.seed,
        "space": list(space),
    }
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
        raise ConfigError(
            f"{where} is a study that {'/'.join(d.name.lower() for d in study.directions)}s: not one "
            "of this search (which maximizes); choose another --hp_search_study_name."
        )
    stored = study.user_attrs.get(SETTINGS)
    if stored is None:  # a new study (its creator may not have written them yet: the same flags give the same)
        if study.get_trials(deepcopy=False):
            raise ConfigError(f"{where} holds trials of another program; choose another --hp_search_study_name.")
        study.set_user_attr(SETTINGS, dict(settings))
    elif stored != settings:
        differ = ", ".join(
            f"--{'hp_search_space' if key == 'space' else key} {describe(key, stored.get(key))} "
            f"(now {describe(key, settings[key])})"
            for key in settings
            if stored.get(key) != settings[key]
        )
        raise ConfigError(
            f"{where} was started with other settings: {differ}. Give the same flags to resume or "
            "join it, or choose another --hp_search_study_name."
        )
    return study


def describe(key: str, value: Any) -> str:
    """A setting as the error shows it: a search space as `name low..high [log]` or `name [choices]`."""
    if key != "space" or not isinstance(value, list):
        return repr(value)
    parts = [
        f"{d['name']} {d['choices']}"
        if d.get("choices") is not None
        else f"{d['name']} {d['low']}..{d['high']}{' log' if d.get('log') else ''}"
        for d in value
    ]
    return "; ".join(parts) or "(empty)"


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

    return {
        "host": socket.gethostname(),
        "boot": int(psutil.boot_time()),
        "pid": os.getpid(),
        "started": round(psutil.Process().create_time(), 2),
    }


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
    return any(t.state == TrialState.WAITING for t in trials) or sum(holds_slot(t) for t in trials) < n_slots


def fail_dead_trials(study, storage) -> list[int]:
    """Fail the running trials whose worker on this machine has died, and enqueue their re-runs: what the heartbeat
    does after GRACE_PERIOD, at once (a resumed search then takes up the killed trial first, as it was). Returns the
    numbers of the trials this worker failed.

    A trial that never recorded its worker (killed in the instant between Optuna creating it and the objective's
    first line, maybe before its first heartbeat, which would leave it RUNNING forever and the idle workers waiting)
    counts as dead once it is older than GRACE_PERIOD."""
    retry, failed_numbers = retry_callback(), []
    study_id = storage.get_study_id_from_name(study.study_name)
    long_ago = datetime.datetime.now() - datetime.timedelta(seconds=GRACE_PERIOD)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER)
        if not (is_gone(worker) or (worker is None and trial.datetime_start and trial.datetime_start < long_ago)):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            failed = storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            failed = False  # another worker failed it first, and enqueued the re-run
        if failed:
            logger.warning(
                "Trial %d (slot %s) stopped with its worker %s; it is run again.",
                trial.number,
                trial.user_attrs.get(SLOT),
                worker_label(trial.user_attrs.get(WORKER)),
            )
            retry(study, storage.get_trial(trial_id))
            failed_numbers.append(trial.number)
    return failed_numbers


def trial_records(trials: Sequence[Any]) -> list[dict[str, Any]]:
    """hp_search.jsonl's lines: every finished trial in number order (surplus trials never ran: left out)."""
    reruns = {number: trial.number for trial in trials for number in trial.system_attrs.get("retry_history", [])}
    records = []
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.user_attrs.get(SURPLUS) or not trial.state.is_finished():
            continue
        if trial.state == TrialState.COMPLETE and RECORD in trial.user_attrs:
            records.append(trial.user_attrs[RECORD])
            continue
        record = {
            "trial": trial.number,
            "slot": trial.user_attrs.get(SLOT),
            "state": trial.state.name,
            "params": trial.params,
            "worker": worker_label(trial.user_attrs.get(WORKER)),
        }
        if trial.number in reruns:
            record["error"] = (
                "stopped before it ended (its worker was killed or interrupted); run again as trial "
                f"{reruns[trial.number]}"
            )
        elif ERROR in trial.user_attrs:
            record["error"] = trial.user_attrs[ERROR]
        records.append(record)
    return records


def best_trial(trials: Sequence[Any]):
    """The highest score; ties go to the lowest slot, so a resumed search (whose trial numbers differ) and an
    uninterrupted one name the same trial."""
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE and not trial.user_attrs.get(SURPLUS)]
    return max(complete, key=lambda t: (t.value, -t.user_attrs[SLOT])) if complete else None


def claim_final_training(storage, name: str, best: int, me: Mapping[str, Any]):
    """Claim the training of best trial `best`'s setting: None when this worker won, else the claim study it lost to.
    Creating a study is atomic in the storage (study names are unique), so exactly one worker wins an attempt. A
    study extended with more trials claims again only if its best trial changed."""
    prefix = f"{name}/train-best/trial-{best}/"
    attempts = [
        int(n[len(prefix) :])
        for n in optuna.get_all_study_names(storage)
        if n.startswith(prefix) and n[len(prefix) :].isdigit()
    ]
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


def mark_claim_finished(storage, name: str, me: Mapping[str, Any]) -> None:
    """The best setting is trained: later runs of the command (and workers that join late) train nothing."""
    prefix = f"{name}/train-best/"
    for study_name in optuna.get_all_study_names(storage):
        if study_name.startswith(prefix):
            claim = optuna.load_study(storage=storage, study_name=study_name)
            if claim.user_attrs.get(WORKER) == dict(me):
                claim.set_user_attr("finished", True)
