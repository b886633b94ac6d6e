"""doccano's JSONL (one object per line: `text`, and `label` as [start, end, type] spans for sequence labelling or
a list of names for text classification; `entities` with `start_offset`/`end_offset`/`label` objects, or
[start, end, type] lists, when relations are on) read into `AnnotatedText` records, and written back for doccano's
import (unknown keys such as `uncertainty` become the example's metadata there)."""

from __future__ import annotations

from typing import Any

from utils.core.annotations.records import AnnotatedText, Span, make_choice, make_span
from utils.core.errors import DataError

LABEL_KEYS = ("label", "labels", "entities")


def read_span(item: Any, text: str, location: str) -> Span:
    """One span: [start, end, type] or {"start_offset", "end_offset", "label"}."""
    if isinstance(item, dict):
        return make_span(item.get("start_offset"), item.get("end_offset"), item.get("label"), text, location)
    if isinstance(item, list) and len(item) == 3:
        return make_span(item[0], item[1], item[2], text, location)
    raise DataError(
        f'a span must be [start, end, label] or {{"start_offset", "end_offset", "label"}}, got {item!r:.80}.',
        source=location,
    )


def read_doccano_record(record: Any, location: str) -> AnnotatedText:
    """One line: spans when its labels are spans, choices when they are names."""
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise DataError("each line must be an object with a 'text' string (doccano's JSONL export).", source=location)
    text = record["text"]
    keys = [key for key in LABEL_KEYS if key in record]
    if not keys:
        raise DataError(
            f"no labels: the line has none of {list(LABEL_KEYS)} (it has {sorted(record)}); export "
            "the project from doccano as JSONL.",
            source=location,
        )
    items = record[keys[0]]
    if not isinstance(items, list):
        raise DataError(f"'{keys[0]}' must be a list, got {items!r:.80}.", source=location)
    if all(isinstance(item, str) for item in items) and keys[0] != "entities":
        return AnnotatedText(text, (), tuple(make_choice(item, location) for item in items), location, location)
    return AnnotatedText(text, tuple(read_span(item, text, location) for item in items), (), location, location)


def doccano_record(record: AnnotatedText) -> dict[str, Any]:
    """A line doccano imports: spans as [start, end, type] (or choices as names) under `label`."""
    labels: list = [[span.start, span.end, span.label] for span in record.spans]
    labels += [choice.label for choice in record.choices]
    line: dict[str, Any] = {"text": record.text, "label": labels}
    if record.uncertainty is not None:
        line["uncertainty"] = record.uncertainty
    return line
