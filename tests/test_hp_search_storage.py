"""The hyper-parameter search on Optuna's storage: bad storage or study flags are one clear error before any work;
slots are counted across workers and resumes; a search stopped or killed mid-trial resumes to the trials and best
trial of an uninterrupted one; two worker processes share one SQLite study, run no trial twice and train the best
setting once."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from optuna.trial import TrialState

import run_ner
from tests.conftest import ROOT
from tests.test_tuning import ner_args
from utils.core.arguments import ModelArguments
from utils.core.errors import ConfigError
from utils.training import hp_search, hp_study
from utils.training.arguments import FinetuneTrainingArguments
from utils.training.hp_search import search
from utils.training.hp_study import SLOT, SURPLUS, slot_seed
from utils.training.trainer import Interrupted

SPACE = "learning_rate: {low: 0.0001, high: 0.01, log: true}\nweight_decay: {low: 0.0, high: 0.1}\n"


def ner_search_args(model: str, output_dir: Path, space: str, trials: int) -> list[str]:
    """The NER sample, a few examples, one epoch of 3 steps per trial: seconds per trial with the tiny model."""
    return ner_args(model, output_dir, "--hp_search_trials", str(trials), "--hp_search_space", space)


def load(output_dir: Path, name: str = "hp_search") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{output_dir / 'hp_search.db'}")


def by_slot(study: optuna.Study) -> dict[int, tuple[dict, float]]:
    """Each slot's parameters and score, from its one COMPLETE trial (an error if a slot finished twice)."""
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    slots = [t.user_attrs[SLOT] for t in complete]
    assert len(slots) == len(set(slots)), f"a slot ran to the end twice: {sorted(slots)}"
    return {t.user_attrs[SLOT]: (t.params, t.user_attrs["value"]) for t in complete}


def records(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "hp_search.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- flags checked before any work


def test_bad_storage_and_foreign_studies_are_one_clear_error(tiny_model, tmp_path, write_file):
    space = write_file("space.yaml", SPACE)
    out = tmp_path / "search"
    for storage, message in [
        ("not a url", r"--hp_search_storage 'not a url' is not a database URL"),
        (
            "nosuchdb+nodriver://user:secret@host/db",
            r"--hp_search_storage nosuchdb\+nodriver://user:\*\*\*@host/db: its database driver",
        ),
    ]:
        with pytest.raises(ConfigError, match=message):
            run_ner.main([*ner_search_args(tiny_model, out, space, 2), "--hp_search_storage", storage])
    assert not (out / "hp_search").exists() or not any((out / "hp_search").iterdir())  # nothing ran
    # a study of this name that minimizes, or one started with another seed, is not this search's
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(storage=storage, study_name="other", direction="minimize")
    with pytest.raises(
        ConfigError,
        match=r"--hp_search_study_name other in --hp_search_storage .* is a study that "
        r"minimizes: not one of this search",
    ):
        run_ner.main(
            [
                *ner_search_args(tiny_model, out, space, 2),
                "--hp_search_storage",
                storage,
                "--hp_search_study_name",
                "other",
            ]
        )
    study = optuna.create_study(storage=storage, study_name="mine", direction="maximize")
    study.set_user_attr(
        "finetune_kit_settings", {"metric_for_best_model": None, "greater_is_better": None, "seed": 7, "space": []}
    )
    with pytest.raises(
        ConfigError,
        match=r"was started with other settings: --seed 7 \(now 42\), --hp_search_space "
        r"\(empty\) \(now learning_rate 0.0001..0.01 log; weight_decay 0.0..0.1\)\. "
        r"Give the same flags",
    ):
        run_ner.main(
            [
                *ner_search_args(tiny_model, out, space, 2),
                "--hp_search_storage",
                storage,
                "--hp_search_study_name",
                "mine",
            ]
        )
    assert [t for t in optuna.load_study(study_name="mine", storage=storage).trials] == []
    with pytest.raises(ConfigError, match="--hp_search_storage needs --hp_search_trials N"):
        FinetuneTrainingArguments(output_dir=str(out), hp_search_storage=storage)


def test_workers_that_race_to_create_the_tables_open_the_storage_again(tmp_path, monkeypatch):
    """Two workers started together on an empty database both create Optuna's tables; the loser's CREATE TABLE fails
    ("table studies already exists" on SQLite, a duplicate key on PostgreSQL) and it opens the storage again. Any
    other database error is one ConfigError at once."""
    import sqlalchemy

    opened, real = [], hp_study.rdb_storage

    def racing(url, engine_kwargs):
        opened.append(url)
        if len(opened) == 1:
            raise sqlalchemy.exc.OperationalError(
                "CREATE TABLE studies", {}, Exception("table studies already exists")
            )
        return real(url, engine_kwargs)

    monkeypatch.setattr(hp_study, "rdb_storage", racing)
    monkeypatch.setattr(hp_study.time, "sleep", lambda seconds: None)
    assert hp_study.storage_label(hp_study.open_storage(None, str(tmp_path))) == f"sqlite:///{tmp_path}/hp_search.db"
    assert len(opened) == 2

    def broken(url, engine_kwargs):
        opened.append(url)
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("disk I/O error"))

    monkeypatch.setattr(hp_study, "rdb_storage", broken)
    with pytest.raises(ConfigError, match=r"--hp_search_storage sqlite:///.*: cannot open the database .*disk I/O"):
        hp_study.open_storage(None, str(tmp_path))
    assert len(opened) == 3


# ---------------------------------------------------------------- slots and seeding, on a stand-in for training


class FakeJobs:
    """Stands in for the training runs: a trial's score is a fixed function of its settings (plus 10 for the trial
    `boost` names), after `seconds`; it can stop (as Ctrl-C does) when trial `stop_in` starts. Records every run and
    the final training's settings."""

    def __init__(self, stop_in: str | None = None, boost: str | None = None, seconds: float = 0.0) -> None:
        self.stop_in, self.boost, self.seconds, self.final, self.calls = stop_in, boost, seconds, [], []

    def __call__(self, argv: list[str]):
        flags = {argv[i][2:]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
        self.calls.append(flags["output_dir"])
        if self.stop_in and flags["output_dir"].endswith(self.stop_in):
            raise KeyboardInterrupt
        time.sleep(self.seconds)  # (two workers' trials overlap)
        if "hp_search/trial-" not in flags["output_dir"]:
            self.final.append({name: value for name, value in flags.items() if name != "output_dir"})
        rate, decay, epochs = (
            float(flags["learning_rate"]),
            float(flags["weight_decay"]),
            int(flags["num_train_epochs"]),
        )
        score = 1.0 - (torch.tensor(rate).log10().item() + 4.3) ** 2 - decay + 0.01 * epochs
        score += 10.0 if self.boost and flags["output_dir"].endswith(self.boost) else 0.0
        return SimpleNamespace(
            results={"eval_f1": score}, args=SimpleNamespace(metric_for_best_model="f1", greater_is_better=True)
        )


def fake_search(output_dir: Path, jobs: FakeJobs, trials: int = 12, storage: str | None = None):
    argv = ["--output_dir", str(output_dir), "--hp_search_trials", str(trials)]
    args = FinetuneTrainingArguments(
        output_dir=str(output_dir), hp_search_trials=trials, seed=42, hp_search_storage=storage
    )
    known = {"learning_rate", "per_device_train_batch_size", "num_train_epochs", "weight_decay", "output_dir"}
    return search(argv, ModelArguments(), args, known, jobs)


def test_a_stopped_search_resumes_to_the_trials_of_an_uninterrupted_one(tmp_path):
    """12 slots, past TPE's 10 random start-up trials, so the last two are sampled from the history: a search stopped
    in slot 5 and run again reaches the same 12 (settings, score) pairs and trains the same best setting."""
    whole = FakeJobs()
    fake_search(tmp_path / "whole", whole)
    stopped = FakeJobs(stop_in="trial-5")
    with pytest.raises(Interrupted, match="run the same command again to resume it"):
        fake_search(tmp_path / "resumed", stopped)
    assert stopped.final == []
    assert [(r["trial"], r.get("state")) for r in records(tmp_path / "resumed")] == [
        (0, None),
        (1, None),
        (2, None),
        (3, None),
        (4, None),
        (5, "FAIL"),
    ]
    resumed = FakeJobs()
    fake_search(tmp_path / "resumed", resumed)
    expected, got = by_slot(load(tmp_path / "whole")), by_slot(load(tmp_path / "resumed"))
    assert sorted(got) == list(range(12)) and got == expected
    # trial 5 (slot 5) failed when stopped and was run again first, as trial 6, with the same slot
    study = load(tmp_path / "resumed")
    assert [(t.number, t.state, t.user_attrs[SLOT]) for t in study.trials[4:8]] == [
        (4, TrialState.COMPLETE, 4),
        (5, TrialState.FAIL, 5),
        (6, TrialState.COMPLETE, 5),
        (7, TrialState.COMPLETE, 6),
    ]
    assert whole.final == resumed.final and len(whole.final) == 1
    best = json.loads((tmp_path / "resumed" / "hp_search_best.json").read_text())
    assert best["slot"] == json.loads((tmp_path / "whole" / "hp_search_best.json").read_text())["slot"]
    assert best["trials"] == 12 and float(resumed.final[0]["learning_rate"]) == best["params"]["learning_rate"]
    assert [r["trial"] for r in records(tmp_path / "resumed")] == list(range(13))
    assert records(tmp_path / "resumed")[5]["error"] == (
        "stopped before it ended (its worker was killed or interrupted); run again as trial 6"
    )
    # running the finished search's command again trains nothing: the best setting is already trained
    again = FakeJobs()
    assert fake_search(tmp_path / "resumed", again).results["hp_search_best_trial"] == best["trial"]
    assert again.final == [] and len(load(tmp_path / "resumed").trials) == 13
    # the slots' seeds are fixed functions of (seed, slot), distinct for neighbouring seeds and slots
    assert slot_seed(42, 1) == slot_seed(42, 1) and len({slot_seed(s, n) for s in (42, 43) for n in range(3)}) == 6


def test_a_worker_that_loses_the_race_for_the_last_slot_trains_nothing(tmp_path, monkeypatch, caplog):
    """Between a worker's look at the free slots and its trial, another worker may take the last one: the trial it
    gets is given up before training (simulated: the first look after 3 trials says a slot is free)."""
    caplog.set_level(logging.INFO, logger="utils.training.hp_search")
    out = tmp_path / "search"
    looks, work_left = [], hp_search.work_left

    def racing_work_left(trials, n_slots):
        looks.append(len(trials))
        return len(trials) == 3 or work_left(trials, n_slots)

    monkeypatch.setattr(hp_search, "work_left", racing_work_left)
    jobs = FakeJobs()
    fake_search(out, jobs, trials=3)
    monkeypatch.undo()
    study = load(out)
    assert [(t.number, t.state, t.user_attrs[SLOT], t.user_attrs.get(SURPLUS)) for t in study.trials] == [
        (0, TrialState.COMPLETE, 0, None),
        (1, TrialState.COMPLETE, 1, None),
        (2, TrialState.COMPLETE, 2, None),
        (3, TrialState.FAIL, 3, True),
    ]
    assert study.trials[3].params == {} and looks == [0, 1, 2, 3, 4]
    # one line says so; Optuna's failure warning (with a traceback) for it is dropped
    assert [r.getMessage() for r in caplog.records if "Trial 3" in r.getMessage()] == [
        "Trial 3: another worker took the last slot; given up before training."
    ]
    assert [r["trial"] for r in records(out)] == [0, 1, 2] and len(jobs.calls) == 4  # 3 trials, the final run
    assert json.loads((out / "hp_search_best.json").read_text())["trials"] == 3
    # a larger --hp_search_trials extends the finished study by new slots (the surplus trial's number is skipped);
    # its best setting is trained again, over the earlier final run, only because the best trial changed
    more = FakeJobs(boost="trial-5")
    fake_search(out, more, trials=5)
    study = load(out)
    assert sorted(by_slot(study)) == [0, 1, 2, 4, 5] and [Path(call).name for call in more.calls] == [
        "trial-4",
        "trial-5",
        "search",
    ]
    assert more.final[0]["overwrite_output_dir"] == "true"
    best = json.loads((out / "hp_search_best.json").read_text())
    assert (best["trial"], best["slot"], best["trials"]) == (5, 5, 5)


def dead_worker() -> dict:
    """The identity of a worker process of this machine that has ended."""
    import psutil

    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = round(psutil.Process(process.pid).create_time(), 2)
    finally:
        process.kill()
        process.wait()
    return {**hp_study.worker_identity(), "pid": process.pid, "started": started}


def test_a_final_training_whose_worker_died_is_taken_over(tmp_path):
    """The worker that claimed the final training died before finishing it: the next run of the command claims it
    again (attempt 1) and trains over the half-finished run; a claim of a live worker is left alone."""
    out = tmp_path / "search"
    with pytest.raises(KeyboardInterrupt):
        fake_search(out, FakeJobs(stop_in="search"), trials=2)
    storage = f"sqlite:///{out / 'hp_search.db'}"
    best = json.loads((out / "hp_search_best.json").read_text())["trial"]
    claim = optuna.load_study(study_name=f"hp_search/train-best/trial-{best}/0", storage=storage)
    assert claim.user_attrs["worker"] == hp_study.worker_identity() and "finished" not in claim.user_attrs
    alive = FakeJobs()
    assert fake_search(out, alive, trials=2).results["hp_search_trained_by"].endswith(f":{os.getpid()}")
    assert alive.calls == []  # this process holds the claim and is alive: nothing to do
    claim.set_user_attr("worker", dead_worker())
    jobs = FakeJobs()
    fake_search(out, jobs, trials=2)
    assert [Path(call).name for call in jobs.calls] == ["search"] and jobs.final[0]["overwrite_output_dir"] == "true"
    assert optuna.get_all_study_names(storage) == [
        "hp_search",
        f"hp_search/train-best/trial-{best}/0",
        f"hp_search/train-best/trial-{best}/1",
    ]
    assert (
        optuna.load_study(study_name=f"hp_search/train-best/trial-{best}/1", storage=storage).user_attrs["finished"]
        is True
    )
    assert hp_study.is_gone(dead_worker()) and not hp_study.is_gone(hp_study.worker_identity())
    assert not hp_study.is_gone({**dead_worker(), "host": "another-machine"})  # elsewhere: left to the heartbeat


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_of_a_silent_worker_elsewhere_is_run_again_after_the_grace_period(tmp_path, monkeypatch):
    """A worker on another machine stops sending heartbeats mid-trial: once the grace period has passed (1 s here,
    120 s by default), the next worker fails its trial and runs it again with its slot and settings; so is a trial
    whose worker died before it recorded anything."""
    monkeypatch.setattr(hp_study, "HEARTBEAT_INTERVAL", 1)
    monkeypatch.setattr(hp_study, "GRACE_PERIOD", 1)
    out = tmp_path / "search"
    fake_search(out, FakeJobs(), trials=1)
    storage = hp_study.open_storage(None, str(out))
    study = optuna.load_study(study_name="hp_search", storage=storage)
    lost = study.ask()  # as the other machine's worker would, then dies after one heartbeat
    lost.set_user_attr(SLOT, 1)
    lost.set_user_attr(hp_study.WORKER, {**hp_study.worker_identity(), "host": "elsewhere"})
    params = {"learning_rate": lost.suggest_float("learning_rate", 1e-5, 1e-4, log=True)}
    storage.record_heartbeat(lost._trial_id)
    study.ask()  # a worker killed before its trial recorded anything (no worker, no slot, no heartbeat)
    time.sleep(2.5)  # both go stale (not an assertion on time: any longer wait gives the same)
    jobs = FakeJobs()
    fake_search(out, jobs, trials=3)
    study = load(out)
    assert [(t.number, t.state, t.user_attrs.get(SLOT), t.system_attrs.get("failed_trial")) for t in study.trials] == [
        (0, TrialState.COMPLETE, 0, None),
        (1, TrialState.FAIL, 1, None),
        (2, TrialState.FAIL, None, None),
        (3, TrialState.COMPLETE, 2, 2),
        (4, TrialState.COMPLETE, 1, 1),
    ]
    assert study.trials[4].params["learning_rate"] == params["learning_rate"]
    assert [Path(call).name for call in jobs.calls if "trial-" in call] == ["trial-3", "trial-4"]


# ---------------------------------------------------------------- real processes, the tiny model


def test_two_workers_share_one_sqlite_study(tiny_model, tmp_path, write_file):
    """Two processes with the same command (so the same SQLite file in output_dir) run 4 trials between them, each
    slot once, and exactly one of them trains the best setting."""
    space = write_file("space.yaml", SPACE)
    out = tmp_path / "shared"
    command = [sys.executable, "run_ner.py", *ner_search_args(tiny_model, out, space, 4)]
    workers = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    logs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], logs
    study = load(out)
    slots = by_slot(study)
    assert sorted(slots) == [0, 1, 2, 3]
    assert len({json.dumps(params, sort_keys=True) for params, _ in slots.values()}) == 4
    # every other trial is one a worker gave up before training (it lost the race for the last slot)
    assert all(t.user_attrs.get(SURPLUS) for t in study.trials if t.state != TrialState.COMPLETE)
    trained = sorted(
        Path(t.user_attrs["record"]["output_dir"]).name for t in study.trials if t.state == TrialState.COMPLETE
    )
    assert sorted(p.name for p in (out / "hp_search").iterdir()) == trained  # no trial directory besides these
    assert sorted(r["slot"] for r in records(out)) == [0, 1, 2, 3]
    # the best setting was trained once, by the worker hp_search_best.json names, into output_dir
    assert sum("training it into" in log for log in logs) == 1
    best = json.loads((out / "hp_search_best.json").read_text())
    trainer = next(worker.pid for worker, log in zip(workers, logs, strict=True) if "training it into" in log)
    assert best["trained_by"].endswith(f":{trainer}") and best["trials"] == 4
    assert best["value"] == max(value for _, value in slots.values())
    final = torch.load(out / "training_args.bin", weights_only=False)
    assert (final.learning_rate, final.weight_decay) == (
        best["params"]["learning_rate"],
        best["params"]["weight_decay"],
    )
    assert optuna.get_all_study_names(f"sqlite:///{out / 'hp_search.db'}") == [
        "hp_search",
        f"hp_search/train-best/trial-{best['trial']}/0",
    ]
    pids = {f":{worker.pid}" for worker in workers}
    assert all(record["worker"][record["worker"].rindex(":") :] in pids for record in records(out))


def test_a_search_killed_mid_trial_resumes_to_the_same_best_trial(tiny_model, tmp_path, write_file):
    """SIGKILL to the whole process tree at step 2 of trial 1, then the same command again: the killed trial is run
    again (same slot, same settings) and the search ends with the uninterrupted search's trials and best trial."""
    space = write_file("space.yaml", SPACE)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_ner.main(ner_search_args(tiny_model, whole, space, 3))
    command = ner_search_args(tiny_model, killed, space, 3)
    died = subprocess.run(
        [sys.executable, "tests/kill_in_trial.py", "1", "2", "run_ner.py", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    assert died.returncode == -9, died.stderr[-2000:]
    study = load(killed)
    assert [(t.number, t.state) for t in study.trials] == [(0, TrialState.COMPLETE), (1, TrialState.RUNNING)]
    run_ner.main(command)
    study = load(killed)
    assert [(t.number, t.state, t.user_attrs[SLOT]) for t in study.trials] == [
        (0, TrialState.COMPLETE, 0),
        (1, TrialState.FAIL, 1),
        (2, TrialState.COMPLETE, 1),
        (3, TrialState.COMPLETE, 2),
    ]
    assert study.trials[2].params == study.trials[1].params
    assert by_slot(study) == by_slot(load(whole))
    best, expected = (json.loads((d / "hp_search_best.json").read_text()) for d in (killed, whole))
    assert (best["slot"], best["params"], best["value"]) == (expected["slot"], expected["params"], expected["value"])
    final, expected_final = (torch.load(d / "training_args.bin", weights_only=False) for d in (killed, whole))
    assert (final.learning_rate, final.weight_decay) == (expected_final.learning_rate, expected_final.weight_decay)
    assert (
        json.loads((killed / "all_results.json").read_text())["eval_f1"]
        == json.loads((whole / "all_results.json").read_text())["eval_f1"]
    )
    # the killed trial's directory keeps no weights; hp_search.jsonl says what became of it
    assert not list((killed / "hp_search" / "trial-1").glob("**/*.safetensors"))
    assert records(killed)[1] == {
        "trial": 1,
        "slot": 1,
        "state": "FAIL",
        "params": study.trials[1].params,
        "worker": records(killed)[1]["worker"],
        "error": "stopped before it ended (its worker was killed or interrupted); run again as trial 2",
    }
    assert os.path.isfile(killed / "model.safetensors")


# ---------------------------------------------------------------- PostgreSQL, as several machines would share it


def postgres_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))  # Debian keeps them off PATH
    return str(versions[-1]) if versions else None


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server on a Unix socket (Debian's postgresql package; initdb refuses root, so as
    root it runs as the postgres user). Skipped with the reason when the server or the psycopg2 driver is absent."""
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver is not installed (pip install psycopg2-binary)")
    as_user: list[str] = []
    directory = tempfile.mkdtemp(prefix="hp-search-pg-")
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: initdb cannot run")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(directory, "postgres")
    data = os.path.join(directory, "data")
    try:
        subprocess.run(
            [*as_user, initdb, "-D", data, "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [
                *as_user,
                pg_ctl,
                "-D",
                data,
                "-l",
                os.path.join(directory, "log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-k {directory} -p 5432 -c listen_addresses=''",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )
        yield f"postgresql+psycopg2://postgres@/postgres?host={directory}&port=5432"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


def test_two_machines_share_a_postgresql_study(postgres_url, tmp_path):
    """Two workers with their own output directories (as on two machines; threads here, each with its own
    connection) and one PostgreSQL study: 6 slots run once between them, one worker trains the best setting."""
    from concurrent.futures import ThreadPoolExecutor

    outs = [tmp_path / "machine-a", tmp_path / "machine-b"]
    jobs = [FakeJobs(seconds=0.3), FakeJobs(seconds=0.3)]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(fake_search, out, job, 6, postgres_url) for out, job in zip(outs, jobs, strict=True)]
        for future in futures:
            future.result(timeout=300)
    study = optuna.load_study(study_name="hp_search", storage=postgres_url)
    assert sorted(by_slot(study)) == [0, 1, 2, 3, 4, 5]
    assert all(t.user_attrs.get(SURPLUS) for t in study.trials if t.state != TrialState.COMPLETE)
    ran = sorted(Path(call).name for job in jobs for call in job.calls if "trial-" in call)
    assert ran == sorted(f"trial-{t.number}" for t in study.trials if t.state == TrialState.COMPLETE)
    assert sorted(len(job.final) for job in jobs) == [0, 1]
    trained = outs[[len(job.final) for job in jobs].index(1)]
    assert [out for out in outs if (out / "hp_search_best.json").is_file()] == [trained]
    assert sorted(r["slot"] for r in records(trained)) == [0, 1, 2, 3, 4, 5]
    # the URL is checked before any work: a wrong database is one error line naming the flag, password hidden
    with pytest.raises(
        ConfigError,
        match=r"--hp_search_storage postgresql\+psycopg2://postgres:\*\*\*@/nosuchdb.*"
        r"cannot open the database",
    ):
        fake_search(
            tmp_path / "c",
            FakeJobs(),
            trials=1,
            storage=postgres_url.replace("postgres@/postgres", "postgres:secret@/nosuchdb"),
        )
