"""FEWSHOTDOC"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import get_linear_schedule_with_warmup

from utils.core.errors import DataError
from utils.core.files import write_json
from utils.core.labels import LabelSpace
from utils.tasks.classification.arguments import WARMUP_RATIO, FewShotArguments
from utils.tasks.classification.sentence_embedding import MeanPoolingForSequenceClassification, encode_texts

logger = logging.getLogger(__name__)

SAMPLE_FILE = "few_shot_sample.json"


def sample_k_per_label(labels: Sequence[str], k: int, seed: int, wanted: Sequence[str] | None = None) -> list[int]:
    """Row indices (ascending) of exactly `k` rows of each label, drawn without replacement; the same seed gives the
    same rows. `wanted`: the labels that must be present (default: those in `labels`)."""
    rows: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        rows.setdefault(label, []).append(index)
    names = sorted(rows) if wanted is None else list(wanted)
    short = {name: len(rows.get(name, [])) for name in names if len(rows.get(name, [])) < k}
    if short:
        counts = ", ".join(f"'{name}' has {n}" for name, n in short.items())
        raise DataError(f"--few_shot_k {k} needs {k} training examples of every label, but {counts}. Lower "
                        "--few_shot_k or add examples.")
    rng = np.random.default_rng(seed)
    chosen = [int(i) for name in names for i in rng.choice(rows[name], size=k, replace=False)]
    return sorted(chosen)


def contrastive_pairs(label_ids: Sequence[int], iterations: int, seed: int, max_pairs: int | None = None
                      ) -> list[tuple[int, int, float]]:
    """(i, j, target) pairs, target 1.0 for the same label and 0.0 for different ones, in equal numbers: each round
    gives every example one partner of its own label and one of another (SetFit's pair sampling). `max_pairs` keeps
    a random balanced subset."""
    by_label: dict[int, list[int]] = {}
    for index, label in enumerate(label_ids):
        by_label.setdefault(label, []).append(index)
    if len(by_label) < 2:
        raise DataError("contrastive training needs examples of at least two labels.")
    rng = np.random.default_rng(seed)
    positives: list[tuple[int, int, float]] = []
    negatives: list[tuple[int, int, float]] = []
    for _ in range(iterations):
        for anchor, label in enumerate(label_ids):
            same = [i for i in by_label[label] if i != anchor] or [anchor]
            other = [i for other_label, rows in by_label.items() if other_label != label for i in rows]
            positives.append((anchor, int(rng.choice(same)), 1.0))
            negatives.append((anchor, int(rng.choice(other)), 0.0))
    if max_pairs is not None and max_pairs < 2 * len(positives):
        keep = max_pairs // 2
        positives = [positives[i] for i in sorted(rng.choice(len(positives), size=keep, replace=False))]
        negatives = [negatives[i] for i in sorted(rng.choice(len(negatives), size=keep, replace=False))]
    pairs = positives + negatives
    return [pairs[i] for i in rng.permutation(len(pairs))]


def take_few_shot_sample(train: Dataset, k: int, seed: int) -> Dataset:
    """The K-per-label rows of the train split, with their row numbers in `source_index` (recorded in the run)."""
    indices = sample_k_per_label(train["label"], k, seed)
    logger.info("Few-shot: %d examples per label, %d in all, sampled from %d (seed %d)", k, len(indices),
                len(train), seed)
    return train.select(indices).add_column("source_index", indices)


def write_sample_record(output_dir: str, train: Dataset, data_args: FewShotArguments,
                        stats: dict[str, Any] | None = None) -> None:
    """few_shot_sample.json: which training rows the run used (and the contrastive phase's counts), so the run can
    be reproduced and audited."""
    os.makedirs(output_dir, exist_ok=True)
    write_json(os.path.join(output_dir, SAMPLE_FILE), {
        "k": data_args.few_shot_k, "seed": data_args.few_shot_seed, "method": data_args.few_shot_method,
        "per_label": dict(sorted(Counter(list(train["label"])).items())), **(stats or {}),
        "rows": list(train["source_index"]), "locations": list(train["location"]), "labels": list(train["label"]),
        "texts": list(train["text"]),
    })


def train_contrastive(model: MeanPoolingForSequenceClassification, tokenizer, texts: Sequence[str],
                      label_ids: Sequence[int], data_args, seed: int) -> dict[str, float]:
    """Tune the encoder so that same-label texts have cosine 1 and others 0 (mean squared error: SetFit's
    CosineSimilarityLoss). Returns the pair counts and the mean loss of the last 10% of steps."""
    pairs = contrastive_pairs(label_ids, data_args.few_shot_iterations, seed, data_args.few_shot_max_pairs)
    batch_size = data_args.few_shot_batch_size
    steps = math.ceil(len(pairs) / batch_size) * data_args.few_shot_epochs
    optimizer = torch.optim.AdamW([p for p in model.encoder.parameters() if p.requires_grad],
                                  lr=data_args.few_shot_learning_rate)
    schedule = get_linear_schedule_with_warmup(optimizer, int(WARMUP_RATIO * steps), steps)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses: list[float] = []
    logger.info("Contrastive training: %d pairs (%d same-label), %d steps of %d pairs", len(pairs),
                sum(t == 1.0 for *_, t in pairs), steps, batch_size)
    for _ in range(data_args.few_shot_epochs):
        order = torch.randperm(len(pairs), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            batch = [pairs[i] for i in order[start : start + batch_size]]
            inputs = tokenizer([texts[a] for a, _, _ in batch] + [texts[b] for _, b, _ in batch], padding=True,
                               truncation=True, max_length=data_args.max_seq_length, return_tensors="pt").to(device)
            embeddings = model.embed(**inputs)  # normalised, so the dot product is the cosine
            first, second = embeddings[: len(batch)], embeddings[len(batch) :]
            target = torch.tensor([t for *_, t in batch], device=device, dtype=embeddings.dtype)
            loss = torch.nn.functional.mse_loss((first * second).sum(-1), target)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    model.eval()
    tail = losses[-max(1, len(losses) // 10) :]
    return {"contrastive_pairs": len(pairs), "contrastive_steps": len(losses),
            "contrastive_final_loss": float(np.mean(tail))}


def head_from_logistic_regression(embeddings: np.ndarray, label_ids: Sequence[int], num_labels: int, seed: int
                                  ) -> tuple[np.ndarray, np.ndarray]:
    """(weight [labels x dim], bias [labels]) of a logistic regression on the embeddings (SetFit's default head).
    Two labels: scikit-learn fits one row w for label 1; logits (0, w.x + b) give the same probabilities."""
    from sklearn.linear_model import LogisticRegression

    present = sorted(set(label_ids))
    if present != list(range(num_labels)):
        raise DataError(f"the head needs examples of every label; got label ids {present} of {num_labels}.")
    regression = LogisticRegression(max_iter=1000, random_state=seed).fit(embeddings, np.asarray(label_ids))
    weight, bias = regression.coef_, regression.intercept_
    if num_labels == 2:
        weight = np.vstack([np.zeros_like(weight), weight])
        bias = np.concatenate([np.zeros_like(bias), bias])
    return weight.astype(np.float32), bias.astype(np.float32)


def set_head(model: MeanPoolingForSequenceClassification, weight: np.ndarray, bias: np.ndarray) -> None:
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(weight))
        model.head.bias.copy_(torch.as_tensor(bias))


def fit_contrastive_model(model: MeanPoolingForSequenceClassification, tokenizer, train: Dataset, labels: LabelSpace,
                          data_args, seed: int) -> dict[str, Any]:
    """Contrastive encoder training on the K-shot split, a logistic-regression head on top, encoder frozen after."""
    label_ids = [labels.label2id[name] for name in train["label"]]
    texts = list(train["text"])
    stats = train_contrastive(model, tokenizer, texts, label_ids, data_args, seed)
    embeddings = encode_texts(model, tokenizer, texts, data_args.max_seq_length)
    set_head(model, *head_from_logistic_regression(embeddings, label_ids, len(labels), seed))
    for parameter in model.encoder.parameters():
        parameter.requires_grad = False  # the train stage fits only the head
    logger.info("Contrastive few-shot: %s; head fitted on %d embeddings", stats, len(texts))
    return stats

