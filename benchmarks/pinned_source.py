"""A file of a public repository at a pinned commit, from GitHub or from a local clone: the corpus converters
(benchmarks/genia.py, benchmarks/goemotions.py) read their source this way, so a run names exactly what it read."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path


def read_pinned(repository: str, commit: str, member: str, source: str | None) -> str | None:
    """`member` of `repository` (owner/name) at `commit`: from GitHub (no `source`), a git directory (bare or not;
    the pinned commit) or a work tree; None if absent."""
    if source is None:
        url = f"https://raw.githubusercontent.com/{repository}/{commit}/{member}"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.read().decode("utf-8")
        except OSError as error:
            print(f"{member}: not downloaded ({error})", file=sys.stderr)
            return None
    tree = Path(source) / member
    if tree.is_file():
        return tree.read_text(encoding="utf-8")
    shown = subprocess.run(["git", "--git-dir", source, "show", f"{commit}:{member}"], capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 and shown.stdout else None
