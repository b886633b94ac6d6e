"""A search that dies mid-trial, as a machine does: `python tests/kill_in_trial.py TRIAL STEP run_ner.py ARGS...`
runs the script and SIGKILLs its whole process group as step STEP of search trial TRIAL (its output_dir ends with
trial-TRIAL) begins. Start it in a session of its own (`start_new_session=True`) so the kill spares the caller."""

import os
import runpy
import signal
import sys
from pathlib import Path

from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class DieInTrial(TrainerCallback):
    def __init__(self, trial: int, step: int) -> None:
        self.trial, self.step = trial, step

    def on_step_begin(self, args, state, control, **kwargs):
        if args.output_dir.rstrip("/").endswith(f"trial-{self.trial}") and state.global_step + 1 == self.step:
            os.killpg(os.getpgid(0), signal.SIGKILL)


if __name__ == "__main__":
    trial, step, script, *args = sys.argv[1:]
    entry = runpy.run_path(str(ROOT / script))  # the entry script's `main`, not its `__main__` block
    entry["main"](args, callbacks=[DieInTrial(int(trial), int(step))])
