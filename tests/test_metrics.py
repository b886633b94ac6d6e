"""Entity metrics against values computed by hand."""

import pytest
import torch

from utils.tasks.ner.metrics import argmax_logits, entity_metrics

GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
PRED = [["B-PER", "I-PER", "O", "B-PER"], ["I-ORG", "O"]]


def test_conlleval_mode_counts_an_i_start_as_an_entity():
    metrics, report = entity_metrics(GOLD, PRED, per_type=True)
    # gold: PER(0-1), LOC(3), ORG(0); predicted: PER(0-1), PER(3), ORG(0, from I-ORG) -> 2 of 3 right both ways
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["invalid_iob_predictions"] == 1
    assert metrics["PER_precision"] == pytest.approx(1 / 2) and metrics["PER_recall"] == 1.0
    assert metrics["LOC_recall"] == 0.0 and metrics["LOC_support"] == 1
    assert "LOC" in report and "word accuracy: 0.6667 over 6 words" in report


def test_strict_mode_rejects_the_i_start():
    metrics, _ = entity_metrics(GOLD, PRED, strict=True)
    assert metrics["precision"] == pytest.approx(1 / 2)  # predicted PER(0-1), PER(3): ORG is not an entity in IOB2
    assert metrics["recall"] == pytest.approx(1 / 3)
    assert metrics["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))


def test_no_per_type_keys_unless_asked():
    metrics, _ = entity_metrics(GOLD, GOLD)
    assert metrics["f1"] == 1.0 and not any(key.startswith("PER_") for key in metrics)


def test_argmax_keeps_one_id_per_token():
    logits = torch.tensor([[[0.1, 2.0, 0.3], [3.0, 0.0, 0.0]]])
    assert argmax_logits(logits).tolist() == [[1, 0]]
    assert argmax_logits((logits, None)).tolist() == [[1, 0]]
