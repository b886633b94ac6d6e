"""Character spans (annotation tools) <-> words and BIO tags, through the word splitter predict.py uses
(`words_with_offsets`), so a model trains on the words it will later be asked to tag.

A span must cover whole words: whitespace at its edges is trimmed (no word changes), but a span that cuts a word is
an error unless `--span_alignment expand` (widen to every word it touches) or `contract` (shrink to the words wholly
inside it; a span with none is dropped, and said so). Overlapping or nested spans, which BIO tags cannot hold, are
errors for the token head; the span head (--head span) takes them (`record_word_spans`). Every adjustment is
counted in the log, and the entities in the tags are checked against the spans read.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from datasets import Dataset

from utils.core.annotations.records import AnnotatedText, Span
from utils.core.errors import DataError
from utils.tasks.ner.iob import tags_to_spans
from utils.tasks.ner.words import Word, words_with_offsets

logger = logging.getLogger(__name__)

ALIGNMENTS = ("strict", "expand", "contract")

FIX = (
    "move the span to whole words in the tool, or pass --span_alignment expand (widen it to the words it "
    "touches) or --span_alignment contract (shrink it to the words inside it)."
)


def trimmed(span: Span, text: str, location: str) -> Span:
    """The span without whitespace at its edges (selections in annotation tools often take a space along)."""
    start, end = span.start, span.end
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start == end:
        raise DataError(f"{span.describe(text)} covers only whitespace; delete it in the tool.", source=location)
    return Span(start, end, span.label, span.score)


def word_range(span: Span, words: Sequence[Word], text: str, mode: str, location: str) -> tuple[int, int] | None:
    """The words [first, last) the span covers under `mode`; None when `contract` leaves no whole word."""
    touched = [i for i, word in enumerate(words) if word.start < span.end and word.end > span.start]
    inside = [i for i in touched if words[i].start >= span.start and words[i].end <= span.end]
    if touched == inside:
        return touched[0], touched[-1] + 1
    if mode == "strict":
        cut = [words[i].text for i in touched if i not in inside]
        raise DataError(
            f"{span.describe(text)} does not fall on word boundaries: it cuts {', '.join(map(repr, cut))} "
            f"(words as predict.py splits them: {[words[i].text for i in touched]}); {FIX}",
            source=location,
        )
    chosen = touched if mode == "expand" else inside
    return (chosen[0], chosen[-1] + 1) if chosen else None


def check_label(label: str, location: str, text: str, span: Span) -> None:
    """A label that makes a valid tag: not O, no whitespace (a CoNLL column)."""
    if label == "O" or any(character.isspace() for character in label):
        raise DataError(
            f"{span.describe(text)}: the label {label!r} cannot be an entity type (O means no entity; "
            "types hold no spaces); rename the label in the tool.",
            source=location,
        )


def check_no_overlap(
    spans: Sequence[Span],
    text: str,
    location: str,
    ranges: Sequence[tuple[int, int]] | None = None,
    mode: str = "strict",
) -> None:
    """Overlapping or nested spans (by characters, or by words after alignment) are an error naming both."""
    keyed = sorted(zip(ranges or [(s.start, s.end) for s in spans], spans), key=lambda pair: pair[0])
    for (previous, a), (current, b) in zip(keyed, keyed[1:]):
        if current[0] < previous[1]:
            after = f" once --span_alignment {mode} moved them to word boundaries" if ranges else ""
            raise DataError(
                f"{a.describe(text)} and {b.describe(text)} overlap{after}; BIO tags hold one entity per "
                "word, so the token head cannot train nested or overlapping entities: train the span head "
                "(--head span), or keep one of them.",
                source=location,
            )


def record_tags(
    text: str, spans: Sequence[Span], mode: str, location: str
) -> tuple[list[str], list[str], Counter, list[str]]:
    """A record's words and BIO tags, what was adjusted (`trimmed`, `expanded`, `contracted`) and the spans
    dropped (described), in the order of the text."""
    words, kept, ranges, adjusted, dropped = record_word_spans(text, spans, mode, location, nested=False)
    tags = ["O"] * len(words)
    for span, (first, last) in zip(kept, ranges):
        tags[first:last] = [f"B-{span.label}"] + [f"I-{span.label}"] * (last - first - 1)
    return [word.text for word in words], tags, adjusted, dropped


def record_word_spans(
    text: str, spans: Sequence[Span], mode: str, location: str, nested: bool
) -> tuple[list[Word], list[Span], list[tuple[int, int]], Counter, list[str]]:
    """A record's words, its spans kept and their word ranges [first, last), what was adjusted and the spans
    dropped; `nested`: overlapping spans are kept (the span head), else an error (the token head)."""
    words = words_with_offsets(text)
    if not words:
        raise DataError("the text has no words; remove the record or give it text.", source=location)
    adjusted: Counter = Counter()
    dropped: list[str] = []
    for span in spans:
        check_label(span.label, location, text, span)
    clean_spans = [trimmed(span, text, location) for span in spans]
    adjusted["trimmed"] = sum(clean != span for clean, span in zip(clean_spans, spans))
    if not nested:
        check_no_overlap(clean_spans, text, location)
    kept, ranges = [], []
    for span, clean in zip(spans, clean_spans):
        found = word_range(clean, words, text, mode, location)
        if found is None:
            dropped.append(
                f"{location}: {span.describe(text)} holds no whole word, dropped by --span_alignment contract"
            )
            continue
        if (words[found[0]].start, words[found[1] - 1].end) != (clean.start, clean.end):
            adjusted["expanded" if mode == "expand" else "contracted"] += 1
        kept.append(span)
        ranges.append(found)
    if not nested:
        check_no_overlap(kept, text, location, ranges, mode)
    return words, kept, ranges, adjusted, dropped


def ner_from_annotations(dataset: Dataset, mode: str, source: str) -> Dataset:
    """Annotation records (utils/core/annotations/loading.py) as canonical NER rows (tokens, ner_tags,
    document_id, location), every span accounted for in the log: spans read = entities in the tags + spans dropped,
    each dropped one named."""
    columns: dict[str, list] = {"tokens": [], "ner_tags": [], "document_id": [], "location": []}
    adjusted: Counter = Counter()
    dropped: list[str] = []
    read = choices = 0
    for record in dataset:
        spans = [Span(s["start"], s["end"], s["label"]) for s in record["spans"]]
        read += len(spans)
        choices += len(record["choices"])
        tokens, tags, changes, lost = record_tags(record["text"], spans, mode, record["location"])
        adjusted.update(changes)
        dropped.extend(lost)
        for name, value in (
            ("tokens", tokens),
            ("ner_tags", tags),
            ("document_id", record["document_id"]),
            ("location", record["location"]),
        ):
            columns[name].append(value)
    entities = sum(len(tags_to_spans(tags)) for tags in columns["ner_tags"])
    if entities != read - len(dropped):  # a guard on the conversion itself: nothing may vanish unreported
        raise DataError(
            f"{read} spans read but {entities} entities in the tags and {len(dropped)} dropped; please "
            "report this with the file.",
            source=source,
        )
    changes = ", ".join(f"{count} {kind}" for kind, count in sorted(adjusted.items()) if count) or "none adjusted"
    logger.info(
        "%s: %d spans read -> %d entities trained on (%s; %d dropped)", source, read, entities, changes, len(dropped)
    )
    for line in dropped:
        logger.warning("%s", line)
    if choices:
        logger.info("%s: %d choices (text labels) not used: NER trains on spans", source, choices)
    return Dataset.from_dict(columns)


def token_offsets(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Character offsets of pre-split words in their text as predict.py gives it: the words joined by spaces."""
    offsets, position = [], 0
    for token in tokens:
        offsets.append((position, position + len(token)))
        position += len(token) + 1
    return offsets


def ner_annotation(result: dict[str, Any]) -> AnnotatedText:
    """`Task.annotation` of NER: a predict.py result as spans with character offsets into its text (pre-split words:
    into the words joined by spaces, the result's `text`), each with its entity score."""
    entities = result.get("entities", [])
    if "tokens" in result:
        offsets = token_offsets(result["tokens"])
        spans = tuple(
            Span(offsets[e["start"]][0], offsets[e["end"] - 1][1], e["label"], e.get("score")) for e in entities
        )
    else:
        spans = tuple(Span(e["start"], e["end"], e["label"], e.get("score")) for e in entities)
    uncertainty = result.get("uncertainty")
    return AnnotatedText(
        result["text"],
        spans,
        uncertainty=uncertainty,
        score=None if uncertainty is None else round(1 - uncertainty, 4),
    )
