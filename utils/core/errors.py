"""The project's own error types: what users see instead of a stack trace from deep inside a library."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any


class FinetuneError(Exception):
    """Base class: a problem the user can fix; the message says what is wrong and what to do."""


class ConfigError(FinetuneError):
    """Bad arguments or configuration file."""


class DataError(FinetuneError):
    """Bad input data; the message names the file and line (or row) where it can."""

    def __init__(self, message: str, source: str | None = None):
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


def run_command(main: Callable[[], Any]) -> None:
    """Run an entry script's `main`: a problem the user can fix ends as one `error: ...` line and exit status 1, never
    a traceback; a reader that leaves early (`predict.py ... | head`) is not an error."""
    try:
        main()
    except FinetuneError as err:
        sys.exit(f"error: {err}")
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
