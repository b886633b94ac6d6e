"""Logits to labels and probabilities, prediction files, the confusion matrix and the model-card lines.

`classification_results` is the one decoding of examples' logits: training's predict stage (`decode_classification`)
and predict.py / `Predictor` (utils/tasks/classification/predict.py) both use it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict

from utils.core.files import atomic_write, write_json, write_jsonl
from utils.core.labels import LabelSpace
from utils.core.losses import MULTI, REGRESSION, SINGLE
from utils.core.task import LoadedData
from utils.tasks.classification.arguments import ClassificationDataArguments, fixed_threshold
from utils.tasks.classification.model import resolve_class_weights

logger = logging.getLogger(__name__)


#: What `write_classification_predictions` writes (the confusion matrix only for single-label data with gold).
PREDICTIONS_JSONL, PREDICTIONS_TSV = "predictions.jsonl", "predictions.tsv"
CONFUSION_JSON, CONFUSION_PNG = "confusion_matrix.json", "confusion_matrix.png"
PREDICTION_FILES = (PREDICTIONS_JSONL, PREDICTIONS_TSV, CONFUSION_JSON, CONFUSION_PNG)


def decode_classification(
    predictions, features: Dataset, raw: Dataset, labels: LabelSpace, data: LoadedData
) -> list[dict]:
    """Per-example predictions in input order: the label and every label's probability (single-label), the labels
    over --threshold (multi-label), or the value (regression)."""
    logits = np.asarray(predictions, dtype=np.float64)
    decoded = classification_results(logits, labels.names, data.settled.problem_type, fixed_threshold(data.args))
    result: list[dict] = [{}] * len(raw)
    for record, example in zip(decoded, features["example_index"], strict=True):
        result[example] = record
    return result


def classification_result(
    logits: np.ndarray, names: Sequence[str], problem_type: str | None, threshold: float | Sequence[float]
) -> dict[str, Any]:
    """One example's logits (float64) decoded: `{"label", "probabilities"}` (single-label: softmax, the likeliest
    label), `{"labels", "probabilities"}` (multi-label: sigmoid, the labels over `threshold`) or `{"value"}`
    (regression); probabilities by label name."""
    return classification_results(np.asarray(logits)[None, :], names, problem_type, threshold)[0]


def classification_results(
    logits: np.ndarray, names: Sequence[str], problem_type: str | None, threshold: float | Sequence[float]
) -> list[dict[str, Any]]:
    """`classification_result` of each row of `logits` ([examples, outputs], float64), the arithmetic done on all
    rows at once: per row in Python it cost more than a static student's forward pass."""
    logits = np.asarray(logits, dtype=np.float64)
    if problem_type == REGRESSION:
        return [{"value": value} for value in logits[:, 0].tolist()]
    if problem_type == MULTI:
        probabilities = 1 / (1 + np.exp(-logits))
        on = probabilities > np.broadcast_to(np.asarray(threshold, dtype=np.float64), probabilities.shape[-1:])
        return [
            {"labels": [name for name, chosen in zip(names, row_on) if chosen], "probabilities": rounded(names, row)}
            for row, row_on in zip(probabilities.tolist(), on.tolist())
        ]
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return [
        {"label": names[best], "probabilities": rounded(names, row)}
        for best, row in zip(logits.argmax(axis=1).tolist(), probabilities.tolist())
    ]


def rounded(names: Sequence[str], probabilities: Sequence[float]) -> dict[str, float]:
    """Probabilities by label name, to 6 decimals (more is noise in a predictions file)."""
    return {name: round(float(p), 6) for name, p in zip(names, probabilities)}


def write_confusion_matrix(output_dir: str, matrix: list[list[int]], names: Sequence[str]) -> list[str]:
    """confusion_matrix.json (rows: gold, columns: predicted) and a readable confusion_matrix.png."""
    write_json(
        os.path.join(output_dir, CONFUSION_JSON),
        {"labels": list(names), "matrix": matrix, "rows": "gold", "columns": "predicted"},
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.6 * len(names) + 2.5)
    figure, axes = plt.subplots(figsize=(size, size))
    counts = np.asarray(matrix)
    axes.imshow(counts, cmap="Blues")
    axes.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), labels=names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    for (i, j), value in np.ndenumerate(counts):
        axes.text(j, i, str(value), ha="center", va="center", color="white" if value > counts.max() / 2 else "black")
    axes.set_title("Confusion matrix (test)")
    figure.tight_layout()
    with atomic_write(os.path.join(output_dir, CONFUSION_PNG), "wb") as stream:
        figure.savefig(stream, format="png", dpi=120)
    plt.close(figure)
    return [CONFUSION_JSON, CONFUSION_PNG]


def write_classification_predictions(
    output_dir: str, raw: Dataset, decoded: list[dict], labels: LabelSpace, data: LoadedData
) -> list[str]:
    """predictions.jsonl and predictions.tsv in input order (with gold when known), plus the confusion matrix."""
    gold = raw["label"] if "label" in raw.column_names else None
    pairs = raw["text_pair"] if "text_pair" in raw.column_names else None
    records = []
    for index, (text, prediction) in enumerate(zip(raw["text"], decoded, strict=True)):
        record: dict[str, Any] = {"index": index, "text": text}
        if pairs is not None:
            record["text_pair"] = pairs[index]
        record.update(prediction)
        if gold is not None:
            record["gold"] = gold[index]
        records.append(record)
    write_jsonl(os.path.join(output_dir, PREDICTIONS_JSONL), records)
    prediction_key = {REGRESSION: "value", MULTI: "labels"}.get(data.settled.problem_type, "label")
    header = ["index", "text"] + (["text_pair"] if pairs is not None else []) + ["prediction", "probabilities"]
    header += ["gold"] if gold is not None else []
    with atomic_write(os.path.join(output_dir, PREDICTIONS_TSV)) as stream:
        stream.write("\t".join(header) + "\n")
        for record in records:
            cells = [record["index"], record["text"]] + ([record["text_pair"]] if pairs is not None else [])
            cells += [record[prediction_key], record.get("probabilities", "")]
            cells += [record["gold"]] if gold is not None else []
            stream.write("\t".join(tsv_cell(c) for c in cells) + "\n")
    written = [PREDICTIONS_JSONL, PREDICTIONS_TSV]
    if gold is not None and data.settled.problem_type == SINGLE:
        from sklearn.metrics import confusion_matrix

        label2id = labels.label2id
        matrix = confusion_matrix(
            [label2id[g] for g in gold], [label2id[d["label"]] for d in decoded], labels=list(range(len(labels)))
        ).tolist()
        written += write_confusion_matrix(output_dir, matrix, labels.names)
    return written


def tsv_cell(value: Any) -> str:
    """Lists and dicts as JSON; tabs and line breaks in text replaced, so one row stays one line."""
    if isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False)
    return str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def classification_card_details(data: LoadedData, labels: LabelSpace) -> list[str]:
    """Model-card lines: problem type, class weights actually used, truncation."""
    raw, data_args, problem = data.raw, data.args, data.settled.problem_type
    weights = resolve_class_weights(data, labels)
    lines = ["## Method", "", f"- Problem type: {problem}."]
    if "text_pair" in raw[next(iter(raw))].column_names:
        lines.append("- Inputs are sentence pairs (encoded as pairs, with token type ids).")
    if weights:
        lines.append(
            "- Class weights in the loss: " + ", ".join(f"{n}={w:.4g}" for n, w in zip(labels.names, weights)) + "."
        )
    if problem == MULTI:
        lines.append(
            "- A label is predicted when its probability exceeds "
            + (
                "its own threshold, chosen on validation for micro-F1 (stored in config.json's `calibration`)."
                if data_args.threshold == "auto"
                else f"{data_args.threshold}."
            )
        )
    lines.append(f"- Texts longer than {data_args.max_seq_length} tokens are cut on the {data_args.truncation_side}.")
    return lines + few_shot_card_lines(raw, data_args)


def few_shot_card_lines(raw: DatasetDict, data_args: ClassificationDataArguments) -> list[str]:
    """How a zero-shot or few-shot model was made (the card's hyperparameters describe only the train stage)."""
    if data_args.zero_shot:
        source = data_args.label_descriptions or "the label names"
        return [
            f"- Zero-shot, no training: each text gets the label whose description ({source}; saved in "
            "config.json as `label_descriptions`) has the most similar mean-pooled embedding (cosine)."
        ]
    if not data_args.few_shot_k:
        return []
    lines = [
        f"- Few-shot: {data_args.few_shot_k} training examples per label ({len(raw['train'])} in all), sampled "
        f"with seed {data_args.few_shot_seed}; the rows are listed in few_shot_sample.json."
    ]
    if data_args.contrastive:
        lines.append(
            f"- Contrastive (SetFit-style): the encoder was trained on same/different-label pairs "
            f"({data_args.few_shot_iterations} rounds, cosine-similarity loss on mean-pooled embeddings, "
            f"lr {data_args.few_shot_learning_rate}), then a logistic-regression head was fitted; the train "
            "stage trained only the head."
        )
    return lines
