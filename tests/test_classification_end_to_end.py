"""End-to-end runs of run_classification.main: each problem type, pairs, weights, reload through pipeline."""

import json

import pytest
from transformers import pipeline

import run_classification
from tests.conftest import ROOT, RUN_KEYS
from tests.test_calibration import calibration_keys

DATA = ROOT / "data" / "classification"
FAST = [
    "--per_device_train_batch_size",
    "16",
    "--logging_steps",
    "5",
    "--report_to",
    "none",
    "--num_train_epochs",
    "1",
]


def run(tiny_model, out, dataset, suffix, *extra):
    files = {split: str(DATA / dataset / f"{split}.{suffix}") for split in ("train", "validation", "test")}
    return run_classification.main(
        [
            "--model",
            tiny_model,
            "--output_dir",
            str(out),
            "--train_file",
            files["train"],
            "--validation_file",
            files["validation"],
            "--test_file",
            files["test"],
            *FAST,
            *extra,
        ]
    )


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def tsv_rows(path):
    """(label, text) of each row of a label<TAB>text file, header skipped."""
    return [tuple(row.split("\t", 1)) for row in path.read_text().splitlines()[1:]]


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails unless the file is a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def split_keys(prefix: str, metrics: tuple[str, ...], samples: bool = True, prepared: bool = False) -> set[str]:
    """The keys of one scored split; `prepared`: transformers times the model's preparation when the first
    evaluation comes before training (--eval_before_training), and reports it with every later split."""
    keys = {f"{prefix}_{name}" for name in (*metrics, "loss", "runtime", "samples_per_second", "steps_per_second")}
    return (
        keys
        | ({f"{prefix}_samples"} if samples else set())
        | ({f"{prefix}_model_preparation_time"} if prepared else set())
    )


def test_single_label_outputs_and_pipeline_reload(tiny_model, tmp_path):
    from sklearn.metrics import f1_score, matthews_corrcoef

    out = tmp_path / "run"
    results = run(tiny_model, out, "sentiment", "tsv", "--eval_before_training", "--class_weights", "auto")
    single = ("accuracy", "f1", "f1_macro", "f1_micro", "f1_weighted", "mcc")
    assert set(results) == (
        RUN_KEYS
        | split_keys("eval", single, prepared=True)
        | split_keys("predict", single, prepared=True)
        | split_keys("before_eval", single, samples=False, prepared=True)
        | calibration_keys()
    )
    train_rows, test_rows = tsv_rows(DATA / "sentiment" / "train.tsv"), tsv_rows(DATA / "sentiment" / "test.tsv")
    n_valid = len(tsv_rows(DATA / "sentiment" / "validation.tsv"))
    assert (
        results["train_samples"],
        results["train_features"],
        results["eval_samples"],
        results["predict_samples"],
    ) == (len(train_rows), len(train_rows), n_valid, len(test_rows))
    state = json.loads((out / "trainer_state.json").read_text())
    steps = -(-len(train_rows) // 16)  # one epoch of batches of 16
    assert (state["global_step"], state["epoch"]) == (steps, 1.0)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "README.md",
            "all_results.json",
            "before_eval_results.json",
            "calibration_results.json",
            "classification_report.txt",
            "config.json",
            "confusion_matrix.json",
            "confusion_matrix.png",
            "eval_results.json",
            "model.safetensors",
            "predict_results.json",
            "predictions.jsonl",
            "predictions.tsv",
            "reliability_diagram.png",
            "tokenizer.json",
            "tokenizer_config.json",
            "train_results.json",
            "trainer_state.json",
            "training_args.bin",
            "training_curves.png",
            f"checkpoint-{steps}",
        ]
    )
    records = read_jsonl(out / "predictions.jsonl")
    assert [sorted(r) for r in records] == [["gold", "index", "label", "probabilities", "text"]] * len(test_rows)
    assert [r["index"] for r in records] == list(range(len(test_rows)))
    assert [r["text"] for r in records] == [text for _, text in test_rows]
    assert [r["gold"] for r in records] == [gold for gold, _ in test_rows]
    assert all(list(r["probabilities"]) == ["negative", "positive"] for r in records)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in records)
    # the label is a likeliest one (two may tie once rounded to 6 decimals)
    assert all(r["probabilities"][r["label"]] == max(r["probabilities"].values()) for r in records)
    # the test scores are recomputed from the written predictions
    gold, predicted = [r["gold"] for r in records], [r["label"] for r in records]
    assert results["predict_accuracy"] == sum(g == p for g, p in zip(gold, predicted)) / len(records)
    names = ["negative", "positive"]
    assert results["predict_f1_macro"] == pytest.approx(
        f1_score(gold, predicted, labels=names, average="macro", zero_division=0), abs=1e-12
    )
    assert results["predict_f1_weighted"] == pytest.approx(
        f1_score(gold, predicted, labels=names, average="weighted", zero_division=0), abs=1e-12
    )
    assert results["predict_f1_micro"] == results["predict_accuracy"]  # single-label: micro F1 is accuracy
    assert results["predict_mcc"] == pytest.approx(
        matthews_corrcoef(gold, predicted) if len(set(gold) | set(predicted)) > 1 else 0.0, abs=1e-12
    )
    tsv = (out / "predictions.tsv").read_text().splitlines()
    assert tsv[0] == "index\ttext\tprediction\tprobabilities\tgold"
    assert [line.split("\t") for line in tsv[1:]] == [
        [str(r["index"]), r["text"], r["label"], json.dumps(r["probabilities"]), r["gold"]] for r in records
    ]
    matrix = json.loads((out / "confusion_matrix.json").read_text())
    assert matrix == {
        "rows": "gold",
        "columns": "predicted",
        "labels": names,
        "matrix": [
            [sum(g == row and p == column for g, p in zip(gold, predicted)) for column in names] for row in names
        ],
    }
    width, height = png_size(out / "confusion_matrix.png")
    assert width > 0 and height > 0
    report_text = (out / "classification_report.txt").read_text()
    assert [line for line in report_text.splitlines() if line.startswith("==")] == [
        "== validation (before fine-tuning) ==",
        "== validation ==",
        "== test ==",
    ]
    test_report = report_text.split("== test ==\n")[1]
    rows = {
        line.split()[0]: line.split()[1:]
        for line in test_report.splitlines()
        if line.split()[:1] in (["negative"], ["positive"])
    }
    for name in names:  # precision, recall, F1 to 4 digits and the support of each class
        hits = sum(g == p == name for g, p in zip(gold, predicted))
        precision, recall = hits / max(predicted.count(name), 1), hits / gold.count(name)
        f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
        assert rows[name] == [f"{precision:.4f}", f"{recall:.4f}", f"{f1:.4f}", str(gold.count(name))], name
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card
    # auto weights are n / (k * count): the sample is balanced, so both are 1
    counts = {name: sum(label == name for label, _ in train_rows) for name in names}
    weights = ", ".join(f"{name}={len(train_rows) / (2 * counts[name]):.4g}" for name in names)
    assert f"- Class weights in the loss: {weights}." in card and weights == "negative=1, positive=1"
    # the saved model reloads in the transformers pipeline and predicts what the run wrote
    classifier = pipeline("text-classification", model=str(out))
    for record in records[:3]:
        (top,) = classifier(record["text"])
        assert top["label"] == record["label"]
        assert top["score"] == pytest.approx(record["probabilities"][record["label"]], abs=1e-5)


def test_multi_label(tiny_model, tmp_path):
    from sklearn.metrics import f1_score

    out = tmp_path / "run"
    results = run(tiny_model, out, "topics", "jsonl", "--threshold", "0.4")
    multi = ("f1", "f1_micro", "f1_macro", "subset_accuracy")
    assert set(results) == RUN_KEYS | split_keys("eval", multi) | split_keys("predict", multi) | calibration_keys()
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    names = ["business", "health", "politics", "science", "sports"]
    assert config["label2id"] == {name: i for i, name in enumerate(names)}
    test = read_jsonl(DATA / "topics" / "test.jsonl")
    records = read_jsonl(out / "predictions.jsonl")
    assert [r["text"] for r in records] == [row["text"] for row in test]
    assert [r["gold"] for r in records] == [sorted(row["labels"]) for row in test]
    assert results["predict_samples"] == len(test)
    for record in records:
        assert list(record["probabilities"]) == names
        assert record["labels"] == [n for n, p in record["probabilities"].items() if p > 0.4]
    # the test scores are recomputed from the written predictions (multi-hot rows)
    gold = [[name in r["gold"] for name in names] for r in records]
    predicted = [[name in r["labels"] for name in names] for r in records]
    assert results["predict_subset_accuracy"] == sum(g == p for g, p in zip(gold, predicted)) / len(records)
    for average in ("micro", "macro"):
        assert results[f"predict_f1_{average}"] == pytest.approx(
            f1_score(gold, predicted, average=average, zero_division=0), abs=1e-12
        ), average


def test_regression_on_sentence_pairs(tiny_model, tmp_path):
    import csv

    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    out = tmp_path / "run"
    results = run(tiny_model, out, "similarity", "csv")
    regression = ("mse", "mae", "pearson", "spearman")
    assert set(results) == RUN_KEYS | split_keys("eval", regression) | split_keys("predict", regression)
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1
    with open(DATA / "similarity" / "test.csv", newline="", encoding="utf-8") as handle:
        test = list(csv.DictReader(handle))
    records = read_jsonl(out / "predictions.jsonl")
    assert [sorted(r) for r in records] == [["gold", "index", "text", "text_pair", "value"]] * len(test)
    assert [(r["text"], r["text_pair"], r["gold"]) for r in records] == [
        (row["sentence1"], row["sentence2"], float(row["score"])) for row in test
    ]
    assert all(isinstance(r["value"], float) for r in records)
    value, gold = np.array([r["value"] for r in records]), np.array([r["gold"] for r in records])
    assert results["predict_mse"] == pytest.approx(float(np.mean((value - gold) ** 2)), rel=1e-6)
    assert results["predict_mae"] == pytest.approx(float(np.mean(np.abs(value - gold))), rel=1e-6)
    assert results["predict_pearson"] == pytest.approx(float(pearsonr(gold, value)[0]), abs=1e-6)
    assert results["predict_spearman"] == pytest.approx(float(spearmanr(gold, value)[0]), abs=1e-6)
    assert "Inputs are sentence pairs" in (out / "README.md").read_text()


def test_weighted_loss_changes_the_training_loss(tiny_model, tmp_path):
    plain = run(tiny_model, tmp_path / "a", "sentiment", "tsv", "--max_train_samples", "32")
    weighted = run(
        tiny_model, tmp_path / "b", "sentiment", "tsv", "--max_train_samples", "32", "--class_weights", "1,4"
    )
    assert weighted["train_loss"] != pytest.approx(plain["train_loss"], rel=1e-3)
