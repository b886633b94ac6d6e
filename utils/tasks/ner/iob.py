"""Pure helpers for IOB-style tag sequences (IOB1, IOB2, IOBES), with conlleval's chunk semantics."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

OUTSIDE = "O"


@lru_cache(maxsize=4096)
def split_tag(tag: str) -> tuple[str, str]:
    """`B-PER` -> (`B`, `PER`); `O` -> (`O`, ``); a bare `PER` (IO scheme) -> (`I`, `PER`). Cached: a model has a
    handful of tags, and every predicted word's tag is split."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, sep, entity_type = tag.partition("-")
    if sep and prefix in {"B", "I", "E", "S", "L", "U"}:
        return {"L": "E", "U": "S"}.get(prefix, prefix), entity_type
    return "I", tag


def _chunk_ends(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
    if prev in {"E", "S"}:
        return True
    if prev == "B" and cur in {"B", "S", OUTSIDE}:
        return True
    if prev == "I" and cur in {"B", "S", OUTSIDE}:
        return True
    return prev != OUTSIDE and prev_type != cur_type


def _chunk_starts(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
    if cur in {"B", "S"}:
        return True
    if prev in {"E", "S", OUTSIDE} and cur in {"E", "I"}:
        return True
    return cur != OUTSIDE and prev_type != cur_type


@dataclass(frozen=True)
class Span:
    """An entity over words [start, end)."""

    label: str
    start: int
    end: int


def tags_to_spans(tags: Sequence[str]) -> list[Span]:
    """Entity spans as conlleval reads them (an `I-X` after `O` starts an entity, as in IOB1)."""
    spans: list[Span] = []
    prev, prev_type, start = OUTSIDE, "", None
    for index, tag in enumerate(list(tags) + [OUTSIDE]):
        cur, cur_type = split_tag(tag)
        if start is not None and _chunk_ends(prev, prev_type, cur, cur_type):
            spans.append(Span(prev_type, start, index))
            start = None
        if _chunk_starts(prev, prev_type, cur, cur_type):
            start = index
        prev, prev_type = cur, cur_type
    return spans


def count_invalid_transitions(tags: Sequence[str]) -> int:
    """How many `I-X` tags follow `O` or another type: invalid in IOB2 (conlleval scores them as entity starts)."""
    count, prev, prev_type = 0, OUTSIDE, ""
    for tag in tags:
        cur, cur_type = split_tag(tag)
        if cur in {"I", "E"} and (prev == OUTSIDE or prev_type != cur_type or prev in {"E", "S"}):
            count += 1
        prev, prev_type = cur, cur_type
    return count


def inside_tag(tag: str, known: Sequence[str] | set[str]) -> str:
    """The tag for a continuation piece of a word tagged `tag`: `B-X` becomes `I-X` when `I-X` is a known label."""
    prefix, entity_type = split_tag(tag)
    if prefix == "B" and f"I-{entity_type}" in known:
        return f"I-{entity_type}"
    return tag


PREFIXES = "BIESLU"


def malformed_tag_fix(tag: str) -> str | None:
    """The tag as it was surely meant when it is a misspelt IOB tag (`B_PER`, `b-loc`, `B-`, lowercase `o`), else
    None. Well-formed tags (`O`, `B-PER`, ...) and bare types (the IO scheme: `PER` reads as `I-PER`) are fine."""
    if tag == OUTSIDE:
        return None
    if tag == "o":
        return OUTSIDE
    prefix, sep, entity_type = tag.partition("-")
    if sep and len(prefix) == 1 and prefix in PREFIXES:
        return None if entity_type else f"{prefix}-TYPE"  # `B-` has no type
    match = re.fullmatch(rf"([{PREFIXES}{PREFIXES.lower()}])[-_.:](\S+)", tag)
    if match:
        return f"{match.group(1).upper()}-{match.group(2)}"
    return None
