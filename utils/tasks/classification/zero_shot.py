"""Zero-shot classification: each text gets the label whose description embedding is most similar to its own.

    python run_classification.py --validation_file dev.tsv --test_file test.tsv --zero_shot \
        --label_descriptions data/classification/sentiment/labels.yaml

A label-description file maps each label to a description, or to several that are averaged (a cheap ensemble):

    negative: a negative review; the writer did not like it
    positive: [a positive review, the writer liked it]

The model is `MeanPoolingForSequenceClassification` whose head rows are the normalised description embeddings times
`SIMILARITY_SCALE`: its logits are scaled cosine similarities, so evaluation, predictions and reloading work as for a
fine-tuned model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml

from utils.core.errors import ConfigError
from utils.core.labels import LabelSpace
from utils.tasks.classification.embeddings import encode_texts
from utils.tasks.classification.sentence_embedding import SIMILARITY_SCALE, MeanPoolingForSequenceClassification


def read_label_descriptions(path: str) -> dict[str, list[str]]:
    """Label name -> its descriptions, in the file's order; YAML or JSON (JSON is YAML)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--label_descriptions {path} does not exist.")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"--label_descriptions {path} is not valid YAML/JSON: {err}") from None
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(
            f"--label_descriptions {path} must map each label name to a description, e.g. "
            "'positive: a positive review'."
        )
    result: dict[str, list[str]] = {}
    for name, value in data.items():
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(item, str) and item.strip() for item in items):
            raise ConfigError(
                f"--label_descriptions {path}: label {name!r} needs a non-empty description (a string "
                f"or a list of strings), got {value!r}."
            )
        result[str(name)] = [item.strip() for item in items]
    return result


def descriptions_for(labels: LabelSpace, given: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Every label's descriptions: the given ones, else the label name itself (which often works for clear names)."""
    unknown = sorted(set(given) - set(labels.names))
    if unknown:
        raise ConfigError(
            f"--label_descriptions describes labels {unknown} that are not among the labels {list(labels.names)}."
        )
    return {name: list(given.get(name) or [name.replace("_", " ")]) for name in labels.names}


def label_embeddings(
    model: MeanPoolingForSequenceClassification, tokenizer, descriptions: Mapping[str, list[str]], max_length: int
) -> np.ndarray:
    """One unit vector per label: the normalised mean of its descriptions' embeddings."""
    texts = [text for items in descriptions.values() for text in items]
    embeddings = encode_texts(model, tokenizer, texts, max_length)
    rows, start = [], 0
    for items in descriptions.values():
        mean = embeddings[start : start + len(items)].mean(0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-9))
        start += len(items)
    return np.stack(rows)


def zero_shot_head(
    model: MeanPoolingForSequenceClassification, tokenizer, descriptions: Mapping[str, list[str]], max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) whose logits are the scaled cosine similarities to the labels' descriptions."""
    weight = SIMILARITY_SCALE * label_embeddings(model, tokenizer, descriptions, max_length)
    return weight.astype(np.float32), np.zeros(len(weight), dtype=np.float32)
