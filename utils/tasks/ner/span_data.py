"""The span head's data: sentences with entities as word spans, which may nest or overlap.

JSON/JSONL rows `{"tokens": [...], "entities": [{"start", "end", "label"}]}` (word indices, end exclusive) or
`{"text": "...", "entities": [...]}` (character offsets, which must fall on word boundaries as
utils/tasks/ner/words.py splits the text); any other source the token head reads (CoNLL, tables of BIO tags) gives
its entities as the tags spell them (flat). Canonical columns: tokens, document_id, location, span_starts,
span_ends, span_labels.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from datasets import Dataset, DatasetDict

from utils.core.data import file_format, split_source
from utils.core.errors import DataError
from utils.core.task import LoadedData
from utils.tasks.ner.arguments import NerDataArguments
from utils.tasks.ner.iob import tags_to_spans
from utils.tasks.ner.words import words_with_offsets

logger = logging.getLogger(__name__)

SPAN_COLUMNS = ("span_starts", "span_ends", "span_labels")
SAMPLE_LIMITS = {"train": "max_train_samples", "validation": "max_eval_samples", "test": "max_predict_samples"}


def read_json_rows(path: str) -> list[tuple[dict, str]]:
    """(row, location) of a JSONL file (one object a line) or of a JSON file holding a list of objects."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON: {err.msg}", source=f"{path}:{err.lineno}:{err.colno}") from None
        return [(row, f"{path} row {i}") for i, row in enumerate(rows)]
    result = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            result.append((json.loads(line), f"{path}:{number}"))
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON: {err.msg}", source=f"{path}:{number}:{err.colno}") from None
    return result


def row_spans(row: Any, location: str) -> tuple[list[str], list[tuple[int, int, str]]]:
    """A row's words and its entities as word spans, checked."""
    if not isinstance(row, dict) or "entities" not in row or ("tokens" not in row and "text" not in row):
        raise DataError('each row needs "entities" and "tokens" (words) or "text" (character offsets).', location)
    if "tokens" in row:
        words = row["tokens"]
        if not isinstance(words, list) or not words or any(not isinstance(w, str) or not w.strip() for w in words):
            raise DataError('"tokens" must be a non-empty list of non-empty strings.', location)
        to_words: Callable[[int, int], tuple[int, int] | None] = lambda start, end: (start, end)  # noqa: E731
        limit = len(words)
    else:
        if not isinstance(row["text"], str) or not row["text"].strip():
            raise DataError('"text" must be a non-empty string.', location)
        found = words_with_offsets(row["text"])
        words = [w.text for w in found]
        starts, ends = {w.start: i for i, w in enumerate(found)}, {w.end: i + 1 for i, w in enumerate(found)}
        to_words = lambda start, end: (starts[start], ends[end]) if start in starts and end in ends else None  # noqa: E731
        limit = len(row["text"])
    entities = row["entities"]
    if not isinstance(entities, list):
        raise DataError('"entities" must be a list of {"start", "end", "label"}.', location)
    spans = []
    for number, entity in enumerate(entities, start=1):
        where = f"{location}, entity {number}"
        if not isinstance(entity, dict) or any(key not in entity for key in ("start", "end", "label")):
            raise DataError('an entity needs "start", "end" and "label".', where)
        start, end, label = entity["start"], entity["end"], entity["label"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) or not 0 <= start < end:
            raise DataError(f"start {start!r} and end {end!r} must be integers with 0 <= start < end.", where)
        if end > limit:
            raise DataError(f"end {end} is past the row's end ({limit}).", where)
        if not isinstance(label, str) or not label.strip() or label == "O":
            raise DataError(f"label {label!r} must be a non-empty type name other than O.", where)
        span = to_words(start, end)
        if span is None:
            raise DataError(
                f"characters {start}-{end} ({row['text'][start:end]!r}) do not start and end on word "
                'boundaries; fix the offsets or give pre-split "tokens" with word indices.',
                where,
            )
        spans.append((*span, label))
    return list(words), spans


def read_span_file(path: str) -> Dataset:
    """A JSON/JSONL file of rows with entities, in the canonical span columns."""
    columns: dict[str, list] = {"tokens": [], "document_id": [], "location": [], **{c: [] for c in SPAN_COLUMNS}}
    for row_number, (row, location) in enumerate(read_json_rows(path)):
        words, spans = row_spans(row, location)
        columns["tokens"].append(words)
        columns["document_id"].append(str(row.get("document_id", row_number)))
        columns["location"].append(location)
        for column, values in zip(SPAN_COLUMNS, zip(*spans) if spans else ((), (), ())):
            columns[column].append(list(values))
    if not columns["tokens"]:
        raise DataError("holds no rows.", source=path)
    return Dataset.from_dict(columns)


def spans_from_tags(dataset: Dataset) -> Dataset:
    """BIO-tagged sentences (the token head's canonical split) in the span columns (flat entities)."""

    def convert(row):
        spans = tags_to_spans(row["ner_tags"])
        return {
            "span_starts": [s.start for s in spans],
            "span_ends": [s.end for s in spans],
            "span_labels": [s.label for s in spans],
        }

    return dataset.map(convert, remove_columns=["ner_tags"], desc="Entities from tags")


def has_entity_rows(path: str, data_args: NerDataArguments) -> bool:
    """Whether a file is JSON/JSONL whose first row gives entities (else the token head's readers take it)."""
    if file_format(path, data_args.data_format) not in ("json", "jsonl"):
        return False
    rows = read_json_rows(path)
    return bool(rows) and isinstance(rows[0][0], dict) and "entities" in rows[0][0]


def load_span_data(data_args: NerDataArguments, model_args, load_tagged: Callable) -> LoadedData:
    """Every split in the span columns: entity rows read here, other sources through the token head's loader
    (`load_tagged`) and their tags turned into spans."""
    result = DatasetDict()
    tagged = None
    for split in ("train", "validation", "test"):
        path = getattr(data_args, f"{split}_file" if split != "validation" else "validation_file", None)
        if path and not data_args.dataset_name and has_entity_rows(path, data_args):
            dataset = read_span_file(path)
            limit = getattr(data_args, SAMPLE_LIMITS[split], None)
            result[split] = dataset.select(range(min(limit, len(dataset)))) if limit else dataset
            continue
        if path or data_args.dataset_name:
            tagged = tagged or load_tagged(data_args, model_args).raw
            if split in tagged and "span_labels" in tagged[split].column_names:  # annotation-tool exports
                result[split] = tagged[split]
            elif split in tagged:
                source = split_source(data_args, split)
                if "ner_tags" not in tagged[split].column_names:
                    raise DataError("has no entities or tags; the span head needs gold entities.", source=source)
                result[split] = spans_from_tags(tagged[split])
    for split, dataset in result.items():
        nested = sum(overlapping_entities(s, e) for s, e in zip(dataset["span_starts"], dataset["span_ends"]))
        entities = sum(len(s) for s in dataset["span_starts"])
        logger.info("%s: %d entities, %d of them overlapping another (nested).", split, entities, nested)
    return LoadedData(result, data_args)


def overlapping_entities(starts: list[int], ends: list[int]) -> int:
    """How many of a sentence's entities overlap another of them."""
    spans = list(zip(starts, ends))
    return sum(any(a < d and c < b for j, (c, d) in enumerate(spans) if j != i) for i, (a, b) in enumerate(spans))


def spans_from_annotations(dataset: Dataset, mode: str, source: str) -> Dataset:
    """Annotation records (Label Studio, doccano, brat) in the span columns, nested and overlapping spans kept;
    every span read is an entity or named as dropped (--span_alignment contract)."""
    from utils.core.annotations.records import Span as CharSpan
    from utils.tasks.ner.spans import record_word_spans

    columns: dict[str, list] = {"tokens": [], "document_id": [], "location": [], **{c: [] for c in SPAN_COLUMNS}}
    read = kept_count = duplicates = 0
    for record in dataset:
        spans = [CharSpan(s["start"], s["end"], s["label"]) for s in record["spans"]]
        read += len(spans)
        words, kept, ranges, _, dropped = record_word_spans(record["text"], spans, mode, record["location"], True)
        for line in dropped:
            logger.warning("%s", line)
        unique = sorted({(first, last, span.label) for span, (first, last) in zip(kept, ranges)})
        kept_count += len(unique)
        duplicates += len(kept) - len(unique)
        columns["tokens"].append([word.text for word in words])
        columns["document_id"].append(record["document_id"])
        columns["location"].append(record["location"])
        for column, values in zip(SPAN_COLUMNS, zip(*unique) if unique else ((), (), ())):
            columns[column].append(list(values))
    logger.info(
        "%s: %d spans read -> %d entities for the span head (%d the same words and label as another, %d dropped)",
        source,
        read,
        kept_count,
        duplicates,
        read - kept_count - duplicates,
    )
    return Dataset.from_dict(columns)
