"""Helpers of benchmarks/: the corpus converters (GoEmotions: every row kept as it is, a malformed one named, never
dropped), the pinned-source reader on a local work tree, predict_profile's timed forward and graph-alone timing,
and gc_pauses' collection log."""

import gc
import json

import pytest

from benchmarks import goemotions
from benchmarks.pinned_source import read_pinned

NAMES = ["admiration", "amusement", "anger"]


def test_a_line_becomes_a_multi_label_row_with_its_text_unchanged():
    line = "Thanks [NAME], that's  hilarious :)\t0,1\teeabc12"
    assert goemotions.convert_line(line, NAMES, "train.tsv line 1") == {
        "text": "Thanks [NAME], that's  hilarious :)",
        "labels": ["admiration", "amusement"],
        "id": "eeabc12",
    }


@pytest.mark.parametrize(
    "line, message",
    [
        ("no tabs at all", "1 tab-separated fields"),
        ("text\t3\tid", "label ids '3'"),
        ("text\t0,\tid", "label ids '0,'"),
        ("a\tb\t0\tid", "4 tab-separated fields"),
    ],
)
def test_a_malformed_line_stops_the_conversion_with_its_place(line, message):
    with pytest.raises(ValueError, match=f"dev.tsv line 7: {message}"):
        goemotions.convert_line(line, NAMES, "dev.tsv line 7")


def test_converting_a_local_tree_writes_every_row(tmp_path):
    data = tmp_path / "clone" / "data" / "original"
    data.mkdir(parents=True)
    (data / "labels.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        (data / name).write_text(f"first\t2\ta1\nsecond one\t0,2\ta2\n{name}\t1\ta3\n", encoding="utf-8")
    assert read_pinned(goemotions.REPOSITORY, goemotions.COMMIT, "data/original/labels.txt", str(tmp_path / "clone"))
    goemotions.main(["--source", str(tmp_path / "clone"), "--output", str(tmp_path / "out")])
    rows = [json.loads(line) for line in (tmp_path / "out" / "validation.jsonl").read_text().splitlines()]
    assert [row["labels"] for row in rows] == [["anger"], ["admiration", "anger"], ["amusement"]]
    assert [row["text"] for row in rows] == ["first", "second one", "dev.tsv"]


def test_the_predict_profile_times_a_forward_without_changing_its_batches():
    """benchmarks/predict_profile.py's wrapper: the same batches in the same order, the time spent inside counted."""
    import time

    from benchmarks.predict_profile import TimedForward

    def forward(inputs):
        for row in inputs:
            time.sleep(0.01)
            yield [row], {"value": row * 2}

    timed = TimedForward(forward)
    assert list(timed([1, 2, 3])) == list(forward([1, 2, 3]))
    assert timed.seconds >= 0.03


class RecordingSession:
    """An ONNX Runtime session stand-in: records the input_ids of every run."""

    def __init__(self) -> None:
        self.runs: list[list[list[int]]] = []

    def get_inputs(self):
        return [type("Node", (), {"name": name})() for name in ("input_ids", "attention_mask")]

    def get_outputs(self):
        return [type("Node", (), {"name": "logits"})()]

    def run(self, names, feeds):
        self.runs.append(feeds["input_ids"].tolist())
        return [feeds["input_ids"]]


@pytest.mark.parametrize("parallel_rows", [0, 2])
def test_the_graph_alone_runs_the_rows_the_kit_fed_it_as_the_kit_splits_them(parallel_rows):
    """predict_profile's graph-alone timing: every row of every call once, alone (rows in parallel) or in the same
    length batches as the kit's; None for a backend without a session (PyTorch)."""
    from benchmarks.predict_profile import graph_alone_seconds
    from utils.serving.onnx_backend import OnnxForward

    session = RecordingSession()
    forward = OnnxForward(session, batch_size=2, parallel_rows=parallel_rows)
    calls = [
        {"input_ids": [[1, 2], [3, 4, 5], [6]], "attention_mask": [[1, 1], [1, 1, 1], [1]]},
        {"input_ids": [[7, 8, 9, 10]], "attention_mask": [[1, 1, 1, 1]]},
    ]
    assert graph_alone_seconds(forward, calls) >= 0
    if parallel_rows:
        assert sorted(session.runs) == [[[1, 2]], [[3, 4, 5]], [[6]], [[7, 8, 9, 10]]]
    else:
        assert session.runs == [[[3, 4, 5], [1, 2, 0]], [[6]], [[7, 8, 9, 10]]]
    assert graph_alone_seconds(lambda inputs: iter(()), calls) is None


def test_markdown_tables_of_the_benchmarks():
    from benchmarks.reporting import markdown_table

    assert markdown_table(["model", "texts/s"], [["a", "1.0"], ["b", "2.5"]]) == [
        "| model | texts/s |",
        "|---|---|",
        "| a | 1.0 |",
        "| b | 2.5 |",
    ]


def test_gc_pauses_counts_the_full_collections_of_a_round():
    from benchmarks.gc_pauses import CollectionLog, timed_round

    class CollectsOnce:
        def predict(self, texts):
            gc.collect()  # a full collection, as the collector's thresholds would set one off

    log = CollectionLog()
    gc.callbacks.append(log)
    try:
        measured = timed_round(CollectsOnce(), ["a"], log)
        gc.collect()  # after the round: not counted
    finally:
        gc.callbacks.remove(log)
    assert measured["full_collections"] == 1 and measured["collections"] >= 1
    assert 0 < measured["full_collection_seconds"] <= measured["seconds"]
