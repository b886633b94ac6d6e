"""Annotation-tool files as one `Dataset` per split, the shape the tasks convert (NER: spans to BIO tags;
classification: choices to labels): `text`, `spans` ({start, end, label} character spans), `choices` (label
names), `location` (file and task, line or record, for error messages) and `document_id`.

The formats are chosen with `--data_format label-studio|doccano|brat`, or told from the file's shape where the
extension is shared with plain tables (Label Studio's `.json`, doccano's `.jsonl`: utils/core/format_detection.py).
A folder, or an `.ann` file, is brat without being told.
"""

from __future__ import annotations

import logging

from datasets import Dataset, Features, Value

from utils.core.annotations.brat import read_brat
from utils.core.annotations.doccano import read_doccano_record
from utils.core.annotations.label_studio import read_label_studio
from utils.core.annotations.records import ANNOTATION_FORMATS, AnnotatedText
from utils.core.errors import DataError
from utils.core.files import read_utf8, read_utf8_lines
from utils.core.json_text import parse_json

logger = logging.getLogger(__name__)


FEATURES = Features(
    {
        "text": Value("string"),
        "spans": [{"start": Value("int64"), "end": Value("int64"), "label": Value("string")}],
        "choices": [Value("string")],
        "location": Value("string"),
        "document_id": Value("string"),
    }
)


def read_annotation_records(path: str, fmt: str, key: str = "annotations") -> list[AnnotatedText]:
    """The records of one annotation file (brat: folder) in `fmt`; `key` chooses Label Studio's human
    `annotations` or the model's `predictions`."""
    if fmt == "brat":
        return read_brat(path)
    if fmt == "label-studio":
        return read_label_studio(path, parse_json(read_utf8(path), path), key)
    if fmt == "doccano":
        records = [
            read_doccano_record(parse_json(line, f"{path}:{number}"), f"{path}:{number}")
            for number, line in enumerate(read_utf8_lines(path), start=1)
            if line.strip()
        ]
        if not records:
            raise DataError("is empty.", source=path)
        return records
    raise DataError(
        f"--data_format {fmt} is not an annotation format; use one of {list(ANNOTATION_FORMATS)}.", source=path
    )


def records_dataset(records: list[AnnotatedText]) -> Dataset:
    """Records as the columns the tasks read."""
    return Dataset.from_dict(
        {
            "text": [record.text for record in records],
            "spans": [
                [{"start": s.start, "end": s.end, "label": s.label} for s in record.spans] for record in records
            ],
            "choices": [[choice.label for choice in record.choices] for record in records],
            "location": [record.location for record in records],
            "document_id": [record.document for record in records],
        },
        features=FEATURES,
    )


def load_annotation_file(path: str, fmt: str) -> Dataset:
    """One split from an annotation file (or brat folder), with how many spans and choices it holds in the log."""
    records = read_annotation_records(path, fmt)
    logger.info(
        "%s (%s): %d records, %d spans, %d choices",
        path,
        fmt,
        len(records),
        sum(len(record.spans) for record in records),
        sum(len(record.choices) for record in records),
    )
    return records_dataset(records)
