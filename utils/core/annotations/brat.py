"""brat standoff: a `.txt` document beside its `.ann` file, whose `T` lines are text-bound annotations
(`T1<TAB>PER 0 13<TAB>Angela Merkel`, character offsets into the `.txt`). Each non-blank line of the text becomes
one record (as predict.py reads texts: one per line), its spans shifted to the line; the document is the file, for
document context. Other annotation lines (relations, events, attributes, notes) are counted in the log."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

from utils.core.annotations.records import AnnotatedText, Span, make_span
from utils.core.errors import DataError
from utils.core.files import read_utf8

logger = logging.getLogger(__name__)


def ann_files(path: str) -> list[Path]:
    """The `.ann` files of a brat folder (sorted), or the one `.ann` file named."""
    root = Path(path)
    files = sorted(root.glob("*.ann")) if root.is_dir() else [root]
    if not files:
        raise DataError("no .ann files here; a brat folder holds NAME.txt and NAME.ann pairs.", source=path)
    return files


def read_ann(ann: Path, text: str) -> tuple[list[Span], Counter]:
    """The text-bound spans of one `.ann` file, checked against its text, and a count of the other lines."""
    spans, skipped = [], Counter()
    for number, line in enumerate(read_utf8(str(ann)).splitlines(), start=1):
        if not line.strip():
            continue
        location = f"{ann}:{number}"
        if not line.startswith("T"):
            skipped[line[:1]] += 1
            continue
        fields = line.split("\t")
        if len(fields) < 2 or len(fields[1].split(" ")) < 3:
            raise DataError(f"a T line is 'ID<TAB>TYPE START END<TAB>TEXT', got {line!r:.80}.", source=location)
        label, offsets = fields[1].split(" ", 1)
        if ";" in offsets:
            raise DataError(
                f"{fields[0]} {label} is discontinuous ({offsets}); a BIO tag sequence cannot hold it. "
                "Split it into separate entities in brat, or join its fragments into one span.",
                source=location,
            )
        start, end = offsets.split(" ")[:2]
        if not (start.isdigit() and end.isdigit()):
            raise DataError(f"{fields[0]}: offsets {offsets!r} must be integers.", source=location)
        quoted = fields[2] if len(fields) > 2 else None
        spans.append(make_span(int(start), int(end), label, text, location, quoted))
    return spans, skipped


def line_records(txt: Path, text: str, spans: list[Span], ann: Path) -> list[AnnotatedText]:
    """The document cut into its non-blank lines, each span moved to its line; a span across a line break is an
    error (the lines are trained on, and predicted, one at a time)."""
    records, offset = [], 0
    remaining = sorted(spans, key=lambda span: span.start)
    for number, line in enumerate(text.split("\n"), start=1):
        end = offset + len(line)
        inside = [span for span in remaining if span.start < end + 1]
        for span in inside:
            if span.end > end:
                raise DataError(
                    f"{span.describe(text)} crosses the line break after line {number} of {txt}; "
                    "records are lines: end the entity at the line break, or join the lines.",
                    source=str(ann),
                )
        remaining = remaining[len(inside) :]
        if line.strip():
            kept = line.removesuffix("\r")  # CRLF documents: the record's text ends before the \r (a span may too)
            moved = tuple(
                Span(min(span.start - offset, len(kept)), min(span.end - offset, len(kept)), span.label)
                for span in inside
            )
            records.append(AnnotatedText(kept, moved, (), f"{txt}:{number}", txt.stem))
        offset = end + 1
    return records


def read_brat(path: str) -> list[AnnotatedText]:
    """Every line of every document of a brat folder (or of one `.ann` file and its `.txt`)."""
    records, skipped, documents = [], Counter(), 0
    for ann in ann_files(path):
        txt = ann.with_suffix(".txt")
        if not txt.is_file():
            raise DataError(
                f"no {txt.name} beside it; brat keeps each document's text in NAME.txt next to NAME.ann.",
                source=str(ann),
            )
        text = read_utf8(str(txt)) if os.path.getsize(txt) else ""
        spans, other = read_ann(ann, text)
        skipped.update(other)
        records.extend(line_records(txt, text, spans, ann))
        documents += 1
    if skipped:
        logger.info("%s: annotation lines not read (only T lines are entities): %s", path, dict(skipped))
    logger.info("%s: %d brat documents, %d non-blank lines", path, documents, len(records))
    if not records:
        raise DataError("the documents hold no text.", source=path)
    return records
