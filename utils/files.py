"""File helpers: strict UTF-8 reading that names the bad line, and writes that never leave half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from utils.errors import DataError


def read_utf8_lines(path: str | os.PathLike) -> list[str]:
    """Lines of a text file without their line ends; a byte that is not UTF-8 is an error naming its line."""
    raw = Path(path).read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as err:
            raise DataError(
                f"byte 0x{line[err.start]:02x} at column {err.start + 1} is not valid UTF-8; "
                "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`).",
                source=f"{path}:{number}",
            ) from None
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def check_utf8(path: str | os.PathLike) -> None:
    """Fail early, naming the line, if a file is not UTF-8 (library loaders report it without a line)."""
    read_utf8_lines(path)


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path` and rename it into place only when writing succeeded."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as stream:
            yield stream
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, UTF-8, written atomically."""
    with atomic_write(path) as stream:
        for record in records:
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Pretty JSON, written atomically."""
    with atomic_write(path) as stream:
        json.dump(data, stream, indent=2, ensure_ascii=False, sort_keys=True)
        stream.write("\n")
