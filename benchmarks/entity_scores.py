"""Which entity score calibrates best? A saved token-head NER model's predicted entities scored five ways, each
calibrated on validation by the stage's own map choice and measured on test (docs/calibration.md, CoNLL-2003).

    python benchmarks/entity_scores.py --model /work/models/conll \\
        --validation_file ../shared/data/conll2003/valid.txt --test_file ../shared/data/conll2003/test.txt \\
        --output benchmarks/results/entity_scores_conll.json

Scores of an entity over words s..e-1 with predicted tags and tag probabilities p: `mean` (what predict.py writes
and the stage calibrates), `min` and `product` of its words' predicted-tag probabilities, `first` (its first word's),
and `marginal`: P(B-X at s) * prod P(I-X at s+1..e-1) * (1 - P(I-X at e)), the probability that exactly this span is
an X under independent word tags, its right boundary included (IOB2 models only). AUROC says how well a score ranks
right entities above wrong ones; calibration cannot change it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCORES = ("mean", "min", "product", "first", "marginal")


def entity_scores(probabilities: np.ndarray, chosen: list[float], span, names: list[str]) -> dict[str, float]:
    """The five scores of one predicted entity (see the module docstring)."""
    words = np.asarray(chosen[span.start : span.end])
    begin, inside = names.index(f"B-{span.label}"), names.index(f"I-{span.label}")
    after = 1.0 - probabilities[span.end, inside] if span.end < len(probabilities) else 1.0
    marginal = probabilities[span.start, begin] * np.prod(probabilities[span.start + 1 : span.end, inside]) * after
    return {
        "mean": float(words.mean()),
        "min": float(words.min()),
        "product": float(words.prod()),
        "first": float(words[0]),
        "marginal": float(marginal),
    }


def split_units(prediction, corpus, names: list[str]) -> tuple[dict[str, list[float]], np.ndarray]:
    from utils.tasks.ner.iob import tags_to_spans

    scores: dict[str, list[float]] = {name: [] for name in SCORES}
    right = []
    for probabilities, gold in zip(
        prediction.word_probabilities(corpus.tokens, corpus.document_id), corpus.tags, strict=True
    ):
        if not len(probabilities):
            continue
        tags, chosen, _ = prediction.decode_word(probabilities, False)
        gold_spans = set(tags_to_spans(gold))
        for span in tags_to_spans(tags):
            for name, value in entity_scores(probabilities, chosen, span, names).items():
                scores[name].append(value)
            right.append(span in gold_spans)
    return scores, np.asarray(right)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--validation_file", required=True)
    parser.add_argument("--test_file", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    from sklearn.metrics import roc_auc_score

    from benchmarks.reporting import machine, write_results
    from utils.core.calibration import (
        CalibrationUnits,
        binary_logits,
        choose_map,
        confidences,
        expected_calibration_error,
        fit_map,
    )
    from utils.core.conll import read_conll
    from utils.serving.predictor import Predictor

    predictor = Predictor.from_pretrained(args.model, device="cpu", backend="torch")
    names = list(predictor.labels.names)
    splits = {
        name: split_units(predictor.prediction, read_conll(path), names)
        for name, path in (("validation", args.validation_file), ("test", args.test_file))
    }

    def units(name: str, score: str) -> CalibrationUnits:
        values, right = splits[name]
        count = len(right)
        logits = binary_logits(values[score]).reshape(count, 2)
        return CalibrationUnits(logits, np.zeros(count, dtype=int), (~right).astype(int), classes=False)

    rows = {}
    for score in SCORES:
        chosen, _ = choose_map(units("validation", score), bias=True)
        fitted = fit_map(units("validation", score), chosen)
        row = {"map": chosen, "temperature": fitted.temperature, "bias": fitted.bias}
        for name in splits:
            before, right = confidences(units(name, score))
            after, _ = confidences(units(name, score), *fitted)
            row[f"{name}_ece_before"] = expected_calibration_error(before, right)
            row[f"{name}_ece_after"] = expected_calibration_error(after, right)
        row["test_auroc"] = float(roc_auc_score(splits["test"][1], splits["test"][0][score]))
        rows[score] = row
    report = {"model": args.model, "command": "python " + " ".join(sys.argv), "scores": rows, "machine": machine()}
    lines = [
        f"Entity scores of {args.model}, calibrated on validation (the stage's map choice), measured on test.",
        "",
        "| score | map | validation ECE before / after | test ECE before / after | test AUROC |",
        "|---|---|---|---|---|",
    ]
    for score, row in rows.items():
        lines.append(
            f"| {score} | {row['map']} | {row['validation_ece_before']:.4f} / {row['validation_ece_after']:.4f} | "
            f"{row['test_ece_before']:.4f} / {row['test_ece_after']:.4f} | {row['test_auroc']:.4f} |"
        )
    write_results(Path(args.output), report, "\n".join(lines) + "\n")
    return report


if __name__ == "__main__":
    main()
