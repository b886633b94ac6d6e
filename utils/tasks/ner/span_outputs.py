"""The span head's labels, decoding, scores and prediction files (a run's side; `Predictor`'s is
utils/tasks/ner/span_predict.py)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict

from utils.core.conll import write_conll
from utils.core.errors import DataError
from utils.core.files import write_jsonl
from utils.core.labels import LabelSpace, run_label_space
from utils.core.task import LoadedData
from utils.tasks.ner.iob import Span
from utils.tasks.ner.outputs import RUN_ENTITY_KEYS, entity_record
from utils.tasks.ner.span_decoding import FLAT, NO_ENTITY, decode_spans
from utils.tasks.ner.span_encoding import candidate_spans
from utils.tasks.ner.span_metrics import span_metrics

logger = logging.getLogger(__name__)

SPAN_PREDICTION_FILES = ("predictions.jsonl", "predictions.conll")


def build_span_labels(data: LoadedData, config) -> LabelSpace:
    """`O` (no entity) first, then the entity types of the training data, sorted."""
    raw = data.raw
    seen = (
        {NO_ENTITY} | {label for labels in raw["train"]["span_labels"] for label in labels} if "train" in raw else None
    )
    return run_label_space(seen, data.args.label_names, config, sort_key=lambda name: (name != NO_ENTITY, name))


def check_span_labels(data: LoadedData, labels: LabelSpace) -> DatasetDict:
    """Validation/test entity types never seen in training: an error naming the first row."""
    for split in [s for s in ("validation", "test") if s in data.raw]:
        for row, types in zip(data.raw[split]["location"], data.raw[split]["span_labels"]):
            unseen = sorted({t for t in types if t not in labels})
            if unseen:
                raise DataError(f"entity types never seen in training: {unseen}; add them to the training data.", row)
    return data.raw


def window_candidates(
    predictions: np.ndarray, features: Dataset, data_args
) -> dict[int, tuple[list[tuple[int, int]], list[np.ndarray]]]:
    """Each sentence's candidate word spans and their label scores, from every window."""
    result: dict[int, tuple[list[tuple[int, int]], list[np.ndarray]]] = {}
    columns = zip(features["example_index"], features["word_index"], features["word_end"], strict=True)
    for row, (example, starts, ends) in enumerate(columns):
        spans, scores = result.setdefault(example, ([], []))
        for t, j, start, end in candidate_spans(starts, ends, data_args.max_span_length, data_args.max_span_tokens):
            spans.append((start, end))
            scores.append(predictions[row, t, j])
    return result


def decode_span_predictions(
    predictions, features: Dataset, raw: Dataset, labels: LabelSpace, data: LoadedData
) -> list[list[tuple[Span, float]]]:
    """Each sentence's entities with their probabilities (predictions: per-token span log-probabilities)."""
    per_sentence = window_candidates(np.asarray(predictions), features, data.args)
    decoded = []
    for index in range(len(raw)):
        spans, scores = per_sentence.get(index, ([], []))
        probabilities = np.exp(np.stack(scores)) if scores else np.zeros((0, len(labels)))
        decoded.append(decode_spans(spans, probabilities, labels.names, data.args.span_decoding))
    return decoded


def gold_spans(raw: Dataset) -> list[list[Span]]:
    columns = zip(raw["span_labels"], raw["span_starts"], raw["span_ends"])
    return [[Span(label, s, e) for label, s, e in zip(*row)] for row in columns]


def score_spans(
    decoded: list[list[tuple[Span, float]]], raw: Dataset, labels: LabelSpace, data: LoadedData
) -> tuple[dict[str, float], str]:
    """Exact span + type scores: overall, per type, per nesting depth, nested recall (utils/tasks/ner/span_metrics)."""
    if "span_labels" not in raw.column_names:
        return {}, ""
    metrics = span_metrics(gold_spans(raw), [[span for span, _ in sentence] for sentence in decoded])
    lines = [f"{'':>12} precision    recall  f1-score   support"]
    for name in ["", *sorted({k.rsplit("_", 1)[0] + "_" for k in metrics if k.endswith("_support")})]:
        if f"{name}precision" in metrics:
            support = metrics.get(f"{name}support", sum(len(s) for s in raw["span_labels"]))
            values = [metrics[f"{name}{key}"] for key in ("precision", "recall", "f1")]
            lines.append(
                f"{name.rstrip('_') or 'overall':>12} " + " ".join(f"{v:9.4f}" for v in values) + f" {support:9d}"
            )
    lines.append(f"nested entities recalled: {metrics['nested_recall']:.4f} of {metrics['nested_support']}")
    return metrics, "\n".join(lines) + "\n"


def write_span_predictions(
    output_dir: str, raw: Dataset, decoded: list[list[tuple[Span, float]]], labels: LabelSpace, data: LoadedData
) -> list[str]:
    """predictions.jsonl (entities as word spans, gold beside); predictions.conll only for flat decoding (BIO cannot
    hold nested entities)."""
    gold = gold_spans(raw) if "span_labels" in raw.column_names else None
    records = []
    for index, (words, sentence) in enumerate(zip(raw["tokens"], decoded, strict=True)):
        record: dict[str, Any] = {"id": index, "document_id": raw["document_id"][index], "tokens": words}
        record["entities"] = [entity_record(*entity_parts(s, words), keys=RUN_ENTITY_KEYS) for s, _ in sentence]
        if gold is not None:
            record["gold"] = [entity_record(*entity_parts(s, words), keys=RUN_ENTITY_KEYS) for s in gold[index]]
        records.append(record)
    jsonl_file, conll_file = SPAN_PREDICTION_FILES
    write_jsonl(os.path.join(output_dir, jsonl_file), records)
    if data.args.span_decoding != FLAT:
        logger.info(
            "Span head, nested decoding: predictions.jsonl only (predictions.conll needs --span_decoding flat)."
        )
        return [jsonl_file]
    rows = [
        [(w, t) for w, t in zip(words, bio_tags(len(words), [s for s, _ in sentence]))]
        for words, sentence in zip(raw["tokens"], decoded)
    ]
    write_conll(os.path.join(output_dir, conll_file), rows)
    return [jsonl_file, conll_file]


def entity_parts(span: Span, words: Sequence[str]) -> tuple[str, str, int, int]:
    return span.label, " ".join(words[span.start : span.end]), span.start, span.end


def bio_tags(n_words: int, spans: Sequence[Span]) -> list[str]:
    """IOB2 tags of non-overlapping spans."""
    tags = ["O"] * n_words
    for span in spans:
        tags[span.start] = f"B-{span.label}"
        for i in range(span.start + 1, span.end):
            tags[i] = f"I-{span.label}"
    return tags
