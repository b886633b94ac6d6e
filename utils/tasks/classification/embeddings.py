"""Sentence embeddings of many texts at once: the zero-shot label descriptions, the few-shot head's training texts.

Kept apart from sentence_embedding.py, which is saved beside every zero-/few-shot model as its remote code
(`register_for_auto_class`) and so must import nothing from `utils`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from utils.core.ordering import length_batches
from utils.tasks.classification.sentence_embedding import MeanPoolingForSequenceClassification


@torch.inference_mode()
def encode_texts(
    model: MeanPoolingForSequenceClassification, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 64
) -> np.ndarray:
    """Sentence embeddings of `texts` in input order (float32, as `model.embed` gives them), computed in batches of
    similar length (character length is a good enough proxy for tokens)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    result = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for batch in length_batches([len(text) for text in texts], batch_size):
        inputs = tokenizer(
            [texts[i] for i in batch], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(device)
        result[batch] = model.embed(**inputs).float().cpu().numpy()
    model.train(was_training)
    return result
