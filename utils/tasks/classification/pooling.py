"""Mean pooling: how sentence-embedding checkpoints such as all-MiniLM-L6-v2 make one vector of a text."""

from __future__ import annotations

import torch


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors of real (unpadded) tokens: how the checkpoint's sentence embeddings are made."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
