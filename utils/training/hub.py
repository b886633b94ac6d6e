"""Push a finished output directory to the Hugging Face Hub: model, tokenizer, card, results, TensorBoard logs.

The token comes from `--hub_token`, `HF_TOKEN` or the `huggingface-cli login` cache (huggingface_hub resolves it);
it is never printed, logged or written to the output directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

#: Never uploaded: intermediate checkpoints (optimizer state), temporary files, the pickled training arguments.
SKIPPED = ("checkpoint-", ".")
SKIPPED_FILES = {"training_args.bin"}


def upload_plan(output_dir: str) -> list[str]:
    """Relative paths of the files a push uploads."""
    root = Path(output_dir)
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or relative.name in SKIPPED_FILES or relative.name.endswith(".tmp"):
            continue
        if any(part.startswith(SKIPPED) for part in relative.parts):
            continue
        files.append(relative.as_posix())
    return files


def push_output_dir(output_dir: str, repo_id: str | None, private: bool | None, token: str | None = None) -> str:
    """Create (or reuse) the model repo and upload the output directory's deliverables; returns the repo id."""
    from huggingface_hub import HfApi

    repo_id = repo_id or os.path.basename(os.path.abspath(output_dir))
    api = HfApi(token=token)
    url = api.create_repo(repo_id=repo_id, private=bool(private), repo_type="model", exist_ok=True)
    repo_id = getattr(url, "repo_id", None) or repo_id
    files = upload_plan(output_dir)
    api.upload_folder(
        folder_path=output_dir,
        repo_id=repo_id,
        repo_type="model",
        allow_patterns=files,
        commit_message="Upload fine-tuned model (finetune-kit)",
    )
    logger.info("Pushed %d files to https://huggingface.co/%s", len(files), repo_id)
    return repo_id
