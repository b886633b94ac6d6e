"""The span head: each token t and offset j < `max_span_tokens` score the subword span [t, t + j] as one entity
type or none, from the start and end tokens' representations and the span's width.

Design (Lee et al., 2017, "End-to-end neural coreference resolution"; the span representation of SpERT and SpanNER
for nested NER): a feed-forward layer over [h_start; h_end; width embedding], its first layer split into a start,
an end and a width part so that no [tokens x offsets x 2 hidden] tensor is ever built. Chosen because it needs no
other input than the token ids: the head replaces the token-classification model's `classifier`, so the
encoder's forward, packing, `Trainer`, the serving backends and the ONNX export all work as for the token head,
and its logits are per token ([batch, tokens, max_span_tokens, labels]). A word span is scored at its first
word's first subword with the offset to its last word's last subword (utils/tasks/ner/span_encoding.py).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForTokenClassification

logger = logging.getLogger(__name__)

#: Model-config keys of the span head.
HEAD_KEY, SPAN_TOKENS_KEY = "ner_head", "max_span_tokens"
SPAN_HEAD = "span"
WIDTH_SIZE, FFN_SIZE = 32, 256


class SpanHead(nn.Module):
    """[batch, tokens, hidden] -> [batch, tokens, max_span_tokens, labels] span logits."""

    def __init__(self, hidden_size: int, num_labels: int, max_span_tokens: int, dropout: float = 0.1):
        super().__init__()
        self.max_span_tokens = max_span_tokens
        self.start = nn.Linear(hidden_size, FFN_SIZE)
        self.end = nn.Linear(hidden_size, FFN_SIZE, bias=False)
        self.width = nn.Embedding(max_span_tokens, WIDTH_SIZE)
        self.width_projection = nn.Linear(WIDTH_SIZE, FFN_SIZE, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(FFN_SIZE, num_labels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        start, end = self.start(hidden), self.end(hidden)
        tokens, k = hidden.shape[1], self.max_span_tokens
        # end[t + j] for every offset j: the sequence shifted left j places (zeros past its end, never labelled)
        padded = nn.functional.pad(end, (0, 0, 0, k))
        ends = torch.stack([padded[:, j : j + tokens] for j in range(k)], dim=2)
        widths = self.width_projection(self.width.weight)  # [k, ffn]
        joint = torch.relu(start[:, :, None, :] + ends + widths[None, None])
        return self.out(self.dropout(joint))


def head_dropout(config: Any) -> float:
    """The dropout a token-classification head of this config gets (its `classifier_dropout`, else its hidden
    dropout, as BertForTokenClassification reads them), so the span head regularises as the head it replaces."""
    for key in ("classifier_dropout", "hidden_dropout_prob", "hidden_dropout"):
        value = getattr(config, key, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.1


def attach_span_head(model: Any, config: Any) -> Any:
    """The token-classification `model` with its `classifier` replaced by a fresh span head."""
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Linear):
        raise ValueError(f"{type(model).__name__} has no linear `classifier` for the span head to replace")
    model.classifier = SpanHead(
        classifier.in_features, config.num_labels, getattr(config, SPAN_TOKENS_KEY), head_dropout(config)
    )
    return model


def saved_head_weights(directory: str) -> dict[str, torch.Tensor]:
    """A saved span model's head weights (`classifier.*`), or {} for a checkpoint without them (a base model)."""
    path = os.path.join(directory, "model.safetensors")
    if not os.path.isfile(path):
        return {}
    from safetensors.torch import load_file

    return {k.removeprefix("classifier."): v for k, v in load_file(path).items() if k.startswith("classifier.")}


class NerAutoModel:
    """What NER loads models with (training and serving): a token-classification model, whose classifier is the
    span head when the config says `ner_head: span` (with the saved head's weights when there are any)."""

    @staticmethod
    def from_pretrained(name: str, *args: Any, config: Any = None, **kwargs: Any) -> Any:
        model = AutoModelForTokenClassification.from_pretrained(name, *args, config=config, **kwargs)
        if getattr(model.config, HEAD_KEY, None) != SPAN_HEAD:
            return model
        model = attach_span_head(model, model.config)
        weights = saved_head_weights(str(name)) if os.path.isdir(str(name)) else {}
        if "out.weight" in weights and weights["out.weight"].shape[0] == model.config.num_labels:
            model.classifier.load_state_dict(weights)
            logger.info("Span head weights loaded from %s.", name)
        return model
