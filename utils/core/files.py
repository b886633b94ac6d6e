"""File helpers: strict UTF-8 reading that names the bad line, and writes that never leave half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from utils.core.errors import DataError


def read_utf8(path: str | os.PathLike) -> str:
    """A text file's content (without a byte-order mark); a byte that is not UTF-8, or a NUL byte (the sign of a
    UTF-16 or binary file), is an error naming its line and column."""
    raw = Path(path).read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line, column = byte_position(raw, err.start)
        raise DataError(
            f"byte 0x{raw[err.start]:02x} at column {column} is not valid UTF-8; "
            "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`).",
            source=f"{path}:{line}",
        ) from None
    if b"\x00" in raw:
        line, column = byte_position(raw, raw.index(b"\x00"))
        raise DataError(
            f"NUL byte at column {column}: the file looks like UTF-16 or binary, not UTF-8 text; "
            "re-save it as UTF-8 (e.g. `iconv -f utf-16 -t utf-8`).",
            source=f"{path}:{line}",
        )
    return text


def byte_position(raw: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in bytes) of a byte offset."""
    return raw.count(b"\n", 0, offset) + 1, offset - raw.rfind(b"\n", 0, offset)


def read_utf8_lines(path: str | os.PathLike) -> list[str]:
    """Lines of a text file without their line ends (see `read_utf8` for what is refused)."""
    lines = [line.rstrip("\r") for line in read_utf8(path).split("\n")]
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
