"""Output directories and checkpoints: never overwrite another run by accident, resume from a complete one."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import struct
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

from utils.core.errors import ConfigError, FinetuneError
from utils.training.arguments import FinetuneTrainingArguments

logger = logging.getLogger(__name__)


#: The weights a checkpoint holds, in one of these forms (full model, sharded model, or a peft adapter).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)


def safetensors_problem(path: str, size: int) -> str | None:
    """What is wrong with a safetensors file: its 8-byte header length, its JSON header and the byte ranges the
    header declares must all fit, and the file must end where the last tensor does (a truncated copy does not)."""
    with open(path, "rb") as stream:
        head = stream.read(8)
        if len(head) < 8:
            return f"is truncated ({size} bytes, not even a header)"
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            return f"is truncated ({size:,} bytes; its header alone should take {length + 8:,})"
        try:
            header = json.loads(stream.read(length))
        except ValueError:
            return "has a damaged header (not JSON)"
    ends = [
        entry.get("data_offsets", [0, 0])[1]
        for key, entry in header.items()
        if key != "__metadata__" and isinstance(entry, dict)
    ]
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        return f"is {'truncated' if size < expected else 'longer than written'} ({size:,} bytes of {expected:,})"
    return None


def torch_file_problem(path: str, size: int) -> str | None:
    """What is wrong with a `torch.save` file (optimizer, scheduler, RNG state, training arguments): it is a zip
    archive whose directory sits at its end, so a truncated or emptied file has none, and each member must fit."""
    if size == 0:
        return "is empty (0 bytes)"
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if member.header_offset + member.compress_size > size:
                    return f"is truncated ({size:,} bytes; {member.filename} ends after that)"
    except (zipfile.BadZipFile, OSError, ValueError):
        return f"is truncated or damaged ({size:,} bytes, not a complete torch archive)"
    return None


def json_file_problem(path: str, size: int) -> str | None:
    """What is wrong with a JSON file of a checkpoint (trainer state, config, totals): it must parse."""
    if size == 0:
        return "is empty (0 bytes)"
    try:
        with open(path, encoding="utf-8") as stream:
            json.load(stream)
    except (ValueError, UnicodeDecodeError):
        return f"is truncated or damaged ({size:,} bytes, not valid JSON)"
    return None


def checkpoint_problem(path: str) -> str | None:
    """Why a checkpoint directory cannot be resumed from (the first damaged file, named), or None. Every file a
    checkpoint must hold is there, and each one that can be checked without loading it parses and has the size
    its own header says was written: a copy cut short, a disk that filled up, or an emptied RNG state would
    otherwise fail deep inside torch or safetensors after the model is loaded."""
    if not os.path.isfile(os.path.join(path, "trainer_state.json")):
        return "trainer_state.json is missing (the run was stopped while saving)"
    names = sorted(os.listdir(path))
    if not any(name in names for name in WEIGHT_FILES):
        return f"it holds no weights (none of {', '.join(WEIGHT_FILES)})"
    checks: list[tuple[Callable[[str, int], str | None], tuple[str, ...]]] = [
        (json_file_problem, (".json",)),
        (safetensors_problem, (".safetensors",)),
        (torch_file_problem, (".pt", ".pth", ".bin")),
    ]
    for name in names:
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            continue
        for check, suffixes in checks:
            if name.endswith(suffixes):
                problem = check(file, os.path.getsize(file))
                if problem:
                    return f"{name} {problem}"
    return None


def checkpoints_newest_first(output_dir: str) -> list[str]:
    """The checkpoint directories of a run, newest (highest step) first."""
    if not os.path.isdir(output_dir):
        return []
    steps = sorted(
        (int(name.split("-")[1]), name)
        for name in os.listdir(output_dir)
        if name.startswith("checkpoint-") and name.split("-")[1].isdigit()
    )
    return [os.path.join(output_dir, name) for _, name in reversed(steps)]


def newest_intact_checkpoint(output_dir: str, exclude: str | None = None) -> str | None:
    """The newest checkpoint of `output_dir` that `checkpoint_problem` finds nothing wrong with."""
    for path in checkpoints_newest_first(output_dir):
        if (exclude is None or os.path.abspath(path) != os.path.abspath(exclude)) and not checkpoint_problem(path):
            return path
    return None


def resume_state_note(path: str) -> str:
    """What resuming from an older checkpoint lacks: only the newest keeps the optimizer state (trainer.py)."""
    if os.path.isfile(os.path.join(path, "optimizer.pt")):
        return ""
    return (
        " (it holds the weights and the training state but no optimizer state, which only a run's newest "
        "checkpoint keeps: the optimizer starts afresh there)"
    )


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest checkpoint that was completely written and is intact. `Trainer` writes trainer_state.json last, so
    a run killed while saving leaves a checkpoint directory without it, which must not be resumed from; a
    checkpoint damaged after it was written (truncated, emptied) is skipped too, and named."""
    for path in checkpoints_newest_first(output_dir):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        logger.warning("--resume_from_checkpoint last: skipping %s: %s.", path, problem)
    return None


def verify_resume_checkpoint(args: FinetuneTrainingArguments) -> None:
    """A checkpoint named by path is checked before anything is loaded: a damaged one is an error naming the file
    and offering the newest intact checkpoint beside it."""
    wanted = args.resume_from_checkpoint
    if not wanted or wanted == "last":
        return
    if not os.path.isdir(wanted):
        raise ConfigError(
            f"--resume_from_checkpoint {wanted}: no such checkpoint directory; give a checkpoint-N "
            "folder of an earlier run, or `last` for the newest one in --output_dir."
        )
    problem = checkpoint_problem(wanted)
    if problem is None:
        return
    intact = newest_intact_checkpoint(os.path.dirname(os.path.abspath(wanted)), exclude=wanted)
    offer = (
        f"resume from the newest intact one instead, --resume_from_checkpoint {intact}{resume_state_note(intact)}"
        if intact
        else "no intact checkpoint is left beside it, so train from the start"
    )
    raise ConfigError(
        f"--resume_from_checkpoint {wanted}: the checkpoint is damaged: {problem}. It cannot be resumed from; {offer}."
    )


def resolve_checkpoint(args: FinetuneTrainingArguments) -> str | None:
    """`--resume_from_checkpoint last` means the newest intact checkpoint in output_dir (a warning if none); a
    checkpoint named by path must be intact."""
    wanted = args.resume_from_checkpoint
    if wanted != "last":
        verify_resume_checkpoint(args)
        return wanted
    last = last_complete_checkpoint(args.output_dir)
    if last is None:
        logger.warning("--resume_from_checkpoint last: no checkpoint in %s; training from the start.", args.output_dir)
    elif last != next(iter(checkpoints_newest_first(args.output_dir)), last):
        logger.warning("Resuming from %s, the newest intact checkpoint%s.", last, resume_state_note(last))
    else:
        logger.info("Resuming from %s", last)
    return last


class CheckpointWriteFailed(FinetuneError):
    """A checkpoint could not be written (disk full, quota, read-only or failing disk); the partial one is gone."""


#: How the libraries that write a checkpoint report a failed write when it is not an `OSError`: safetensors (its
#: Rust I/O error) and torch's zip writer.
WRITE_FAILURES = (
    "No space left",
    "os error 28",
    "Disk quota",
    "os error 122",
    "StorageFull",
    "file write failed",
    "I/O error",
    "IoError",
    "Read-only file system",
)


def is_write_failure(err: BaseException) -> bool:
    return isinstance(err, OSError) or any(text in str(err) for text in WRITE_FAILURES)


def state_bytes(*objects: Any) -> int:
    """Bytes of the tensors in state dicts (model weights, optimizer moments): what a checkpoint of them takes."""
    import torch

    total = 0
    for obj in objects:
        stack = [obj]
        while stack:
            item = stack.pop()
            if isinstance(item, torch.Tensor):
                total += item.numel() * item.element_size()
            elif isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, (list, tuple)):
                stack.extend(item)
    return total


def checkpoint_size_estimate(trainer) -> int:
    """About how many bytes a checkpoint of this run takes: the weights, plus the optimizer state unless
    --save_only_model."""
    size = state_bytes(trainer.model.state_dict())
    if not trainer.args.save_only_model and trainer.optimizer is not None:
        size += state_bytes(trainer.optimizer.state_dict().get("state", {}))
    return size


def megabytes(count: int) -> str:
    return f"{count / 1e6:,.1f} MB"


def write_checkpoint(trainer, save: Callable[[Any, Any], None], model, trial) -> None:
    """`save(model, trial)` (`Trainer._save_checkpoint`), leaving either the whole checkpoint or none: a write that
    fails (disk full, quota, read-only disk) removes the partial folder, which a resume would otherwise have to
    skip, and ends as one line naming the path, the bytes needed and the bytes free."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    run_dir = trainer._get_output_dir(trial=trial)
    directory = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}")
    existed = os.path.isdir(directory)
    try:
        save(model, trial)
    except Exception as err:
        if not existed and trainer.args.should_save:
            shutil.rmtree(directory, ignore_errors=True)
        if not is_write_failure(err):
            raise
        raise CheckpointWriteFailed(write_failure_message(trainer, directory, err)) from None


def write_failure_message(trainer, directory: str, err: BaseException) -> str:
    """One line: what could not be written where, why, how much a checkpoint needs and what the disk has free."""
    target = getattr(err, "filename", None) or directory
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0][:200]
    if (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or "os error 28" in str(err):
        reason = f"no space left on the device ({reason})" if "space" not in reason.lower() else reason
    try:
        free = megabytes(shutil.disk_usage(os.path.dirname(directory) or ".").free)
    except OSError:
        free = "an unknown amount"
    return (
        f"could not write checkpoint {directory}: {reason} (writing {target}). A checkpoint of this run needs "
        f"about {megabytes(checkpoint_size_estimate(trainer))}; {free} are free there. The partial checkpoint "
        "was removed. Free space (or lower --save_total_limit, or choose another --output_dir), then rerun with "
        "--resume_from_checkpoint last to continue from the last complete checkpoint."
    )


def check_output_dir(
    args: FinetuneTrainingArguments, writes_model: bool, prediction_files: Sequence[str] = ()
) -> None:
    """Training into a directory that holds another run is refused unless asked to overwrite or to resume it."""
    verify_resume_checkpoint(args)
    out = args.output_dir
    if not writes_model or args.resume_from_checkpoint or not os.path.isdir(out):
        return
    finished = os.path.isfile(os.path.join(out, "all_results.json"))
    checkpoint = next((name for name in os.listdir(out) if name.startswith("checkpoint-")), None)
    if not finished and checkpoint is None:
        return
    if not args.overwrite_output_dir:
        held = "a finished run (all_results.json)" if finished else f"an unfinished run ({checkpoint})"
        raise ConfigError(
            f"--output_dir {out} already holds {held}. Pass --overwrite_output_dir to replace it, "
            "--resume_from_checkpoint last to continue it, or choose another --output_dir."
        )
    if not args.should_save:  # the main process cleans up; the others only check
        return
    for name in os.listdir(out):
        path = os.path.join(out, name)
        if name.startswith("checkpoint-") and os.path.isdir(path):
            shutil.rmtree(path)
        elif name.endswith("_results.json") or name == "trainer_state.json" or name in prediction_files:
            os.remove(path)
    logger.info("--overwrite_output_dir: removed the previous run's checkpoints and results from %s", out)
