"""Mean-pooled sentence embeddings and the classifier built on them (zero-shot and contrastive few-shot models).

Sentence-embedding checkpoints such as all-MiniLM-L6-v2 were trained so that the *mean* of the token vectors, not the
[CLS] vector, is the sentence's meaning. `MeanPoolingForSequenceClassification` keeps that: encoder -> mean over the
real tokens -> L2-normalised -> one linear layer. For zero-shot the layer's rows are the (scaled) label-description
embeddings, so the logits are cosine similarities; for few-shot they are a logistic regression fitted on the
contrastively tuned embeddings.

The saved config is the encoder's own (model_type unchanged, so the tokenizer and `AutoConfig` load as usual) plus
the marker `sentence_pooling: "mean"`; `SequenceClassifier.from_pretrained` (the classification task's `auto_model`,
used by the pipeline and by `utils.serving.predictor.Predictor`) loads such a directory with this class and anything
else with `AutoModelForSequenceClassification`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from utils.tasks.classification.pooling import mean_pool

logger = logging.getLogger(__name__)

#: Config attribute that marks a mean-pooling classifier, and its one value so far.
POOLING_MARKER = "sentence_pooling"
MEAN = "mean"
#: Cosine similarities lie in [-1, 1]; times 20 a softmax over them gives usable probabilities (the scale of
#: sentence-transformers' MultipleNegativesRankingLoss). Only probabilities depend on it, never the predicted label.
SIMILARITY_SCALE = 20.0


def is_mean_pooling(config: PretrainedConfig) -> bool:
    return getattr(config, POOLING_MARKER, None) == MEAN


class MeanPoolingForSequenceClassification(PreTrainedModel):
    """Any `AutoModel` encoder, mean pooling, optional L2 normalisation, a linear head."""

    config_class = PretrainedConfig
    base_model_prefix = "encoder"  # a plain encoder checkpoint (e.g. a BertModel) loads into `encoder`
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.encoder = AutoModel.from_config(config)
        self.head = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "head", None):
            nn.init.zeros_(module.weight)  # replaced by a fitted head (few-shot) or label embeddings (zero-shot)
            nn.init.zeros_(module.bias)
        elif hasattr(self, "encoder"):
            self.encoder._init_weights(module)

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Sentence embeddings, normalised when the config says so (`normalize_embeddings`)."""
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)
        normalize = getattr(self.config, "normalize_embeddings", True)
        return nn.functional.normalize(pooled, dim=-1) if normalize else pooled

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        logits = self.head(self.embed(input_ids, attention_mask, token_type_ids))
        loss = None
        if labels is not None:  # the pipeline passes its own loss to Trainer; this is for use on its own
            loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


class SequenceClassifier:
    """`AutoModelForSequenceClassification` that also knows `MeanPoolingForSequenceClassification` and the static
    student (utils/tasks/classification/static_student.py), by their config markers: the classification task's
    `auto_model`, so training and `Predictor` load every kind the same way."""

    @staticmethod
    def from_pretrained(
        name: str, *args: Any, config: PretrainedConfig | None = None, **kwargs: Any
    ) -> PreTrainedModel:
        if config is None:
            hub = {
                key: kwargs[key] for key in ("cache_dir", "revision", "token", "trust_remote_code") if key in kwargs
            }
            config = AutoConfig.from_pretrained(name, **hub)
        from utils.tasks.classification.static_student import StaticEmbeddingForSequenceClassification, is_static

        model_class = (
            StaticEmbeddingForSequenceClassification
            if is_static(config)
            else MeanPoolingForSequenceClassification
            if is_mean_pooling(config)
            else AutoModelForSequenceClassification
        )
        return model_class.from_pretrained(name, *args, config=config, **kwargs)


# Saved models carry this file and `auto_map`, so `transformers.pipeline("text-classification", model=directory,
# trust_remote_code=True)` loads them too (without trust_remote_code, transformers would build a plain
# BertForSequenceClassification from the config and warn that its head weights are missing).
MeanPoolingForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
