"""A training script that SIGKILLs its own process as step N begins, as a machine that dies mid-training would:
`accelerate launch ... tests/kill_at_step.py N run_ner.py ARGS...` (tests/test_multinode.py runs it as one rank)."""

import os
import runpy
import signal
import sys
from pathlib import Path

from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class DieAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    step, script, *args = sys.argv[1:]
    entry = runpy.run_path(str(ROOT / script))  # the entry script's `main`, not its `__main__` block
    entry["main"](args, callbacks=[DieAt(int(step))])
