"""Formats told from a file's shape where its extension is shared: a `.json` that is a Label Studio export (a list
of tasks with `data` and `annotations`), a `.jsonl` that is doccano's export (`text` with `label` spans or names,
as doccano writes them), a `.jsonl` that holds one JSON document. Each detection is logged once; `--data_format`
still wins."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

#: The keys doccano writes on a line of its JSONL export (beside `text`).
DOCCANO_KEYS = {"id", "text", "label", "entities", "relations", "Comments", "comments", "meta", "cats"}
DOCCANO_LABEL_KEYS = ("label", "entities")
#: Keys only doccano writes: with names (not spans) in `label`, a line needs one of them to be read as doccano, since
#: `id`, `text` and a `label` list are a plain multi-label table too.
DOCCANO_ONLY_KEYS = {"Comments", "comments", "meta", "relations"}

#: Lines of a JSON Lines file looked at to tell its shape.
SAMPLE_LINES = 200


def is_span(item: Any) -> bool:
    """doccano's span: [start, end, label] or {start_offset, end_offset, label}."""
    if isinstance(item, dict):
        return {"start_offset", "end_offset", "label"} <= set(item)
    return (
        isinstance(item, list)
        and len(item) == 3
        and all(isinstance(x, int) and not isinstance(x, bool) for x in item[:2])
        and isinstance(item[2], str)
    )


def looks_like_doccano(records: list[Any]) -> bool:
    """Every line has doccano's shape: a `text` string and a `label`/`entities` list; and the lists hold spans, or
    the lines carry doccano's `id` and one of its own keys (`Comments`, `meta`, ...) and no key doccano does not
    write (so a plain table with a list column stays a table)."""
    if not records or not all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in records):
        return False
    lists = [next((r[key] for key in DOCCANO_LABEL_KEYS if key in r), None) for r in records]
    if not all(isinstance(items, list) for items in lists):
        return False
    if any(is_span(item) for items in lists for item in items):
        return all(is_span(item) for items in lists for item in items)
    return all(
        "id" in r and set(r) <= DOCCANO_KEYS and set(r) & DOCCANO_ONLY_KEYS and all(isinstance(i, str) for i in items)
        for r, items in zip(records, lists)
    )


def looks_like_label_studio(records: list[Any]) -> bool:
    """Every item is a Label Studio task: a `data` object, with `annotations` and/or `predictions` lists."""
    return bool(records) and all(
        isinstance(r, dict)
        and isinstance(r.get("data"), dict)
        and any(isinstance(r.get(key), list) for key in ("annotations", "predictions"))
        for r in records
    )


def json_lines_sample(text: str) -> list[Any] | None:
    """The first `SAMPLE_LINES` non-blank lines parsed, or None when one of them is not JSON."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (ValueError, RecursionError):
            return None
        if len(records) >= SAMPLE_LINES:
            break
    return records


def shape_format(text: str, fmt: str) -> tuple[str, str] | None:
    """(format, why) when the content says more than the extension `fmt` (json or jsonl); None otherwise."""
    start = text.lstrip()[:1]
    if start == "[":
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if isinstance(document, list) and looks_like_label_studio(document):
            return "label-studio", "a list of tasks with 'data' and 'annotations'"
        if fmt == "jsonl":
            return "json", "one JSON document (a list), not one object per line"
        return None
    if start != "{":
        return None
    records = json_lines_sample(text)
    if records is None:  # one (pretty-printed) object: a single Label Studio task is one too
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if looks_like_label_studio([document]):
            return "label-studio", "a task with 'data' and 'annotations'"
        return None
    if looks_like_doccano(records):
        return "doccano", "lines of 'text' with doccano's 'label' lists"
    return None


#: Formats already detected, by (path, extension format, content hash): each file is logged once, and a file
#: rewritten with other content (even with its old size and time stamp) is looked at again.
DETECTED: dict[tuple[str, str, str], str] = {}


def detect(raw: bytes, fmt: str, path: str) -> str:
    """The format of a .json/.jsonl file's bytes `raw`; logged."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return fmt  # the loader names what is wrong with it
    found = shape_format(text, fmt)
    if found is None:
        return fmt
    detected, why = found
    logger.info("%s: read as %s (detected from its content: %s); --data_format overrides.", path, detected, why)
    return detected


def detected_format(path: str, fmt: str) -> str:
    """`fmt` (from the extension), or what the content of a .json/.jsonl file shows it is."""
    if fmt not in ("json", "jsonl") or not os.path.isfile(path):
        return fmt
    try:
        with open(path, "rb") as stream:
            raw = stream.read()
    except OSError:
        return fmt
    key = (os.path.abspath(path), fmt, hashlib.sha256(raw).hexdigest())
    if key not in DETECTED:
        if len(DETECTED) > 256:
            DETECTED.clear()
        DETECTED[key] = detect(raw, fmt, path)
    return DETECTED[key]
