"""File helpers: strict UTF-8 reading that names the bad line, and writes that never leave half a file."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from utils.core.errors import DataError, FinetuneError


class WriteFailed(FinetuneError, OSError):
    """A file could not be written (disk full, quota, read-only or failing disk); still an `OSError` for callers
    that catch those."""


#: Errors of the disk rather than of the program: reported as one line naming the file.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG)


def write_failed(path: str | os.PathLike, err: OSError, written: int) -> WriteFailed:
    """One line for a write the disk refused: the file, the reason, the bytes it had taken, the bytes free."""
    try:
        free = f"{shutil.disk_usage(Path(path).parent).free:,} bytes are free there"
    except OSError:
        free = "the free space is unknown"
    return WriteFailed(
        f"could not write {path}: {err.strerror or err} ({written:,} bytes were written before it "
        f"failed; {free}). Nothing was left half-written; free space (or choose another "
        "--output_dir) and run again."
    )


def read_utf8(path: str | os.PathLike) -> str:
    """A text file's content (without a byte-order mark); a byte that is not UTF-8, or a NUL byte (the sign of a
    UTF-16 or binary file), is an error naming its line and column."""
    raw = Path(path).read_bytes()
    check_not_utf16_or_32(raw, path)
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


#: Byte-order marks of the other Unicode encodings, longest first (UTF-32's begins with UTF-16's).
OTHER_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32", "utf-32"),
    (b"\x00\x00\xfe\xff", "UTF-32", "utf-32"),
    (b"\xff\xfe", "UTF-16", "utf-16"),
    (b"\xfe\xff", "UTF-16", "utf-16"),
)


def check_not_utf16_or_32(raw: bytes, path: str | os.PathLike) -> None:
    """A file that starts with a UTF-16 or UTF-32 byte-order mark says what it is: the error names that encoding
    (and the conversion from it), not the first byte that happens not to be UTF-8."""
    for bom, name, iconv in OTHER_BOMS:
        if raw.startswith(bom):
            raise DataError(
                f"the file is {name} (it starts with a {name} byte-order mark), not UTF-8; re-save it as "
                f"UTF-8 (e.g. `iconv -f {iconv} -t utf-8`).",
                source=f"{path}:1",
            )


def byte_position(raw: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in bytes) of a byte offset."""
    return raw.count(b"\n", 0, offset) + 1, offset - raw.rfind(b"\n", 0, offset)


def read_utf8_lines(path: str | os.PathLike) -> list[str]:
    """Lines of a text file without their line ends (see `read_utf8` for what is refused)."""
    lines = [line.rstrip("\r") for line in read_utf8(path).split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def umask_mode(base: int = 0o666) -> int:
    """The mode a plain `open()` would give a new file under the current umask (0644 under 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path` and rename it into place only when writing succeeded.

    The file gets the permissions the umask gives (`mkstemp` alone makes it 0600: unreadable to a teammate or a
    service running as another user), and its bytes reach the disk before the rename (then the directory entry
    does), so a crash leaves either the old file or the whole new one, never a renamed empty file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as stream:
            yield stream
            stream.flush()
            os.fchmod(stream.fileno(), umask_mode())
            os.fsync(stream.fileno())
        os.replace(temp_name, target)
    except OSError as err:
        written = Path(temp_name).stat().st_size if Path(temp_name).exists() else 0
        Path(temp_name).unlink(missing_ok=True)
        if err.errno in DISK_ERRORS and not isinstance(err, WriteFailed):
            raise write_failed(target, err, written) from None
        raise
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    sync_directory(target.parent)


def open_up_new_files(directory: str | os.PathLike, since: float) -> None:
    """Give the files written under `directory` since `since` (a `time.time()`) the mode the umask gives, where the
    writer made them private: transformers writes weights through a temporary file too, so `model.safetensors`
    would be 0600 and unreadable to a teammate or a service running as another user."""
    mode = umask_mode()
    since -= 2.0  # file times come from a coarser clock than time.time()
    for path in Path(directory).rglob("*"):
        try:
            info = path.lstat()
        except OSError:
            continue
        if path.is_file() and not path.is_symlink() and info.st_mtime >= since and not info.st_mode & 0o077:
            os.chmod(path, mode)


def sync_directory(directory: str | os.PathLike) -> None:
    """fsync a directory, so the renames in it survive a power cut (a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


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
