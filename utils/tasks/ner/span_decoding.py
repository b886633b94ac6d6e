"""The span head's candidates and decoding (pure): every word span up to `max_span_length` words is classified
(one label per span, `NO_ENTITY` first), and the spans classified as entities become a sentence's entities.

Decoding keeps the most probable entities first and drops a span that conflicts with one already kept: in `nested`
mode a conflict is a crossing (two spans that overlap without one containing the other: no annotation scheme
nests them), in `flat` mode any overlap (what BIO can hold, so a flat result writes to CoNLL). This greedy order is
SpanNER's heuristic decoding (Fu et al., 2021); it keeps the best entity of every conflict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from utils.tasks.ner.iob import Span

NESTED, FLAT = "nested", "flat"
SPAN_DECODINGS = (NESTED, FLAT)

#: Label id 0 of the span head: the span is no entity.
NO_ENTITY = "O"


def enumerate_spans(n_words: int, max_span_length: int) -> list[tuple[int, int]]:
    """Every [start, end) word span of at most `max_span_length` words, by start then length."""
    return [
        (start, end) for start in range(n_words) for end in range(start + 1, min(n_words, start + max_span_length) + 1)
    ]


def crosses(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Overlapping without one containing the other."""
    overlap = a[0] < b[1] and b[0] < a[1]
    nested = (a[0] <= b[0] and b[1] <= a[1]) or (b[0] <= a[0] and a[1] <= b[1])
    return overlap and not nested


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def decode_spans(
    candidates: Sequence[tuple[int, int]], probabilities: np.ndarray, names: Sequence[str], mode: str = NESTED
) -> list[tuple[Span, float]]:
    """A sentence's entities with their probabilities, in text order, from each candidate span's label
    probabilities ([spans, labels], label 0 `NO_ENTITY`): the spans whose best label is an entity, most probable
    first, each kept unless it conflicts (`mode`) with one kept before it."""
    if mode not in SPAN_DECODINGS:
        raise ValueError(f"unknown span decoding {mode!r}; one of {', '.join(SPAN_DECODINGS)}")
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(len(candidates), len(names))
    best = probabilities.argmax(axis=1) if len(candidates) else np.zeros(0, dtype=np.int64)
    entities = [i for i in range(len(candidates)) if best[i] != 0]
    # most probable first; ties by position, so the result never depends on the candidates' order
    entities.sort(key=lambda i: (-probabilities[i, best[i]], candidates[i]))
    conflict = crosses if mode == NESTED else overlaps
    kept: list[int] = []
    for i in entities:
        if not any(conflict(candidates[i], candidates[j]) for j in kept):
            kept.append(i)
    kept.sort(key=lambda i: (candidates[i][0], -candidates[i][1]))
    return [(Span(names[best[i]], *candidates[i]), float(probabilities[i, best[i]])) for i in kept]


def nesting_depth(spans: Sequence[Span]) -> list[int]:
    """Each span's depth among `spans`: how many other extents contain it (0: outermost). Two types on the same
    words are one extent: neither is inside the other."""
    extents = {(o.start, o.end) for o in spans}
    return [sum(a <= s.start and s.end <= b and (a, b) != (s.start, s.end) for a, b in extents) for s in spans]


def is_nested(spans: Sequence[Span]) -> list[bool]:
    """Whether each span contains, or is contained in, or shares its words with, another span of `spans`."""
    return [any(overlaps((s.start, s.end), (o.start, o.end)) for o in spans if o is not s) for s in spans]
