"""The classification model (the usual head, or a mean-pooling classifier for zero-/few-shot) and its loss."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from utils.core.errors import ConfigError
from utils.core.labels import LabelSpace
from utils.core.losses import MULTI, REGRESSION, SINGLE, make_loss
from utils.core.task import LoadedData
from utils.tasks.classification.sentence_embedding import (
    MEAN,
    POOLING_MARKER,
    MeanPoolingForSequenceClassification,
    SequenceClassifier,
)
from utils.tasks.classification.static_student import StaticStudentBuilder

logger = logging.getLogger(__name__)


def problem_type_override(data: LoadedData, labels: LabelSpace) -> dict[str, Any]:
    """The problem type, and for zero-/few-shot's mean-pooling classifier its pooling and normalised embeddings."""
    overrides: dict[str, Any] = {"problem_type": data.settled.problem_type}
    if uses_mean_pooling(data):
        overrides.update({POOLING_MARKER: MEAN, "normalize_embeddings": True})
    return overrides


def uses_mean_pooling(data: LoadedData) -> bool:
    """Zero-shot and contrastive few-shot compare sentence embeddings: a mean-pooling classifier."""
    return bool(data.args.zero_shot or data.args.contrastive)


def classification_model_class(data: LoadedData) -> type:
    """The usual head (`SequenceClassifier`), or the mean-pooling classifier for zero-shot and contrastive
    few-shot, whose head a stage of their own sets (utils/tasks/classification/stages.py)."""
    if data.args.static_student_dims:
        return StaticStudentBuilder(data.args.static_student_dims)
    return MeanPoolingForSequenceClassification if uses_mean_pooling(data) else SequenceClassifier


def resolve_class_weights(data: LoadedData, labels: LabelSpace) -> list[float] | None:
    """`--class_weights`: none, auto (balanced: n / (k * count); multi-label: negatives / positives), or a list."""
    raw, data_args, problem = data.raw, data.args, data.settled.problem_type
    spec = data_args.class_weights.strip().lower()
    if spec == "none":
        return None
    if problem == REGRESSION:
        raise ConfigError("--class_weights does not apply to regression.")
    if spec == "auto":
        if "train" not in raw:
            raise ConfigError("--class_weights auto needs training data.")
        values = raw["train"]["label"]
        n = len(values)
        if problem == MULTI:
            positives = Counter(name for value in values for name in value)
            return [(n - positives[name]) / max(positives[name], 1) for name in labels.names]
        counts = Counter(values)
        return [n / (len(labels) * max(counts[name], 1)) for name in labels.names]
    try:
        weights = [float(w) for w in spec.split(",")]
    except ValueError:
        raise ConfigError(f"--class_weights {data_args.class_weights!r}: give none, auto, or numbers.") from None
    if len(weights) != len(labels) or any(w <= 0 for w in weights):
        raise ConfigError(
            f"--class_weights needs {len(labels)} positive weights, one per label in order "
            f"{list(labels.names)}; got {weights}."
        )
    return weights


def classification_loss(data: LoadedData, labels: LabelSpace, training_args) -> Callable:
    """The problem type's loss with the class weights and label smoothing (see utils/core/losses.py for why ours)."""
    problem = data.settled.problem_type
    smoothing = training_args.label_smoothing_factor if problem == SINGLE else 0.0
    return make_loss(problem, resolve_class_weights(data, labels), smoothing)
