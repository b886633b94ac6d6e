"""The classification model (the usual head, or a mean-pooling classifier for zero-/few-shot) and its loss."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from datasets import DatasetDict

from utils.core.errors import ConfigError
from utils.core.labels import LabelSpace
from utils.core.losses import MULTI, REGRESSION, SINGLE, make_loss
from utils.core.modeling import load_model
from utils.tasks.classification.arguments import ClassificationDataArguments
from utils.tasks.classification.few_shot import fit_contrastive_model, set_head, write_sample_record
from utils.tasks.classification.sentence_embedding import (
    MEAN,
    POOLING_MARKER,
    MeanPoolingForSequenceClassification,
    SequenceClassifier,
)
from utils.tasks.classification.zero_shot import descriptions_for, read_label_descriptions, zero_shot_head

logger = logging.getLogger(__name__)


def problem_type_override(raw, labels: LabelSpace, data_args: ClassificationDataArguments) -> dict[str, Any]:
    return {"problem_type": data_args.problem_type}


def build_classification_model(model_args, labels: LabelSpace, config, raw: DatasetDict,
                               data_args: ClassificationDataArguments, training_args, tokenizer,
                               overrides: dict[str, Any]):
    """The usual model; or, for zero-shot and contrastive few-shot, a mean-pooling classifier whose head is set
    (label-description embeddings) or fitted (after contrastive training of the encoder) here, before `Trainer`."""
    if not (data_args.zero_shot or data_args.contrastive):
        model = load_model(model_args, SequenceClassifier, labels, config, **overrides)
        if data_args.few_shot_k and training_args.should_save:
            write_sample_record(training_args.output_dir, raw["train"], data_args)
        return model
    model = load_model(model_args, MeanPoolingForSequenceClassification, labels, config, **overrides,
                       **{POOLING_MARKER: MEAN, "normalize_embeddings": True})
    model.to(training_args.device)
    if data_args.contrastive:
        stats = fit_contrastive_model(model, tokenizer, raw["train"], labels, data_args, data_args.few_shot_seed,
                                      training_args)
        if training_args.should_save:
            write_sample_record(training_args.output_dir, raw["train"], data_args, stats)
        return model
    given = read_label_descriptions(data_args.label_descriptions) if data_args.label_descriptions else {}
    descriptions = descriptions_for(labels, given)
    set_head(model, *zero_shot_head(model, tokenizer, descriptions, data_args.max_seq_length))
    model.config.label_descriptions = descriptions  # saved with the model: what its head was made from
    if training_args.should_save:  # no train stage saves it
        model.save_pretrained(training_args.output_dir)
        tokenizer.save_pretrained(training_args.output_dir)
    return model


def resolve_class_weights(raw: DatasetDict, labels: LabelSpace, data_args: ClassificationDataArguments
                          ) -> list[float] | None:
    """`--class_weights`: none, auto (balanced: n / (k * count); multi-label: negatives / positives), or a list."""
    spec = data_args.class_weights.strip().lower()
    if spec == "none":
        return None
    if data_args.problem_type == REGRESSION:
        raise ConfigError("--class_weights does not apply to regression.")
    if spec == "auto":
        if "train" not in raw:
            raise ConfigError("--class_weights auto needs training data.")
        values = raw["train"]["label"]
        n = len(values)
        if data_args.problem_type == MULTI:
            positives = Counter(name for value in values for name in value)
            return [(n - positives[name]) / max(positives[name], 1) for name in labels.names]
        counts = Counter(values)
        return [n / (len(labels) * max(counts[name], 1)) for name in labels.names]
    try:
        weights = [float(w) for w in spec.split(",")]
    except ValueError:
        raise ConfigError(f"--class_weights {data_args.class_weights!r}: give none, auto, or numbers.") from None
    if len(weights) != len(labels) or any(w <= 0 for w in weights):
        raise ConfigError(f"--class_weights needs {len(labels)} positive weights, one per label in order "
                          f"{list(labels.names)}; got {weights}.")
    return weights


def classification_loss(raw: DatasetDict, labels: LabelSpace, data_args: ClassificationDataArguments,
                        training_args) -> Callable:
    """The problem type's loss with the class weights and label smoothing (see utils/core/losses.py for why ours)."""
    smoothing = training_args.label_smoothing_factor if data_args.problem_type == SINGLE else 0.0
    return make_loss(data_args.problem_type, resolve_class_weights(raw, labels, data_args), smoothing)

