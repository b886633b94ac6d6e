"""The calibration stage end to end on tiny models and the repository's samples: what a run saves and reports, and
the same calibrated scores from PyTorch, ONNX and HTTP; --threshold auto, --min_confidence / --abstain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

import run_classification
import run_ner
from tests.conftest import ROOT
from tests.test_calibration import bias_key, calibration_keys
from utils.core.calibration import Calibration, scaled_probability, softmax
from utils.core.errors import ConfigError
from utils.serving.http import Limits, create_app
from utils.serving.onnx_export import export_model
from utils.serving.predictor import Predictor
from utils.tasks.ner.calibration import entity_confidence
from utils.tasks.ner.iob import tags_to_spans

FAST = ["--per_device_train_batch_size", "16", "--report_to", "none", "--num_train_epochs", "1"]
CLASSIFICATION = ROOT / "data" / "classification"
NER = ROOT / "data" / "ner"
TEXTS = ["a warm and funny film", "the plot is thin and the acting is wooden", "it is a film", "superb"]


def splits(directory: Path, suffix: str) -> list[str]:
    return [
        argument
        for flag, split in (("--train_file", "train"), ("--validation_file", "validation"), ("--test_file", "test"))
        for argument in (flag, str(directory / f"{split}.{suffix}"))
    ]


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory, tiny_model) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sentiment")
    results = run_classification.main(
        ["--model", tiny_model, "--output_dir", str(out), *splits(CLASSIFICATION / "sentiment", "tsv")]
        + ["--conformal_alpha", "0.1", "--learning_rate", "1e-3", *FAST]
    )
    return out, results


@pytest.fixture(scope="module")
def tagger(tmp_path_factory, tiny_model) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ner")
    results = run_ner.main(["--model", tiny_model, "--output_dir", str(out), *splits(NER, "conll"), *FAST])
    return out, results


def test_classification_run_saves_and_reports_the_calibration(sentiment):
    out, results = sentiment
    conformal = {
        "calibration_conformal_threshold",
        "eval_conformal_coverage",
        "eval_conformal_mean_set_size",
        "predict_conformal_coverage",
        "predict_conformal_mean_set_size",
    }
    assert calibration_keys() | conformal <= set(results)
    stored = json.loads((out / "config.json").read_text())["calibration"]
    assert stored == {
        "method": "temperature",
        "unit": "text",
        "chosen": results["calibration_map"],
        "temperature": results["calibration_temperature"],
        "conformal_alpha": 0.1,
        "conformal_threshold": results["calibration_conformal_threshold"],
    }
    # the map kept is the one with the lowest ECE on held-out validation units (the identity's is its plain ECE);
    # a fitted map need not lower the ECE on the units it was fitted on, so that is not asserted
    figures = {name: results[f"eval_cross_validated_ece_{name}"] for name in ("identity", "temperature")}
    assert figures[results["calibration_map"]] == min(figures.values())
    assert figures["identity"] == results["eval_ece_before_calibration"]
    assert results["eval_conformal_coverage"] >= 0.9
    assert results["predict_accuracy_at_coverage_100"] == pytest.approx(results["predict_accuracy"], abs=1e-6)
    on_file = json.loads((out / "all_results.json").read_text())
    assert {key: on_file[key] for key in conformal} == {key: results[key] for key in conformal}
    assert (out / "reliability_diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (out / "README.md").read_text()
    assert "## Calibration" in card and "![Reliability diagram](reliability_diagram.png)" in card
    if results["calibration_map"] == "identity":
        assert "no fitted map kept" in card and results["calibration_temperature"] == 1.0
    else:
        assert f"temperature {results['calibration_temperature']:.4f}" in card


def test_calibrated_probabilities_are_the_temperature_scaled_logits(sentiment):
    out, _ = sentiment
    predictor = Predictor.from_pretrained(str(out), device="cpu", backend="torch")
    fitted = Calibration.from_config(predictor.config)
    prediction = predictor.prediction
    logits, _ = prediction.logits(TEXTS, None, list(range(len(TEXTS))))
    results = predictor.predict(TEXTS)
    names = list(predictor.labels.names)
    for row, result in zip(logits, results, strict=True):
        expected = softmax(row[None, :], fitted.temperature)[0]
        assert list(result["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-6)
        assert result["label"] == names[int(row.argmax())]  # the temperature moves no argmax
        members = [name for name, p in zip(names, expected) if 1 - p <= fitted.conformal_threshold + 1e-12]
        assert result["label_set"] == sorted(set(members) | {result["label"]}, key=names.index)


def test_torch_onnx_and_http_give_the_same_calibrated_scores(sentiment):
    out, _ = sentiment
    torch_predictor = Predictor.from_pretrained(str(out), device="cpu", backend="torch")
    expected = torch_predictor.predict(TEXTS)
    assert export_model(str(out))["passed"]
    onnx_predictor = Predictor.from_pretrained(str(out), device="cpu", backend="onnx-fp32")
    assert Calibration.from_config(onnx_predictor.config) == Calibration.from_config(torch_predictor.config)
    for mine, theirs in zip(onnx_predictor.predict(TEXTS), expected, strict=True):
        assert mine["label"] == theirs["label"] and mine["label_set"] == theirs["label_set"]
        assert list(mine["probabilities"].values()) == pytest.approx(list(theirs["probabilities"].values()), abs=1e-4)
    with TestClient(create_app(torch_predictor, str(out), Limits(max_texts=16))) as client:
        answer = client.post("/predict", json={"texts": TEXTS})
        assert answer.status_code == 200 and answer.json()["results"] == expected
        assert client.get("/info").json()["settings"]["calibration"]["temperature"] > 0


def test_min_confidence_withholds_or_flags_labels(sentiment):
    out, _ = sentiment
    plain = Predictor.from_pretrained(str(out), device="cpu", backend="torch").predict(TEXTS)
    confidence = [result["probabilities"][result["label"]] for result in plain]
    cut = float(np.median(confidence))
    withheld = Predictor.from_pretrained(str(out), device="cpu", backend="torch", min_confidence=cut).predict(TEXTS)
    flagged = Predictor.from_pretrained(
        str(out), device="cpu", backend="torch", min_confidence=cut, abstain="flag"
    ).predict(TEXTS)
    for before, hidden, marked, sure in zip(plain, withheld, flagged, confidence, strict=True):
        if sure < cut:
            assert hidden == {**before, "label": None, "abstained": True, "below_min_confidence": 1}
            assert marked == {**before, "abstained": True, "below_min_confidence": 1}
        else:
            assert hidden == marked == {**before, "below_min_confidence": 0}
    assert any(sure < cut for sure in confidence)
    with pytest.raises(ConfigError, match=r"--min_confidence 1\.5"):
        Predictor.from_pretrained(str(out), device="cpu", backend="torch", min_confidence=1.5)


def test_ner_entity_scores_are_calibrated_at_the_entity_level(tagger):
    out, results = tagger
    assert calibration_keys("precision") | bias_key(results) <= set(results)
    stored = json.loads((out / "config.json").read_text())["calibration"]
    chosen = results["calibration_map"]
    assert results[f"eval_cross_validated_ece_{chosen.replace('+', '_')}"] == min(
        results[f"eval_cross_validated_ece_{name}"] for name in ("identity", "temperature", "temperature_bias")
    )
    assert stored == {
        "method": "temperature",
        "unit": "entity",
        "chosen": chosen,
        "temperature": results["calibration_temperature"],
        **({"bias": results["calibration_bias"]} if bias_key(results) else {}),
    }
    predictor = Predictor.from_pretrained(str(out), device="cpu", backend="torch")
    sentences = [line.split() for line in ("Angela Merkel visited Paris .", "EU rejects German call to boycott")]
    tagged = predictor.prediction.tag_words(sentences)
    found = predictor.predict(sentences)
    for (tags, word_scores), result in zip(tagged, found, strict=True):
        spans = tags_to_spans(tags)
        assert [(e["label"], e["start"], e["end"]) for e in result["entities"]] == [
            (s.label, s.start, s.end) for s in spans
        ]
        for entity, span in zip(result["entities"], spans, strict=True):
            mean = entity_confidence(word_scores[span.start : span.end])
            assert entity["score"] == round(scaled_probability(mean, stored["temperature"], stored.get("bias")), 4)


def test_ner_min_confidence_withholds_entities_and_their_tags(tagger):
    out, _ = tagger
    sentences = [["Angela", "Merkel", "visited", "Paris", "and", "Berlin", "with", "EU", "officials"]] * 2
    plain = Predictor.from_pretrained(str(out), device="cpu", backend="torch").predict(sentences)[0]
    scores = sorted(entity["score"] for entity in plain["entities"])
    if not scores:
        pytest.skip("the tiny model found no entity in the sentence")
    cut = scores[-1]  # every entity but the surest ones is withheld
    hidden = Predictor.from_pretrained(str(out), device="cpu", backend="torch", min_confidence=cut).predict(sentences)
    kept = [entity for entity in plain["entities"] if entity["score"] >= cut]
    assert hidden[0]["entities"] == kept
    assert hidden[0]["below_min_confidence"] == len(plain["entities"]) - len(kept)
    kept_words = {i for entity in kept for i in range(entity["start"], entity["end"])}
    for i, (tag, before) in enumerate(zip(hidden[0]["tags"], plain["tags"], strict=True)):
        assert tag == (before if i in kept_words or before == "O" else "O")
    flagged = Predictor.from_pretrained(
        str(out), device="cpu", backend="torch", min_confidence=cut, abstain="flag"
    ).predict(sentences)[0]
    assert flagged["tags"] == plain["tags"] and flagged["below_min_confidence"] == hidden[0]["below_min_confidence"]
    assert [e.get("abstained", False) for e in flagged["entities"]] == [e["score"] < cut for e in plain["entities"]]


def test_threshold_auto_chooses_stores_and_uses_per_label_thresholds(tmp_path, tiny_model):
    out = tmp_path / "topics"
    results = run_classification.main(
        ["--model", tiny_model, "--output_dir", str(out), *splits(CLASSIFICATION / "topics", "jsonl")]
        + ["--threshold", "auto", "--learning_rate", "1e-3", *FAST]
    )
    stored = json.loads((out / "config.json").read_text())["calibration"]
    names = ["business", "health", "politics", "science", "sports"]
    assert list(stored["thresholds"]) == names
    assert results["eval_micro_f1_threshold_auto"] >= results["eval_micro_f1_threshold_0.5"]
    texts = [json.loads(line)["text"] for line in (CLASSIFICATION / "topics" / "test.jsonl").read_text().splitlines()]
    auto = Predictor.from_pretrained(str(out), device="cpu", backend="torch").predict(texts)
    assert auto == Predictor.from_pretrained(str(out), device="cpu", backend="torch", threshold="auto").predict(texts)
    logits, _ = Predictor.from_pretrained(str(out), device="cpu", backend="torch").prediction.logits(
        texts, None, list(range(len(texts)))
    )
    probabilities = 1 / (1 + np.exp(-logits / stored["temperature"]))  # unrounded: the results' are to 6 decimals
    cuts = np.array([stored["thresholds"][name] for name in names])
    for result, row in zip(auto, probabilities, strict=True):
        assert result["labels"] == [name for name, p, cut in zip(names, row, cuts) if p > cut]
    fixed = Predictor.from_pretrained(str(out), device="cpu", backend="torch", threshold="0.5").predict(texts)
    for result in fixed:
        assert result["labels"] == [n for n, p in result["probabilities"].items() if p > 0.5]
    with pytest.raises(ConfigError, match=r"--threshold 2: must be a probability"):
        Predictor.from_pretrained(str(out), device="cpu", backend="torch", threshold="2")


def test_calibration_none_saves_nothing(tmp_path, tiny_model):
    out = tmp_path / "plain"
    results = run_classification.main(
        ["--model", tiny_model, "--output_dir", str(out), *splits(CLASSIFICATION / "sentiment", "tsv")]
        + ["--calibration", "none", "--max_train_samples", "32", *FAST]
    )
    assert not calibration_keys() & set(results)
    assert "calibration" not in json.loads((out / "config.json").read_text())
    assert not (out / "reliability_diagram.png").exists()
    with pytest.raises(ConfigError, match="--threshold auto: this model has no per-label thresholds"):
        Predictor.from_pretrained(str(out), device="cpu", backend="torch", threshold="auto")


def test_predict_py_counts_what_it_withholds(sentiment, tmp_path):
    import predict

    out, _ = sentiment
    plain = Predictor.from_pretrained(str(out), device="cpu", backend="torch").predict(TEXTS)
    cut = float(np.median([result["probabilities"][result["label"]] for result in plain]))
    below = sum(result["probabilities"][result["label"]] < cut for result in plain)
    inputs, output = tmp_path / "texts.txt", tmp_path / "labels.jsonl"
    inputs.write_text("\n".join(TEXTS) + "\n")
    summary = predict.main(
        ["--model", str(out), "--backend", "torch", "--input", str(inputs), "--output", str(output)]
        + ["--min_confidence", str(cut)]
    )
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert summary["below_min_confidence"] == below > 0
    assert [record["label"] is None for record in records] == [
        result["probabilities"][result["label"]] < cut for result in plain
    ]
