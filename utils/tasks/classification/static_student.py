"""The static student (--static_student_dims D): one vector per vocabulary token, distilled from the encoder, the
mean of a text's token vectors, and a linear head trained on the teacher's soft labels. No attention and no layers,
so it predicts at the speed of its tokenizer.

The token vectors follow model2vec's recipe (each token alone through the encoder, the output mean-pooled as the
encoder's sentence embeddings are, then PCA to D dimensions), made here with the encoder already loaded: the
maintained `model2vec` package's `distill` extra pins transformers below 5.4 (docs/distillation.md). The saved
directory is an ordinary output directory: its config is the encoder's plus the marker `static_dims`, which
`SequenceClassifier` (the task's `auto_model`, used by training, predict.py and serve.py) loads with this class.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from utils.core.errors import ConfigError
from utils.tasks.classification.pooling import mean_pool

logger = logging.getLogger(__name__)

#: Config attribute of a static model: the width of its token vectors.
STATIC_MARKER = "static_dims"
HUB_KEYS = ("cache_dir", "revision", "token", "trust_remote_code")


class StaticEmbeddingForSequenceClassification(PreTrainedModel):
    """Token vectors, their mean over the real tokens, a linear head."""

    config_class = PretrainedConfig
    base_model_prefix = "static"

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, getattr(config, STATIC_MARKER))
        self.head = nn.Linear(getattr(config, STATIC_MARKER), config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=getattr(self.config, "initializer_range", 0.02))
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

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
        weights = attention_mask.to(self.embeddings.weight.dtype)  # padding weighs 0 in the sum
        if torch.compiler.is_exporting():  # ONNX has no EmbeddingBag op (its Loop form breaks int8 quantization)
            sums = (self.embeddings(input_ids) * weights.unsqueeze(-1)).sum(1)
        else:
            sums = nn.functional.embedding_bag(
                input_ids, self.embeddings.weight, mode="sum", per_sample_weights=weights
            )
        logits = self.head(sums / weights.sum(1, keepdim=True).clamp(min=1))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None and labels.dim() == 1 else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def forward_rows(self, rows: Sequence[Sequence[int]]) -> SequenceClassifierOutput:
        """`forward` on rows of token ids as they are, unpadded (`TorchForward` hands them so): a text's mean needs
        no padding, and padding the batches cost more than the model's whole forward pass. The same logits as
        `forward`, bit for bit: `embedding_bag` sums each text's vectors in order either way (padding adds 0 there)."""
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        ids = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        device = self.embeddings.weight.device
        counts = torch.from_numpy(lengths).to(device)
        sums = nn.functional.embedding_bag(
            torch.from_numpy(ids).to(device), self.embeddings.weight, torch.cumsum(counts, 0) - counts, mode="sum"
        )
        return SequenceClassifierOutput(logits=self.head(sums / counts.unsqueeze(1).clamp(min=1)))


def is_static(config: PretrainedConfig) -> bool:
    return getattr(config, STATIC_MARKER, None) is not None


@torch.inference_mode()
def token_vectors(encoder: nn.Module, tokenizer, dims: int, batch_size: int = 512) -> torch.Tensor:
    """[vocabulary, dims]: each token id alone between the special tokens, through the encoder, mean-pooled; then
    centred and projected on its `dims` principal components."""
    encoder.eval()
    template = tokenizer("a")["input_ids"]
    marker = tokenizer("a", add_special_tokens=False)["input_ids"]
    if len(marker) != 1 or marker[0] not in template:
        raise ConfigError("--static_student_dims: cannot place a single token between this tokenizer's specials.")
    slot = template.index(marker[0])
    vocabulary = len(tokenizer)
    rows = []
    for start in range(0, vocabulary, batch_size):
        ids = torch.tensor([template] * min(batch_size, vocabulary - start))
        ids[:, slot] = torch.arange(start, start + len(ids))
        mask = torch.ones_like(ids)
        rows.append(mean_pool(encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask).float())
    vectors = torch.cat(rows)
    if dims > vectors.shape[1]:
        raise ConfigError(f"--static_student_dims {dims}: the encoder's vectors have only {vectors.shape[1]}.")
    centred = vectors - vectors.mean(0, keepdim=True)
    _, _, components = torch.linalg.svd(centred, full_matrices=False)
    return centred @ components[:dims].T


class StaticStudentBuilder:
    """The task's `model_class` for --static_student_dims: `from_pretrained` builds a static model from the encoder
    (and tokenizer) at `name`, keeping the config's labels; its head starts fresh."""

    def __init__(self, dims: int) -> None:
        self.dims = dims

    def from_pretrained(
        self, name: str, *args: Any, config: PretrainedConfig, **kwargs: Any
    ) -> StaticEmbeddingForSequenceClassification:
        hub = {key: kwargs[key] for key in HUB_KEYS if key in kwargs}
        encoder = AutoModel.from_pretrained(name, **hub)
        tokenizer = AutoTokenizer.from_pretrained(name, **hub)
        logger.info("Static student: %d token vectors of %d dimensions from %s", len(tokenizer), self.dims, name)
        vectors = token_vectors(encoder, tokenizer, self.dims)
        setattr(config, STATIC_MARKER, self.dims)
        config.vocab_size = len(vectors)
        model = StaticEmbeddingForSequenceClassification(config)
        with torch.no_grad():
            model.embeddings.weight.copy_(vectors)
        return model
