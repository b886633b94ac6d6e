"""Output directories and checkpoints: never overwrite another run by accident, resume from a complete one."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence

from utils.core.errors import ConfigError
from utils.training.arguments import FinetuneTrainingArguments

logger = logging.getLogger(__name__)


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest checkpoint that was completely written. `Trainer` writes trainer_state.json last, so a run killed
    while saving leaves a checkpoint directory without it, which must not be resumed from."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted((int(name.split("-")[1]), name) for name in os.listdir(output_dir)
                   if name.startswith("checkpoint-") and name.split("-")[1].isdigit())
    for _, name in reversed(steps):
        path = os.path.join(output_dir, name)
        if os.path.isfile(os.path.join(path, "trainer_state.json")):
            return path
        logger.warning("Skipping %s: it was not completely written (the run was killed while saving).", path)
    return None


def resolve_checkpoint(args: FinetuneTrainingArguments) -> str | None:
    """`--resume_from_checkpoint last` means the newest complete checkpoint in output_dir (a warning if none)."""
    wanted = args.resume_from_checkpoint
    if wanted != "last":
        if wanted and not os.path.isfile(os.path.join(wanted, "trainer_state.json")):
            raise ConfigError(f"--resume_from_checkpoint {wanted}: not a complete checkpoint directory "
                              "(no trainer_state.json).")
        return wanted
    last = last_complete_checkpoint(args.output_dir)
    if last is None:
        logger.warning("--resume_from_checkpoint last: no checkpoint in %s; training from the start.",
                       args.output_dir)
    else:
        logger.info("Resuming from %s", last)
    return last


def check_output_dir(args: FinetuneTrainingArguments, writes_model: bool, prediction_files: Sequence[str] = ()
                     ) -> None:
    """Training into a directory that holds another run is refused unless asked to overwrite or to resume it."""
    out = args.output_dir
    if not writes_model or args.resume_from_checkpoint or not os.path.isdir(out):
        return
    finished = os.path.isfile(os.path.join(out, "all_results.json"))
    checkpoint = next((name for name in os.listdir(out) if name.startswith("checkpoint-")), None)
    if not finished and checkpoint is None:
        return
    if not args.overwrite_output_dir:
        held = "a finished run (all_results.json)" if finished else f"an unfinished run ({checkpoint})"
        raise ConfigError(f"--output_dir {out} already holds {held}. Pass --overwrite_output_dir to replace it, "
                          "--resume_from_checkpoint last to continue it, or choose another --output_dir.")
    if not args.should_save:  # the main process cleans up; the others only check
        return
    for name in os.listdir(out):
        path = os.path.join(out, name)
        if name.startswith("checkpoint-") and os.path.isdir(path):
            shutil.rmtree(path)
        elif name.endswith("_results.json") or name == "trainer_state.json" or name in prediction_files:
            os.remove(path)
    logger.info("--overwrite_output_dir: removed the previous run's checkpoints and results from %s", out)

