"""Integration on the real CoNLL-2003 and SST-2 files in ../shared/data (skipped with a reason when absent)."""

import json

import pytest

import run_classification
import run_ner
from tests.conftest import shared_data
from utils.core.conll import read_conll

CONLL_LABELS = "O,B-PER,I-PER,B-ORG,I-ORG,B-LOC,I-LOC,B-MISC,I-MISC"


def test_conll2003_every_test_word_gets_one_prediction(tmp_path):
    """A few hundred training sentences, the full test file: predictions.conll is the test file word for word."""
    conll = shared_data("conll2003")
    out = tmp_path / "run"
    results = run_ner.main(
        [
            "--train_file",
            str(conll / "train.txt"),
            "--test_file",
            str(conll / "test.txt"),
            "--max_train_samples",
            "300",
            "--num_train_epochs",
            "1",
            "--label_list",
            CONLL_LABELS,
            "--output_dir",
            str(out),
            "--report_to",
            "none",
            "--save_strategy",
            "no",
        ]
    )
    gold = read_conll(conll / "test.txt")
    written = read_conll(out / "predictions.conll", tag_column=1)
    assert written.tokens == gold.tokens  # 3,453 sentences, 46,435 words, in order
    assert written.tags == gold.tags  # the gold column
    assert sum(map(len, written.tokens)) == 46435 and len(written.tokens) == 3453
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [len(r["predicted"]) for r in records] == [len(s) for s in gold.tokens]
    assert [r["document_id"] for r in records][-1] == str(gold.document_id[-1])
    assert [r["tokens"] for r in records] == gold.tokens and [r["gold"] for r in records] == gold.tags
    assert [r["predicted"] for r in records] == read_conll(out / "predictions.conll", tag_column=2).tags
    # the reported scores are seqeval's on the written gold and predicted columns
    from seqeval.metrics import accuracy_score, f1_score

    predicted = [r["predicted"] for r in records]
    assert results["predict_samples"] == 3453
    assert results["predict_f1"] == pytest.approx(f1_score(gold.tags, predicted, zero_division=0), abs=1e-12)
    assert results["predict_accuracy"] == pytest.approx(accuracy_score(gold.tags, predicted), abs=1e-12)


def test_sst2_one_prediction_per_dev_row(tmp_path):
    """Train on a slice of SST-2 (text column `sentence`), predict the full dev file (text column `content`)."""
    sst2 = shared_data("sst2")
    out = tmp_path / "run"
    results = run_classification.main(
        [
            "--train_file",
            str(sst2 / "train.tsv"),
            "--test_file",
            str(sst2 / "dev.tsv"),
            "--max_train_samples",
            "400",
            "--num_train_epochs",
            "1",
            "--output_dir",
            str(out),
            "--report_to",
            "none",
            "--save_strategy",
            "no",
        ]
    )
    dev_rows = (sst2 / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == len(dev_rows) == 872
    assert [r["text"] for r in records] == [row.split("\t", 1)[1] for row in dev_rows]
    assert [r["gold"] for r in records] == [row.split("\t", 1)[0] for row in dev_rows]
    assert results["predict_samples"] == 872 and results["predict_accuracy"] > 0.5  # it learned something
    assert results["predict_accuracy"] == sum(r["label"] == r["gold"] for r in records) / len(records)
