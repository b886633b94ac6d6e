"""The span head's pure parts: candidate spans, nested/flat decoding, and span metrics (per type, depth, nesting)."""

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import predict
import run_ner
from tests.conftest import ROOT
from utils.core.annotations.loading import read_annotation_records
from utils.serving.predictor import Predictor
from utils.tasks.ner.iob import Span
from utils.tasks.ner.span_decoding import (
    FLAT,
    NESTED,
    crosses,
    decode_spans,
    enumerate_spans,
    is_nested,
    nesting_depth,
    overlaps,
)
from utils.tasks.ner.span_metrics import span_metrics

NAMES = ("O", "LOC", "ORG", "PER")


def test_candidates_are_every_span_up_to_the_length():
    assert enumerate_spans(3, 2) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]
    assert enumerate_spans(0, 4) == []
    assert len(enumerate_spans(10, 10)) == 55


@st.composite
def sentences(draw):
    n_words = draw(st.integers(0, 7))
    candidates = enumerate_spans(n_words, draw(st.integers(1, 4)))
    probabilities = draw(arrays(np.float64, (len(candidates), len(NAMES)), elements=st.integers(0, 50).map(float)))
    return candidates, probabilities


@pytest.mark.parametrize("mode", [NESTED, FLAT])
@settings(max_examples=300, deadline=None, derandomize=True)
@given(sentence=sentences())
def test_decoding_keeps_the_best_entity_of_every_conflict(mode, sentence):
    candidates, probabilities = sentence
    decoded = decode_spans(candidates, probabilities, NAMES, mode)
    kept = [(span.start, span.end) for span, _ in decoded]
    conflict = crosses if mode == NESTED else overlaps
    assert not any(conflict(a, b) for i, a in enumerate(kept) for b in kept[i + 1 :])
    best = probabilities.argmax(axis=1) if len(candidates) else []
    for (span, score), where in zip(decoded, kept):
        i = candidates.index(where)
        assert span.label == NAMES[best[i]] != "O" and score == probabilities[i].max()
    # every entity left out conflicts with a kept one at least as probable
    scores = {where: score for (_, score), where in zip(decoded, kept)}
    for i, where in enumerate(candidates):
        if best[i] != 0 and where not in scores:
            assert any(conflict(where, k) and scores[k] >= probabilities[i].max() for k in kept)
    assert kept == sorted(kept, key=lambda s: (s[0], -s[1]))


def test_nested_keeps_an_entity_inside_another_and_flat_does_not():
    candidates = [(0, 4), (3, 4), (2, 5)]  # University of New York / York / New York Times
    probabilities = np.array([[0.1, 0.0, 0.9, 0.0], [0.2, 0.8, 0.0, 0.0], [0.3, 0.0, 0.7, 0.0]])
    nested = decode_spans(candidates, probabilities, NAMES, NESTED)
    assert [(s.label, s.start, s.end, p) for s, p in nested] == [("ORG", 0, 4, 0.9), ("LOC", 3, 4, 0.8)]
    flat = decode_spans(candidates, probabilities, NAMES, FLAT)
    assert [(s.label, s.start, s.end) for s, _ in flat] == [("ORG", 0, 4)]
    with pytest.raises(ValueError, match="unknown span decoding"):
        decode_spans(candidates, probabilities, NAMES, "overlapping")


def test_depth_and_nesting():
    spans = [Span("ORG", 0, 5), Span("LOC", 3, 5), Span("LOC", 4, 5), Span("PER", 6, 7), Span("GPE", 3, 5)]
    assert nesting_depth(spans) == [0, 1, 2, 0, 1]
    assert is_nested(spans) == [True, True, True, False, True]


def test_span_metrics_exact_per_type_depth_and_nested():
    gold = [[Span("ORG", 0, 4), Span("LOC", 3, 4), Span("PER", 6, 7)], [Span("LOC", 0, 1)]]
    predicted = [[Span("ORG", 0, 4), Span("PER", 6, 7), Span("PER", 3, 4)], []]
    metrics = span_metrics(gold, predicted)
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == pytest.approx(2 / 4)
    assert metrics["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert (metrics["LOC_recall"], metrics["LOC_support"], metrics["LOC_precision"]) == (0.0, 2, 0.0)
    assert (metrics["PER_precision"], metrics["PER_recall"], metrics["ORG_f1"]) == (0.5, 1.0, 1.0)
    assert (metrics["depth0_support"], metrics["depth0_recall"]) == (3, pytest.approx(2 / 3))
    assert (metrics["depth1_support"], metrics["depth1_recall"], metrics["depth1_precision"]) == (1, 0.0, 0.0)
    assert (metrics["nested_support"], metrics["nested_recall"]) == (2, 0.5)
    assert span_metrics([[]], [[]])["f1"] == 0.0


# ---------------------------------------------------------------- end to end on a tiny random model

NESTED_SAMPLE = ROOT / "data" / "ner_nested"


@pytest.fixture(scope="module")
def span_run(tiny_model, tmp_path_factory):
    """A tiny random model through every stage with flat decoding (the outputs' shape; it learns little)."""
    out = tmp_path_factory.mktemp("span")
    run_ner.main(
        [
            "--model",
            tiny_model,
            "--head",
            "span",
            "--span_decoding",
            "flat",
            "--train_file",
            str(NESTED_SAMPLE / "train.jsonl"),
            "--validation_file",
            str(NESTED_SAMPLE / "validation.jsonl"),
            "--test_file",
            str(NESTED_SAMPLE / "test.jsonl"),
            "--num_train_epochs",
            "3",
            "--learning_rate",
            "1e-3",
            "--per_device_train_batch_size",
            "16",
            "--seed",
            "3",
            "--report_to",
            "none",
            "--eval_strategy",
            "epoch",
            "--save_strategy",
            "epoch",
            "--load_best_model_at_end",
            "--early_stopping_patience",
            "1",
            "--output_dir",
            str(out),
        ]
    )
    return out


def test_span_head_trains_scores_and_writes_flat_predictions(span_run):
    results = json.loads((span_run / "all_results.json").read_text())
    state = json.loads((span_run / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] and [e for e in state["log_history"] if "eval_f1" in e]  # early stopping
    for key in ("predict_f1", "predict_nested_recall", "predict_depth1_recall", "predict_LOC_f1", "eval_f1"):
        assert 0.0 <= results[key] <= 1.0, key
    assert results["predict_nested_support"] == 55  # data/ner_nested/test.jsonl's entities inside or around another
    records = [json.loads(line) for line in (span_run / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 30
    conll = (span_run / "predictions.conll").read_text().split("\n\n")
    assert [block.split("\n")[0].split(" ")[0] for block in conll[:2]] == [r["tokens"][0] for r in records[:2]]
    gold = [[Span(e["label"], e["start"], e["end"]) for e in r["gold"]] for r in records]
    predicted = [[Span(e["label"], e["start"], e["end"]) for e in r["entities"]] for r in records]
    assert span_metrics(gold, predicted)["f1"] == pytest.approx(results["predict_f1"])
    assert not any(any(is_nested(spans)) for spans in predicted)
    config = json.loads((span_run / "config.json").read_text())
    assert (config["ner_head"], config["span_decoding"], config["id2label"]["0"]) == ("span", "flat", "O")


span_sets = st.lists(
    st.tuples(st.integers(0, 6), st.integers(1, 3), st.sampled_from(["LOC", "PER"])).map(
        lambda t: Span(t[2], t[0], t[0] + t[1])
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(gold=span_sets, predicted=span_sets)
def test_per_depth_and_per_type_counts_add_up_to_the_overall_ones(gold, predicted):
    metrics = span_metrics([gold], [predicted])
    right = len(set(gold) & set(predicted))
    for group in ("depth", "type"):
        keys = [k[: -len("_support")] for k in metrics if k.endswith("_support") and k != "nested_support"]
        keys = [k for k in keys if k.startswith("depth") == (group == "depth")]
        assert sum(round(metrics[f"{k}_recall"] * metrics[f"{k}_support"]) for k in keys) == right
        assert all(0.0 <= metrics[f"{k}_precision"] <= 1.0 for k in keys)
    assert metrics["recall"] == (right / len(set(gold)) if gold else 0.0)


# ---------------------------------------------------------------- Label Studio: nested spans in, pre-annotations out


@pytest.fixture(scope="module")
def nested_ls_model(tmp_path_factory) -> str:
    """The embedded MiniLM trained on the nested Label Studio sample (60 tasks), tested on test.jsonl."""
    out = tmp_path_factory.mktemp("span-ls")
    run_ner.main(
        [
            "--head",
            "span",
            "--train_file",
            str(NESTED_SAMPLE / "label_studio.json"),
            "--test_file",
            str(NESTED_SAMPLE / "test.jsonl"),
            "--num_train_epochs",
            "5",
            "--learning_rate",
            "2e-4",
            "--per_device_train_batch_size",
            "8",
            "--seed",
            "42",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
            "--output_dir",
            str(out),
        ]
    )
    return str(out)


def test_the_predictor_serves_the_span_head_as_the_run_predicted(nested_ls_model):
    predictor = Predictor.from_pretrained(nested_ls_model, device="cpu")
    assert predictor.settings()["span_decoding"] == "nested"
    records = [json.loads(line) for line in (Path(nested_ls_model) / "predictions.jsonl").read_text().splitlines()]
    results = predictor.predict([r["tokens"] for r in records])
    assert all(0.0 < e["score"] <= 1.0 for r in results for e in r["entities"])
    served = [[(e["label"], e["start"], e["end"]) for e in r["entities"]] for r in results]
    written = [[(e["label"], e["start"], e["end"]) for e in r["entities"]] for r in records]
    assert served == written and sum(map(len, served)) > 30
    for spans in served:
        extents = [(s, e) for _, s, e in spans]
        assert not any(crosses(a, b) for a in extents for b in extents)
    text = " ".join(records[0]["tokens"])
    for entity in predictor.predict([text])[0]["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
    assert not (Path(nested_ls_model) / "predictions.conll").exists()


def test_serve_answers_with_the_span_heads_nested_entities_over_http(nested_ls_model):
    """serve.py's app on the span model: the entities and scores of predict.py's Predictor, nested ones too."""
    from tests.test_serve import served_in_thread
    from utils.serving.http import Limits, create_app

    predictor = Predictor.from_pretrained(nested_ls_model, device="cpu")
    records = [json.loads(line) for line in (NESTED_SAMPLE / "test.jsonl").read_text().splitlines()][:12]
    texts = [" ".join(record["tokens"]) for record in records]
    with served_in_thread(create_app(predictor, nested_ls_model, Limits())) as service:
        answer = httpx.post(f"{service.url}/predict", json={"texts": texts}, timeout=120)
        info = httpx.get(f"{service.url}/info", timeout=30).json()
    assert answer.status_code == 200, answer.text
    served = answer.json()["results"]
    assert served == predictor.predict(texts)
    assert any(is_nested([Span(e["label"], e["start"], e["end"]) for e in r["entities"]]) for r in served)
    assert "span" in json.dumps(info)


def test_label_studio_nested_export_trains_and_round_trips_as_pre_annotations(nested_ls_model, tmp_path):
    results = json.loads((Path(nested_ls_model) / "all_results.json").read_text())
    assert results["train_samples"] == 60 and results["predict_f1"] > 0.5 and results["predict_nested_recall"] > 0.3
    texts = tmp_path / "pool.txt"
    rows = [json.loads(line) for line in (NESTED_SAMPLE / "test.jsonl").read_text().splitlines()]
    texts.write_text("".join(" ".join(row["tokens"]) + "\n" for row in rows), encoding="utf-8")
    predict.main(["--model", nested_ls_model, "--input", str(texts), "--output", str(tmp_path / "p.jsonl")])
    plain = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    expected = [sorted((e["start"], e["end"], e["label"]) for e in result["entities"]) for result in plain]
    nested = [is_nested([Span(label, s, e) for s, e, label in spans]) for spans in expected]
    assert any(any(flags) for flags in nested), "the model should predict some nested entity"
    out = tmp_path / "tasks.json"
    predict.main(
        ["--model", nested_ls_model, "--input", str(texts), "--output_format", "label-studio", "--output", str(out)]
    )
    back = read_annotation_records(str(out), "label-studio", key="predictions")
    assert [sorted((s.start, s.end, s.label) for s in record.spans) for record in back] == expected


def test_the_span_head_exports_to_onnx_and_predicts_as_pytorch(span_run):
    """The graph computes the span logits ([batch, tokens, offsets, labels]) as PyTorch does; the ONNX backend
    decodes them through the same prediction object."""
    from utils.serving.onnx_backend import REPORT_FILE
    from utils.serving.onnx_export import export_model

    export_model(str(span_run), validation_file=str(NESTED_SAMPLE / "test.jsonl"))
    data = json.loads((span_run / "onnx" / REPORT_FILE).read_text(encoding="utf-8"))
    assert data["passed"] and data["task"] == "ner"
    assert data["validation"]["fp32"]["max_abs_logit_diff"] < 1e-4 and data["validation"]["fp32"]["agreement"] == 1.0
    rows = [json.loads(line) for line in (NESTED_SAMPLE / "test.jsonl").read_text().splitlines()]
    texts = [" ".join(row["tokens"]) for row in rows]
    torch_results = Predictor.from_pretrained(str(span_run), device="cpu", backend="torch").predict(texts)
    onnx_results = Predictor.from_pretrained(str(span_run), device="cpu", backend="onnx-fp32").predict(texts)
    key = lambda results: [[(e["label"], e["start"], e["end"]) for e in r["entities"]] for r in results]  # noqa: E731
    assert key(onnx_results) == key(torch_results)


def test_entity_rows_with_word_or_character_spans_and_their_errors(tmp_path):
    from utils.core.errors import DataError
    from utils.tasks.ner.span_data import read_span_file, row_spans

    text = "The University of Toronto opened ."
    chars = {
        "text": text,
        "entities": [{"start": 4, "end": 25, "label": "ORG"}, {"start": 18, "end": 25, "label": "LOC"}],
    }
    assert row_spans(chars, "f:1") == (text.split(), [(1, 4, "ORG"), (3, 4, "LOC")])
    words = {"tokens": text.split(), "entities": [{"start": 1, "end": 4, "label": "ORG"}]}
    assert row_spans(words, "f:2") == (text.split(), [(1, 4, "ORG")])
    for row, message in [
        ({**chars, "entities": [{"start": 5, "end": 25, "label": "ORG"}]}, "f:3, entity 1: characters 5-25"),
        (
            {**words, "entities": [{"start": 2, "end": 9, "label": "ORG"}]},
            "f:3, entity 1: end 9 is past the row's end (6)",
        ),
        ({**words, "entities": [{"start": 2, "end": 2, "label": "ORG"}]}, "must be integers with 0 <= start < end"),
        ({**words, "entities": [{"start": 0, "end": 1, "label": "O"}]}, "label 'O' must be a non-empty type name"),
        ({"tokens": ["a"]}, 'f:3: each row needs "entities"'),
    ]:
        with pytest.raises(DataError, match=re.escape(message)):
            row_spans(row, "f:3")
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(chars) + "\n\n" + json.dumps(words) + "\n{broken\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:4:2: not valid JSON")):
        read_span_file(str(path))
    path.write_text(json.dumps(chars) + "\n\n" + json.dumps(words) + "\n", encoding="utf-8")
    dataset = read_span_file(str(path))
    assert dataset["location"] == [f"{path}:1", f"{path}:3"] and dataset["span_labels"] == [["ORG", "LOC"], ["ORG"]]
