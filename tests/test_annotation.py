"""Annotation-tool data (utils/core/annotations, utils/tasks/ner/spans.py, utils/tasks/classification/choices.py)
and pre-annotations (predict.py --output_format / --select_uncertain): the readers on the shipped samples in
data/annotation/, every error with its message, the span <-> word conversion as properties, and the loop end to
end: train from each format, predict, export, read the export back into the same spans."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import predict
import run_classification
import run_ner
from tests.conftest import ROOT
from utils.core.annotations.loading import read_annotation_records
from utils.core.annotations.records import Span
from utils.core.errors import ConfigError, DataError
from utils.tasks.classification.uncertainty import text_uncertainty
from utils.tasks.ner.iob import tags_to_spans
from utils.tasks.ner.spans import record_tags, token_offsets
from utils.tasks.ner.uncertainty import sentence_uncertainty
from utils.tasks.ner.words import words_with_offsets

SAMPLES = ROOT / "data" / "annotation"
NER_SAMPLES = {
    "label-studio": SAMPLES / "ner" / "label_studio.json",
    "doccano": SAMPLES / "ner" / "doccano.jsonl",
    "brat": SAMPLES / "ner" / "brat",
}
TEXT = "Angela Merkel visited Paris ."


def ls_task(text: str, *spans: tuple, key: str = "annotations") -> dict:
    """A Label Studio task as its JSON export writes it, with `labels` results."""
    result = [
        {
            "value": {"start": s, "end": e, "labels": labels if isinstance(labels, list) else [labels]},
            "id": f"r{i}",
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
        }
        for i, (s, e, labels) in enumerate(spans)
    ]
    return {"id": 1, "data": {"text": text}, key: [{"id": 1, "result": result, "was_cancelled": False}]}


def write_ls(write_file, *tasks: dict) -> str:
    return write_file("export.json", json.dumps(list(tasks)))


def tags(text: str, spans: list[Span], mode: str = "strict") -> tuple[list[str], list[str]]:
    tokens, tag_list, _, _ = record_tags(text, spans, mode, "f task 1")
    return tokens, tag_list


# ------------------------------------------------------------------ readers on the shipped samples


@pytest.mark.parametrize("fmt", sorted(NER_SAMPLES))
def test_every_sample_span_becomes_an_entity(fmt, caplog):
    from utils.core.arguments import ModelArguments
    from utils.tasks.ner.arguments import NerDataArguments
    from utils.tasks.ner.data import load_ner_data

    records = read_annotation_records(str(NER_SAMPLES[fmt]), fmt)
    spans = sum(len(record.spans) for record in records)
    with caplog.at_level(logging.INFO):
        raw = load_ner_data(NerDataArguments(train_file=str(NER_SAMPLES[fmt]), data_format=fmt), ModelArguments()).raw
    assert len(raw["train"]) == len(records) == 40
    assert sum(len(tags_to_spans(t)) for t in raw["train"]["ner_tags"]) == spans > 80
    assert f"{spans} spans read -> {spans} entities trained on (none adjusted; 0 dropped)" in caplog.text


def test_label_studio_skips_unlabelled_tasks_and_says_so(caplog):
    with caplog.at_level(logging.INFO):
        records = read_annotation_records(str(NER_SAMPLES["label-studio"]), "label-studio")
    assert len(records) == 40 and "1 of 41 tasks have no annotations and are not used" in caplog.text


def test_brat_lines_keep_their_document_and_line(caplog):
    with caplog.at_level(logging.INFO):
        records = read_annotation_records(str(NER_SAMPLES["brat"]), "brat")
    assert records[0].document == "doc1" and records[0].location.endswith("doc1.txt:1")
    assert all(record.text[s.start : s.end] for record in records for s in record.spans)
    assert "annotation lines not read (only T lines are entities): {'#': 4}" in caplog.text


# ------------------------------------------------------------------ every error, with its message


def test_misaligned_span_is_an_error_naming_file_task_and_span(write_file, tmp_path):
    path = write_ls(write_file, ls_task(TEXT, (0, 10, "PER")))
    with pytest.raises(
        DataError,
        match=re.escape(
            f"{path} task 1: span [0, 10) PER 'Angela Mer' does not fall on word boundaries: it cuts "
            "'Merkel' (words as predict.py splits them: ['Angela', 'Merkel']); move the span to whole words in the "
            "tool, or pass --span_alignment expand"
        ),
    ):
        run_ner.main(["--train_file", path, "--data_format", "label-studio", "--output_dir", str(tmp_path / "o")])


@pytest.mark.parametrize(
    "mode, expected", [("expand", ["B-PER", "I-PER", "O", "O", "O"]), ("contract", ["B-PER", "O", "O", "O", "O"])]
)
def test_span_alignment_expand_and_contract_are_counted(mode, expected):
    tokens, tag_list, adjusted, dropped = record_tags(TEXT, [Span(0, 10, "PER")], mode, "f")
    assert tag_list == expected and adjusted[mode + "ed"] == 1 and not dropped


def test_contract_drops_a_span_without_a_whole_word_and_reports_it():
    _, tag_list, _, dropped = record_tags(TEXT, [Span(1, 5, "PER")], "contract", "f task 3")
    assert tag_list == ["O"] * 5
    assert dropped == ["f task 3: span [1, 5) PER 'ngel' holds no whole word, dropped by --span_alignment contract"]


def test_whitespace_at_span_edges_is_trimmed_and_counted():
    _, tag_list, adjusted, _ = record_tags(TEXT, [Span(21, 28, "LOC")], "strict", "f")
    assert tag_list[3] == "B-LOC" and adjusted["trimmed"] == 1


@pytest.mark.parametrize(
    "spans, message",
    [
        (
            [Span(0, 13, "PER"), Span(7, 13, "PER")],
            "f task 1: span [0, 13) PER 'Angela Merkel' and span [7, 13) PER 'Merkel' overlap; BIO tags hold one "
            "entity per word, so the token head cannot train nested or overlapping entities: train the span head "
            "(--head span), or keep one of them.",
        ),
        (
            [Span(0, 3, "PER"), Span(4, 13, "PER")],
            "f task 1: span [0, 3) PER 'Ang' and span [4, 13) PER 'la Merkel' overlap once --span_alignment expand "
            "moved them to word boundaries",
        ),
        ([Span(13, 14, "PER")], "f task 1: span [13, 14) PER ' ' covers only whitespace; delete it in the tool."),
        ([Span(0, 6, "O")], "f task 1: span [0, 6) O 'Angela': the label 'O' cannot be an entity type"),
    ],
)
def test_overlaps_whitespace_and_bad_labels_are_errors(spans, message):
    with pytest.raises(DataError, match=re.escape(message)):
        record_tags(TEXT, spans, "expand", "f task 1")


@pytest.mark.parametrize(
    "task, message",
    [
        (
            ls_task(TEXT, (20, 40, "LOC")),
            "task 1 result 1: span [20, 40) LOC is outside the text (length 29) or empty; "
            "the offsets must satisfy 0 <= start < end <= length.",
        ),
        (
            ls_task(TEXT, (0, 6, ["PER", "ORG"])),
            "task 1 result 1: span [0, 6) has labels ['PER', 'ORG']; a span needs exactly one label",
        ),
        (
            {
                "data": {"text": TEXT},
                "annotations": [
                    {
                        "result": [
                            {"type": "labels", "value": {"start": 0, "end": 6, "text": "Angie", "labels": ["PER"]}}
                        ]
                    }
                ],
            },
            "task 1 result 1: span [0, 6) PER: the export quotes 'Angie' but the text there is 'Angela'",
        ),
        ({"data": {"a": "x", "b": "y"}, "annotations": []}, "task 1: cannot tell which field of 'data' is the text"),
    ],
)
def test_label_studio_errors(write_file, task, message):
    path = write_ls(write_file, task)
    with pytest.raises(DataError, match=re.escape(f"{path} {message}")):
        read_annotation_records(path, "label-studio")


def test_brat_crlf_documents_keep_offsets_and_leave_the_carriage_return_out(write_file):
    write_file("crlf/a.txt", "Angela Merkel\r\nvisited Paris .\r\n")
    ann = write_file("crlf/a.ann", "T1\tPER 0 14\nT2\tLOC 23 28\tParis\n")  # T1 takes the CR along
    records = read_annotation_records(ann, "brat")
    assert [(r.text, r.spans) for r in records] == [
        ("Angela Merkel", (Span(0, 13, "PER"),)),
        ("visited Paris .", (Span(8, 13, "LOC"),)),
    ]


def test_doccano_and_brat_errors(write_file):
    path = write_file("d.jsonl", json.dumps({"text": TEXT, "spans": []}) + "\n")
    with pytest.raises(
        DataError,
        match=re.escape(
            f"{path}:1: no labels: the line has none of ['label', 'labels', 'entities'] (it has ['spans', 'text'])"
        ),
    ):
        read_annotation_records(path, "doccano")
    path = write_file("d2.jsonl", json.dumps({"text": TEXT, "label": [[0, 6.5, "PER"]]}) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:1: span [0, 6.5) 'PER': offsets must be integers")):
        read_annotation_records(path, "doccano")
    write_file("b/a.txt", "Angela Merkel\nvisited Paris .\n")
    ann = write_file("b/a.ann", "T1\tPER 0 6;7 13\tAngela Merkel\n")
    with pytest.raises(DataError, match=re.escape(f"{ann}:1: T1 PER is discontinuous (0 6;7 13)")):
        read_annotation_records(ann, "brat")
    write_file("b/a.ann", "T1\tPER 7 21\n")
    with pytest.raises(DataError, match=re.escape("crosses the line break after line 1 of")):
        read_annotation_records(ann, "brat")
    lonely = write_file("c/b.ann", "")
    with pytest.raises(DataError, match=re.escape(f"{lonely}: no b.txt beside it")):
        read_annotation_records(lonely, "brat")


def test_single_label_record_without_choice_is_an_error(write_file, tmp_path):
    tasks = [
        {
            "data": {"text": "fine"},
            "annotations": [{"result": [{"type": "choices", "value": {"choices": ["positive"]}}]}],
        },
        {"data": {"text": "meh"}, "annotations": [{"result": []}]},
    ]
    path = write_file("c.json", json.dumps(tasks))
    with pytest.raises(
        DataError, match=re.escape(f"{path} task 2: no choice: every record of single-label data needs one.")
    ):
        run_classification.main(
            ["--train_file", path, "--data_format", "label-studio", "--output_dir", str(tmp_path / "o")]
        )


# ------------------------------------------------------------------ span <-> word conversion, as properties

TEXTS = st.text(alphabet="ab AB.,-'1\n", min_size=1, max_size=40)


@given(TEXTS, st.data())
def test_spans_on_word_boundaries_come_back_from_the_tags(text, data):
    words = words_with_offsets(text)
    if not words:
        return
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(words)), max_size=6))) | {0, len(words)})
    ranges = [(a, b) for a, b in zip(cuts, cuts[1:]) if data.draw(st.booleans())]
    spans = [Span(words[a].start, words[b - 1].end, data.draw(st.sampled_from(["PER", "LOC"]))) for a, b in ranges]
    tokens, tag_list = tags(text, spans)
    assert tokens == [word.text for word in words]
    back = [Span(words[s.start].start, words[s.end - 1].end, s.label) for s in tags_to_spans(tag_list)]
    assert back == spans


@given(TEXTS, st.data())
def test_expand_covers_and_contract_stays_inside_any_span(text, data):
    words = words_with_offsets(text)
    if not words or not text.strip():
        return
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    if not text[start:end].strip():
        return
    span = [Span(start, end, "X")]
    core = text[start:end].strip()
    first = start + text[start:end].index(core)
    _, wide = tags(text, span, "expand")
    (entity,) = tags_to_spans(wide)
    assert words[entity.start].start <= first and words[entity.end - 1].end >= first + len(core)
    _, narrow, _, dropped = record_tags(text, span, "contract", "f")
    for entity in tags_to_spans(narrow):
        assert words[entity.start].start >= first and words[entity.end - 1].end <= first + len(core)
    assert len(tags_to_spans(narrow)) + len(dropped) == 1


@given(st.lists(st.text(alphabet="abc.", min_size=1, max_size=5), max_size=8))
def test_token_offsets_point_into_the_joined_text(tokens):
    text = " ".join(tokens)
    assert [text[a:b] for a, b in token_offsets(tokens)] == tokens


def test_uncertainty_measures():
    assert sentence_uncertainty([0.9, 0.2, 0.99]) == 0.8 and sentence_uncertainty([]) == 0.0
    assert text_uncertainty({"a": 0.5, "b": 0.5}, "single_label_classification") == 1.0
    assert text_uncertainty({"a": 1.0, "b": 0.0}, "single_label_classification") == 0.0
    with pytest.raises(ConfigError, match="a regression model has no label distribution"):
        text_uncertainty({}, "regression")


# ------------------------------------------------------------------ the loop end to end


@pytest.fixture(scope="module")
def ls_model(tmp_path_factory) -> str:
    """The embedded MiniLM fine-tuned on the Label Studio sample (40 sentences; enough to predict entities)."""
    out = tmp_path_factory.mktemp("ls-ner")
    run_ner.main(
        [
            "--train_file",
            str(NER_SAMPLES["label-studio"]),
            "--data_format",
            "label-studio",
            "--num_train_epochs",
            "4",
            "--learning_rate",
            "5e-4",
            "--per_device_train_batch_size",
            "8",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
            "--output_dir",
            str(out),
        ]
    )
    return str(out)


@pytest.mark.parametrize("fmt", ["doccano", "brat"])
def test_doccano_and_brat_train_the_embedded_model(fmt, tmp_path):
    argv = [
        "--train_file",
        str(NER_SAMPLES[fmt]),
        "--max_steps",
        "2",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--output_dir",
        str(tmp_path / "m"),
    ] + (["--data_format", fmt] if fmt != "brat" else [])
    metrics = run_ner.main(argv)
    assert metrics["train_samples"] == 40
    assert json.loads((tmp_path / "m" / "config.json").read_text())["id2label"]


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def pool(tmp_path) -> str:
    texts = [record["text"] for record in read_jsonl(NER_SAMPLES["doccano"])][:12]
    path = tmp_path / "pool.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return str(path)


def test_pre_annotations_round_trip_through_both_importers(ls_model, tmp_path):
    texts = pool(tmp_path)
    predict.main(["--model", ls_model, "--input", texts, "--output", str(tmp_path / "p.jsonl")])
    plain = read_jsonl(tmp_path / "p.jsonl")
    expected = [[(e["start"], e["end"], e["label"]) for e in result["entities"]] for result in plain]
    assert sum(map(len, expected)) > 0
    predict.main(
        [
            "--model",
            ls_model,
            "--input",
            texts,
            "--output_format",
            "label-studio",
            "--output",
            str(tmp_path / "tasks.json"),
        ]
    )
    tasks = json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8"))
    prediction = tasks[0]["predictions"][0]
    assert prediction["model_version"] == os.path.basename(ls_model) and 0 <= prediction["score"] <= 1
    assert 0 <= tasks[0]["data"]["uncertainty"] <= 1
    assert all({"from_name", "to_name", "type", "value", "score"} <= set(r) for r in prediction["result"])
    back = read_annotation_records(str(tmp_path / "tasks.json"), "label-studio", key="predictions")
    assert [[(s.start, s.end, s.label) for s in record.spans] for record in back] == expected
    predict.main(
        ["--model", ls_model, "--input", texts, "--output_format", "doccano", "--output", str(tmp_path / "d.jsonl")]
    )
    back = read_annotation_records(str(tmp_path / "d.jsonl"), "doccano")
    assert [[(s.start, s.end, s.label) for s in record.spans] for record in back] == expected
    assert [record.text for record in back] == [result["text"] for result in plain]
    # the doccano export is training data as it stands (the next round of the loop)
    metrics = run_ner.main(
        [
            "--model",
            ls_model,
            "--train_file",
            str(tmp_path / "d.jsonl"),
            "--data_format",
            "doccano",
            "--max_steps",
            "1",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
            "--output_dir",
            str(tmp_path / "again"),
        ]
    )
    assert metrics["train_samples"] == 12


def test_select_uncertain_writes_the_n_least_sure_first(ls_model, tmp_path):
    texts = pool(tmp_path)
    predict.main(
        ["--model", ls_model, "--input", texts, "--select_uncertain", "5", "--output", str(tmp_path / "next.jsonl")]
    )
    chosen = read_jsonl(tmp_path / "next.jsonl")
    assert len(chosen) == 5
    values = [record["uncertainty"] for record in chosen]
    assert values == sorted(values, reverse=True) and all(0 <= v <= 1 for v in values)
    lines = Path(texts).read_text(encoding="utf-8").splitlines()
    assert all(lines[record["input_line"] - 1] == record["text"] for record in chosen)
    predict.main(
        [
            "--model",
            ls_model,
            "--input",
            texts,
            "--select_uncertain",
            "2",
            "--output_format",
            "doccano",
            "--output",
            str(tmp_path / "next_doccano.jsonl"),
        ]
    )
    assert [line["input_line"] for line in read_jsonl(tmp_path / "next_doccano.jsonl")] == [
        record["input_line"] for record in chosen[:2]
    ]
    with pytest.raises(ConfigError, match=re.escape("--select_uncertain must be a positive number of texts, got 0.")):
        predict.main(["--model", ls_model, "--input", texts, "--select_uncertain", "0"])


@pytest.mark.parametrize(
    "sample, multi", [("label_studio.json", False), ("label_studio_multi.json", True), ("doccano.jsonl", True)]
)
def test_classification_from_choices_trains_and_round_trips(tiny_model, tmp_path, sample, multi):
    fmt = "doccano" if sample.endswith(".jsonl") else "label-studio"
    path = str(SAMPLES / "classification" / sample)
    run_classification.main(
        [
            "--model",
            tiny_model,
            "--train_file",
            path,
            "--data_format",
            fmt,
            "--max_steps",
            "2",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
            "--output_dir",
            str(tmp_path / "m"),
        ]
    )
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["problem_type"] == ("multi_label_classification" if multi else "single_label_classification")
    texts = tmp_path / "t.txt"
    texts.write_text("the prose is clear\nthe service never replied\n", encoding="utf-8")
    out = tmp_path / "tasks.json"
    predict.main(
        [
            "--model",
            str(tmp_path / "m"),
            "--input",
            str(texts),
            "--output_format",
            "label-studio",
            "--from_name",
            "sentiment",
            "--threshold",
            "0.0",
            "--output",
            str(out),
        ]
    )
    tasks = json.loads(out.read_text(encoding="utf-8"))
    result = tasks[0]["predictions"][0]["result"]
    assert result[0]["type"] == "choices" and result[0]["from_name"] == "sentiment"
    back = read_annotation_records(str(out), "label-studio", key="predictions")
    assert [[c.label for c in record.choices] for record in back] == [
        r["predictions"][0]["result"][0]["value"]["choices"] for r in tasks
    ]
