"""NER's two heads behind one `Task`: each part the heads do differently picks the token head's function or the
span head's from --head (`data.args.head`), so the shared code sees one task whatever the head."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from utils.core.errors import ConfigError
from utils.core.labels import LabelSpace
from utils.core.task import LoadedData
from utils.tasks.ner.data import load_ner_data
from utils.tasks.ner.encoding import encode_ner, ner_collator
from utils.tasks.ner.labels import build_ner_labels, check_ner_labels
from utils.tasks.ner.metrics import score_ner
from utils.tasks.ner.model import context_override
from utils.tasks.ner.outputs import decode_ner, write_ner_predictions
from utils.tasks.ner.span_data import load_span_data
from utils.tasks.ner.span_encoding import encode_spans, span_collator
from utils.tasks.ner.span_model import HEAD_KEY, SPAN_HEAD, SPAN_TOKENS_KEY, NerAutoModel
from utils.tasks.ner.span_outputs import (
    build_span_labels,
    check_span_labels,
    decode_span_predictions,
    score_spans,
    write_span_predictions,
)

logger = logging.getLogger(__name__)
#: What a saved span model's config fixes for a run that continues it without --head.
SAVED_SPAN_SETTINGS = (SPAN_TOKENS_KEY, "max_span_length", "span_decoding")


def spans(data: LoadedData) -> bool:
    return getattr(data.args, "head", "token") == SPAN_HEAD


def saved_span_settings(model: str | None) -> dict[str, Any] | None:
    """The span settings in a local saved model's config.json when it was trained with the span head, else None."""
    path = os.path.join(model, "config.json") if model and os.path.isdir(model) else None
    if path is None or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as stream:
        config = json.load(stream)
    if config.get(HEAD_KEY) != SPAN_HEAD:
        return None
    return {key: config[key] for key in SAVED_SPAN_SETTINGS if key in config}


def settle_head(data_args, model_args) -> None:
    """--head not given: a saved span model continues (or is scored) with its own head and the settings its head's
    weights were built for; anything else gets the token head."""
    if data_args.head is not None:
        return
    saved = saved_span_settings(model_args.model_name_or_path)
    if saved is None:
        data_args.head = "token"
        return
    data_args.head = SPAN_HEAD
    for key, value in saved.items():
        setattr(data_args, key, value)
    logger.info("--head not given: the span head of %s, with %s.", model_args.model_name_or_path, saved)
    if data_args.context_size:
        raise ConfigError("--context_size is for the token head; the span head reads each sentence alone.")


def load(data_args, model_args) -> LoadedData:
    settle_head(data_args, model_args)
    if data_args.head == SPAN_HEAD:
        return load_span_data(data_args, model_args, load_ner_data)
    return load_ner_data(data_args, model_args)


def build_labels(data: LoadedData, config) -> LabelSpace:
    return (build_span_labels if spans(data) else build_ner_labels)(data, config)


def check_labels(data: LoadedData, labels: LabelSpace):
    return (check_span_labels if spans(data) else check_ner_labels)(data, labels)


def encode(split, tokenizer, labels: LabelSpace, data: LoadedData):
    return (encode_spans if spans(data) else encode_ner)(split, tokenizer, labels, data)


def collator(tokenizer, data: LoadedData, pad_to: int | None):
    return (span_collator if spans(data) else ner_collator)(tokenizer, data, pad_to)


def decode(predictions, features, raw, labels: LabelSpace, data: LoadedData) -> list:
    return (decode_span_predictions if spans(data) else decode_ner)(predictions, features, raw, labels, data)


def score(decoded: list, raw, labels: LabelSpace, data: LoadedData):
    return (score_spans if spans(data) else score_ner)(decoded, raw, labels, data)


def write_predictions(output_dir: str, raw, decoded: list, labels: LabelSpace, data: LoadedData) -> list[str]:
    writer = write_span_predictions if spans(data) else write_ner_predictions
    return writer(output_dir, raw, decoded, labels, data)


def model_class(data: LoadedData) -> Any:
    """Both heads load through `NerAutoModel` (the span head replaces the token classifier)."""
    return NerAutoModel


def overrides(data: LoadedData, labels: LabelSpace) -> dict[str, Any]:
    """What the config keeps: the token head's document context and decoding, or the span head's settings."""
    if not spans(data):
        return context_override(data, labels)
    args = data.args
    return {
        HEAD_KEY: SPAN_HEAD,
        SPAN_TOKENS_KEY: args.max_span_tokens,
        "max_span_length": args.max_span_length,
        "span_decoding": args.span_decoding,
        "context_size": 0,
    }


def check_distillation(data: LoadedData) -> None:
    """Distillation is per word, which is what the token head predicts; span scores have no word to sit on."""
    if spans(data):
        raise ConfigError("--teacher_model: distillation trains the token head; drop --head span to distil.")
