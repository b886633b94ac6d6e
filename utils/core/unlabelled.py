"""Unlabelled text files (--distill_file) read line by line into an on-disk dataset, so a file far larger than the
annotated data never has to fit in memory. Each task turns a line into its canonical row (`rows`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from datasets import Dataset
from datasets.exceptions import DatasetGenerationError

from utils.core.data import content_fingerprint
from utils.core.errors import DataError, FinetuneError


def read_records(path: str) -> Iterator[tuple[str, str | dict[str, Any]]]:
    """(location, record) per non-blank line: the line's text for .txt, its JSON object for .jsonl."""
    lines_are_json = path.endswith(".jsonl")
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            location = f"{path}:{number}"
            if not lines_are_json:
                yield location, line.rstrip("\r\n")
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"not a JSON object ({err.msg} at column {err.colno})", source=location) from None
            if not isinstance(record, dict):
                raise DataError(f"expected a JSON object per line, got {type(record).__name__}", source=location)
            yield location, record


def text_field(record: str | dict[str, Any], location: str, key: str = "text") -> str:
    """A record's text: the .txt line, or the object's `key` string."""
    if isinstance(record, str):
        return record
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"needs a non-empty string `{key}`; the object has keys {sorted(record)}", source=location)
    return value


def _generate(path: str, to_row: Callable[[str, Any], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for location, record in read_records(path):
        yield to_row(location, record)


def unlabelled_dataset(
    path: str, to_row: Callable[[str, Any], dict[str, Any]], cache_dir: str | None = None
) -> Dataset:
    """The file's rows (`to_row(location, record)` each), written to the datasets cache as they are read; keyed on
    the file's bytes (not its path and mtime), so a rewritten file is read again. A bad line is one error naming it."""
    try:
        dataset = Dataset.from_generator(
            _generate,
            gen_kwargs={"path": path, "to_row": to_row},
            cache_dir=cache_dir,
            fingerprint=f"unlabelled-{content_fingerprint(path)}-{getattr(to_row, '__qualname__', '')}",
        )
    except DatasetGenerationError as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, FinetuneError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise
    if len(dataset) == 0:
        raise DataError("holds no text (every line is blank)", source=path)
    return dataset
