"""Formats told from a file's shape where the extension is shared (Label Studio, doccano, a JSON document in a .jsonl
file), logged, the flag still winning; Label Studio offsets in UTF-16 code units converted, with a count."""

import json
import logging

import pytest

from utils.core.annotations.records import code_point_offsets
from utils.core.arguments import ModelArguments
from utils.core.data import file_format
from utils.core.errors import DataError
from utils.tasks.classification.arguments import ClassificationDataArguments
from utils.tasks.classification.data import load_classification_data
from utils.tasks.ner.arguments import NerDataArguments
from utils.tasks.ner.data import load_ner_data


def ner(**kwargs):
    return load_ner_data(NerDataArguments(**kwargs), ModelArguments()).raw


def classification(**kwargs):
    """(canonical splits, what loading settled: problem type and label order)."""
    data = load_classification_data(ClassificationDataArguments(**kwargs), ModelArguments())
    return data.raw, data.settled


def span(start, end, label, text):
    return {
        "type": "labels",
        "from_name": "label",
        "to_name": "text",
        "value": {"start": start, "end": end, "labels": [label], "text": text},
    }


def task(text, *spans):
    return {"id": 1, "data": {"text": text}, "annotations": [{"result": list(spans)}]}


def test_a_label_studio_export_is_detected_and_logged(write_file, caplog):
    export = write_file(
        "export.json", json.dumps([task("Angela Merkel visited Paris", span(0, 13, "PER", "Angela Merkel"))])
    )
    with caplog.at_level(logging.INFO, logger="utils"):
        raw = ner(train_file=export)
    assert raw["train"]["tokens"] == [["Angela", "Merkel", "visited", "Paris"]]
    assert raw["train"]["ner_tags"] == [["B-PER", "I-PER", "O", "O"]]
    assert (
        f"{export}: read as label-studio (detected from its content: a list of tasks with 'data' and "
        "'annotations'); --data_format overrides."
    ) in caplog.text


def test_the_flag_still_wins(write_file):
    export = write_file("export.json", json.dumps([task("Angela Merkel", span(0, 13, "PER", "Angela Merkel"))]))
    with pytest.raises(
        DataError,
        match=r"none of the usual columns \['tokens', 'words'\] exists; it has "
        r"\['id', 'data', 'annotations'\]",
    ):
        ner(train_file=export, data_format="json")


def test_doccano_exports_are_detected(write_file):
    spans = write_file(
        "ner.jsonl",
        json.dumps({"id": 3, "text": "Peter lives in Ulm", "label": [[0, 5, "PER"], [15, 18, "LOC"]], "Comments": []})
        + "\n",
    )
    assert ner(train_file=spans)["train"]["ner_tags"] == [["B-PER", "O", "O", "B-LOC"]]
    names = write_file(
        "cls.jsonl",
        "".join(
            json.dumps({"id": i, "text": t, "label": [name], "Comments": []}) + "\n"
            for i, (t, name) in enumerate([("good", "pos"), ("bad", "neg")])
        ),
    )
    raw, args = classification(train_file=names)
    assert raw["train"]["label"] == ["pos", "neg"] and args.problem_type == "single_label_classification"


def test_plain_tables_stay_tables(write_file):
    table = write_file(
        "multi.jsonl",
        json.dumps({"text": "a", "label": ["x"]}) + "\n" + json.dumps({"text": "b", "label": ["y", "x"]}) + "\n",
    )
    assert file_format(table) == "jsonl"
    raw, args = classification(train_file=table)
    assert raw["train"]["label"] == [["x"], ["x", "y"]] and args.problem_type == "multi_label_classification"
    assert file_format(write_file("rows.json", json.dumps([{"tokens": ["a"], "ner_tags": ["O"]}]))) == "json"


def test_a_json_document_in_a_jsonl_file_is_read_as_one(write_file):
    path = write_file("train.jsonl", json.dumps([{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]))
    assert file_format(path) == "json"
    raw, _ = classification(train_file=path)
    assert raw["train"]["label"] == ["pos", "neg"]


def test_utf16_offsets_after_an_emoji_are_converted_and_counted(write_file, caplog):
    text = "😀 🎉 Angela Merkel visited Paris"  # two emoji: each is one character but two UTF-16 units
    assert text[4:17] == "Angela Merkel"
    export = write_file(
        "export.json",
        json.dumps(
            [
                task(text, span(6, 19, "PER", "Angela Merkel"), span(28, 33, "LOC", "Paris")),
                task("Paris again", span(0, 5, "LOC", "Paris")),
            ]
        ),
    )
    with caplog.at_level(logging.INFO, logger="utils"):
        raw = ner(train_file=export, data_format="label-studio", span_alignment="expand")
    assert raw["train"]["tokens"][0] == ["😀", "🎉", "Angela", "Merkel", "visited", "Paris"]
    assert raw["train"]["ner_tags"][0] == ["O", "O", "B-PER", "I-PER", "O", "B-LOC"]
    assert (
        f"{export}: 2 span(s) had offsets counted in UTF-16 code units (as Label Studio counts them: an emoji "
        f"before a span counts twice); converted to characters, first at {export} task 1 result 1"
    ) in caplog.text


def test_offsets_are_converted_only_when_utf16_reading_gives_the_quoted_text():
    text = "😀 Paris"
    assert code_point_offsets(2, 7, text, "Paris") == (2, 7)  # already characters
    assert code_point_offsets(3, 8, text, "Paris") == (2, 7)  # UTF-16 units
    assert code_point_offsets(1, 4, text, "Par") == (1, 4)  # inside the emoji's surrogate pair: left for make_span
    assert code_point_offsets(3, 8, text, None) == (3, 8)  # nothing quoted: nothing to prove it by


def test_a_table_with_ids_and_label_lists_stays_a_table(write_file):
    rows = [{"id": 1, "text": "a", "label": []}, {"id": 2, "text": "b", "label": ["x"]}]
    assert file_format(write_file("t.jsonl", "".join(json.dumps(row) + "\n" for row in rows))) == "jsonl"


def test_a_rewritten_file_is_looked_at_again(write_file):
    import os

    doccano = json.dumps({"id": 1, "text": "Peter", "label": [[0, 5, "PER"]]}) + "\n"
    table = json.dumps({"id": 1, "text": "Peter", "label": "positive12345"}) + "\n"
    assert len(doccano) == len(table)
    path = write_file("same.jsonl", doccano)
    stamp = os.stat(path).st_mtime_ns
    assert file_format(path) == "doccano"
    write_file("same.jsonl", table)
    os.utime(path, ns=(stamp, stamp))  # same size, same time stamp (cp -p, rsync -t)
    assert file_format(path) == "jsonl"
