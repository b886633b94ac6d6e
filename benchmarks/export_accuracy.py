"""Accuracy after export, measured: CoNLL-2003 test F1 and SST-2 test accuracy of the same fine-tuned models with the
PyTorch, ONNX fp32 and ONNX int8 backends of `Predictor` (export first: `export.py --model DIR --quantize int8`).

    python benchmarks/export_accuracy.py --ner_model /tmp/conll_ner --classification_model /tmp/sst2_cls \\
        --output benchmarks/results/export_accuracy.json

NER tags the gold words of every test sentence (`NerPrediction.tag_words`, with the document context the model was
trained with) and scores them with the training pipeline's seqeval settings (conlleval semantics); classification
predicts every test text and counts the labels equal to gold. Each backend also gives its agreement with PyTorch
(words / texts with the same prediction) and its speed in this process (one backend after another, after a warm-up).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
BACKENDS = ("torch", "onnx-fp32", "onnx-int8")


def ner_scores(model: str, conll: str, backends: list[str]) -> dict:
    from utils.core.conll import read_conll
    from utils.serving.predictor import Predictor
    from utils.tasks.ner.metrics import entity_metrics

    corpus = read_conll(conll)
    results, reference = {}, None
    for backend in backends:
        predictor = Predictor.from_pretrained(model, device="cpu", backend=backend)
        documents = [str(document) for document in corpus.document_id]
        predictor.prediction.tag_words(corpus.tokens[:16], documents[:16])  # warm-up
        started = time.perf_counter()
        tags = [tags for tags, _ in predictor.prediction.tag_words(corpus.tokens, documents)]
        seconds = time.perf_counter() - started
        metrics, _ = entity_metrics(corpus.tags, tags)
        flat = [tag for sentence in tags for tag in sentence]
        reference = reference or flat
        results[backend] = {
            "f1": metrics["f1"],
            "precision": metrics["precision"],
            "recall": metrics["recall"],
            "word_accuracy": metrics["accuracy"],
            "agreement_with_torch": sum(a == b for a, b in zip(flat, reference)) / len(flat),
            "sentences_per_second": len(tags) / seconds,
        }
    return {
        "model": model,
        "file": conll,
        "sentences": len(corpus.tokens),
        "words": sum(len(tokens) for tokens in corpus.tokens),
        "backends": results,
    }


def classification_scores(model: str, tsv: str, backends: list[str]) -> dict:
    from utils.serving.predictor import Predictor

    with open(tsv, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    text_column = next(name for name in rows[0] if name != "label")
    texts, gold = [row[text_column] for row in rows], [row["label"] for row in rows]
    results, reference = {}, None
    for backend in backends:
        predictor = Predictor.from_pretrained(model, device="cpu", backend=backend)
        names = list(predictor.labels.names)
        wanted = [label if label in names else names[int(label)] for label in gold]
        predictor.predict(texts[:16])
        started = time.perf_counter()
        labels = [result["label"] for result in predictor.predict(texts)]
        seconds = time.perf_counter() - started
        reference = reference or labels
        results[backend] = {
            "accuracy": sum(a == b for a, b in zip(labels, wanted)) / len(labels),
            "agreement_with_torch": sum(a == b for a, b in zip(labels, reference)) / len(labels),
            "texts_per_second": len(labels) / seconds,
        }
    return {"model": model, "file": tsv, "texts": len(texts), "backends": results}


def markdown(report: dict) -> str:
    lines = [f"Load average {report['load_average']:.2f} before the runs; {os.cpu_count()} CPUs.", ""]
    if "ner" in report:
        ner = report["ner"]
        lines += [
            f"NER: `{ner['model']}` on `{ner['file']}` ({ner['sentences']} sentences, {ner['words']} words).",
            "",
            "| backend | test F1 | precision | recall | words as PyTorch | sentences/s |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {r['f1']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | "
            f"{r['agreement_with_torch']:.2%} | {r['sentences_per_second']:.0f} |"
            for name, r in ner["backends"].items()
        ]
        lines.append("")
    if "classification" in report:
        cls = report["classification"]
        lines += [
            f"Classification: `{cls['model']}` on `{cls['file']}` ({cls['texts']} texts).",
            "",
            "| backend | test accuracy | labels as PyTorch | texts/s |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {r['accuracy']:.4f} | {r['agreement_with_torch']:.2%} | {r['texts_per_second']:.0f} |"
            for name, r in cls["backends"].items()
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ner_model", help="A fine-tuned NER run directory, exported with --quantize int8.")
    parser.add_argument("--conll", default=str(DATA / "conll2003" / "test.txt"))
    parser.add_argument("--classification_model", help="A fine-tuned classification run directory, exported.")
    parser.add_argument("--tsv", default=str(DATA / "sst2" / "test.tsv"), help="label<TAB>text with a header.")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="Comma-separated; torch first.")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "export_accuracy.json")
    args = parser.parse_args()
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    if not (args.ner_model or args.classification_model):
        sys.exit("error: give --ner_model and/or --classification_model.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from utils.core.files import write_json

    report: dict = {"load_average": os.getloadavg()[0]}
    if args.ner_model:
        report["ner"] = ner_scores(args.ner_model, args.conll, backends)
    if args.classification_model:
        report["classification"] = classification_scores(args.classification_model, args.tsv, backends)
    write_json(args.output, report)
    table = markdown(report)
    args.output.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    print(json.dumps({"output": str(args.output)}))


if __name__ == "__main__":
    main()
