"""Label Studio's JSON export (a list of tasks: `data` with the text, `annotations` with `result` lists) read into
`AnnotatedText` records, and `AnnotatedText` pre-annotations written as tasks with `predictions`, the shape Label
Studio imports for review (https://labelstud.io/guide/predictions).

A result of type `labels` is a span (`value.start`/`value.end`, character offsets into the text, `value.labels`
one label); one of type `choices` gives the text's labels (`value.choices`, one or several). Other result types
(relations, text areas, ratings) are counted in the log, not read.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from utils.core.annotations.records import AnnotatedText, code_point_offsets, make_choice, make_span
from utils.core.errors import DataError

logger = logging.getLogger(__name__)

SPAN_TYPE, CHOICE_TYPE = "labels", "choices"


def task_text(data: Any, location: str) -> str:
    """The text of a task: `data.text`, else its one string field (Label Studio's `$name` in the labelling config)."""
    if not isinstance(data, dict):
        raise DataError(
            f"the task's 'data' must be an object with the text, got {data!r:.80}; export the project "
            "as JSON (not JSON_MIN or CSV).",
            source=location,
        )
    if isinstance(data.get("text"), str):
        return data["text"]
    strings = [key for key, value in data.items() if isinstance(value, str)]
    if len(strings) != 1:
        raise DataError(
            f"cannot tell which field of 'data' is the text: no 'text' field and "
            f"{'no' if not strings else len(strings)} string fields {strings}; name the text field "
            "'text' in the labelling config ($text).",
            source=location,
        )
    return data[strings[0]]


def chosen_results(task: dict, key: str, location: str) -> list | None:
    """The result list of the task's first annotation that was not cancelled (None: the task is unlabelled)."""
    entries = task.get(key) or []
    if not isinstance(entries, list):
        raise DataError(f"'{key}' must be a list, got {entries!r:.80}.", source=location)
    kept = [entry for entry in entries if isinstance(entry, dict) and not entry.get("was_cancelled")]
    if len(kept) > 1:
        logger.warning(
            "%s: %d %s; the first is used (export one annotation per task to choose)", location, len(kept), key
        )
    if not kept:
        return None
    result = kept[0].get("result", [])
    if not isinstance(result, list):
        raise DataError(f"an annotation's 'result' must be a list, got {result!r:.80}.", source=location)
    return result


def read_task(
    task: Any, location: str, key: str, skipped_types: Counter, converted: list[str] | None = None
) -> AnnotatedText | None:
    """One task as a record (None when it has no annotation of `key`); spans whose offsets were UTF-16 code units
    are converted to characters and listed in `converted`."""
    if not isinstance(task, dict) or "data" not in task:
        raise DataError(
            "each task must be an object with 'data' and 'annotations'; export the project as JSON.", source=location
        )
    text = task_text(task["data"], location)
    results = chosen_results(task, key, location)
    if results is None:
        return None
    spans, choices = [], []
    for number, result in enumerate(results, start=1):
        where = f"{location} result {number}"
        kind = result.get("type") if isinstance(result, dict) else None
        value = result.get("value") if isinstance(result, dict) else None
        if kind not in (SPAN_TYPE, CHOICE_TYPE):
            skipped_types[str(kind)] += 1
            continue
        if not isinstance(value, dict):
            raise DataError(f"a '{kind}' result needs a 'value' object, got {value!r:.80}.", source=where)
        if kind == CHOICE_TYPE:
            chosen = value.get("choices")
            if not isinstance(chosen, list):
                raise DataError(f"'value.choices' must be a list of labels, got {chosen!r:.80}.", source=where)
            choices.extend(make_choice(label, where) for label in chosen)
            continue
        labels = value.get("labels")
        if not isinstance(labels, list) or len(labels) != 1:
            raise DataError(
                f"span [{value.get('start')}, {value.get('end')}) has labels {labels!r}; a span needs "
                "exactly one label (BIO tags hold one type per word). Keep one label in the tool.",
                source=where,
            )
        quoted = value.get("text")
        start, end = code_point_offsets(value.get("start"), value.get("end"), text, quoted, converted, where)
        spans.append(make_span(start, end, labels[0], text, where, quoted, result.get("score")))
    return AnnotatedText(text, tuple(spans), tuple(choices), location, location)


def read_label_studio(path: str, document: Any, key: str = "annotations") -> list[AnnotatedText]:
    """The tasks of an export that carry an annotation (`key="predictions"` reads the pre-annotations instead, as
    predict.py writes them); unlabelled tasks are counted in the log."""
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        raise DataError(
            'a Label Studio export is a JSON list of tasks [{"data": ..., "annotations": ...}]; '
            "export the project as JSON.",
            source=path,
        )
    skipped_types: Counter = Counter()
    converted: list[str] = []
    records = []
    for number, task in enumerate(document, start=1):
        record = read_task(task, f"{path} task {number}", key, skipped_types, converted)
        if record is not None:
            records.append(record)
    if len(records) < len(document):
        logger.info(
            "%s: %d of %d tasks have no %s and are not used", path, len(document) - len(records), len(document), key
        )
    if skipped_types:
        logger.info("%s: results not read (not labels or choices): %s", path, dict(skipped_types))
    if converted:
        logger.info(
            "%s: %d span(s) had offsets counted in UTF-16 code units (as Label Studio counts them: an emoji "
            "before a span counts twice); converted to characters, first at %s",
            path,
            len(converted),
            converted[0],
        )
    if not records:
        raise DataError(f"none of its {len(document)} tasks has {key}; label some tasks, then export.", source=path)
    return records


def label_studio_task(
    record: AnnotatedText, model_version: str, from_name: str = "label", to_name: str = "text"
) -> dict[str, Any]:
    """A task with the record as a prediction, for Label Studio to import: `data.text` (and `data.uncertainty`, a
    column to sort by), one prediction with `model_version`, its `score` and one result per span (type `labels`) or
    one `choices` result for the chosen labels."""
    result: list[dict[str, Any]] = []
    for number, span in enumerate(record.spans, start=1):
        item = {
            "id": f"p{number}",
            "from_name": from_name,
            "to_name": to_name,
            "type": SPAN_TYPE,
            "value": {
                "start": span.start,
                "end": span.end,
                "text": record.text[span.start : span.end],
                "labels": [span.label],
            },
        }
        if span.score is not None:
            item["score"] = span.score
        result.append(item)
    if record.choices:
        result.append(
            {
                "id": "p1",
                "from_name": from_name,
                "to_name": to_name,
                "type": CHOICE_TYPE,
                "value": {"choices": [choice.label for choice in record.choices]},
            }
        )
    data: dict[str, Any] = {"text": record.text}
    if record.uncertainty is not None:
        data["uncertainty"] = record.uncertainty
    prediction: dict[str, Any] = {"model_version": model_version, "result": result}
    if record.score is not None:
        prediction["score"] = record.score
    return {"data": data, "predictions": [prediction]}


def label_studio_tasks(
    records: Sequence[AnnotatedText], model_version: str, from_name: str = "label", to_name: str = "text"
) -> list[dict[str, Any]]:
    """Every record as a task (the JSON list Label Studio's import takes)."""
    return [label_studio_task(record, model_version, from_name, to_name) for record in records]
