"""Constrained vs argmax decoding of a fine-tuned token-classification model, measured: entity F1 (conlleval
semantics, as training reports it, and seqeval's strict IOB2 mode) and invalid tag sequences, on CoNLL-2003's
validation and test sets.

    python benchmarks/constrained_decoding.py --model /work/models/conll-fp32 \\
        --output benchmarks/results/constrained_decoding.json

The model runs once per split (`NerPrediction.word_probabilities`: each word's tag probabilities with the document
context the model was trained with); both decodings then read the same probabilities, so the difference is the
decoding alone. The run's own all_results.json (the Trainer's evaluation, argmax decoding before #31) is copied in
beside, as a cross-check of the argmax figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "conll2003"


def measure(model: str, conll: Path) -> dict:
    from utils.core.conll import read_conll
    from utils.serving.predictor import Predictor
    from utils.tasks.ner.decoding import ARGMAX, CONSTRAINED
    from utils.tasks.ner.iob import count_invalid_transitions
    from utils.tasks.ner.metrics import entity_metrics

    corpus = read_conll(str(conll))
    prediction = Predictor.from_pretrained(model, device="cpu").prediction
    documents = [str(document) for document in corpus.document_id]
    probabilities = prediction.word_probabilities(corpus.tokens, documents)
    results = {}
    for decoding in (ARGMAX, CONSTRAINED):
        decoder = dataclasses.replace(prediction.decoder, decoding=decoding)
        decoding_prediction = dataclasses.replace(prediction, decoder=decoder)
        started = time.perf_counter()
        tags = [decoding_prediction.decode_word(p, margins=False)[0] for p in probabilities]
        seconds = time.perf_counter() - started
        lenient, _ = entity_metrics(corpus.tags, tags)
        strict, _ = entity_metrics(corpus.tags, tags, strict=True, scheme="IOB2")
        results[decoding] = {
            "f1": lenient["f1"],
            "precision": lenient["precision"],
            "recall": lenient["recall"],
            "strict_iob2_f1": strict["f1"],
            "invalid_transitions": lenient["invalid_iob_predictions"],
            "sentences_with_invalid_sequence": sum(count_invalid_transitions(t) > 0 for t in tags),
            "decode_seconds": seconds,
        }
    return {
        "file": str(conll),
        "sentences": len(corpus.tokens),
        "words": sum(len(tokens) for tokens in corpus.tokens),
        "tag_scheme": prediction.decoder.scheme,
        "decodings": results,
        "f1_change": results[CONSTRAINED]["f1"] - results[ARGMAX]["f1"],
    }


def main(argv: list[str] | None = None) -> None:
    from benchmarks.reporting import machine, write_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="/work/models/conll-fp32")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/constrained_decoding.json"))
    args = parser.parse_args(argv)
    splits = {name: measure(args.model, Path(args.data) / f"{name}.txt") for name in ("valid", "test")}
    run_results = Path(args.model) / "all_results.json"
    trainer = json.loads(run_results.read_text()) if run_results.is_file() else {}
    report = {
        "model": args.model,
        "splits": splits,
        "trainer_results": {k: v for k, v in trainer.items() if "f1" in k or "invalid" in k},
        "machine": machine(),
    }
    rows = [
        "| split | decoding | F1 (conlleval) | strict IOB2 F1 | invalid I- tags | sentences with one |",
        "|---|---|---|---|---|---|",
    ]
    for name, split in splits.items():
        for decoding, row in split["decodings"].items():
            rows.append(
                f"| {name} | {decoding} | {row['f1']:.4f} | {row['strict_iob2_f1']:.4f} | "
                f"{row['invalid_transitions']} | {row['sentences_with_invalid_sequence']} |"
            )
    write_results(Path(args.output), report, "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
