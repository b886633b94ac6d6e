"""Losses handed to `Trainer` as `compute_loss_func`, normalised by its `num_items_in_batch`.

Why not the model's own loss: BERT-style heads return a plain mean, yet `Trainer` multiplies the loss by the world
size for models whose `forward` takes `**kwargs`, expecting it to be a sum divided by the *global* item count. Under
2-process DDP the transformers examples therefore report (and clip) a doubled loss. Dividing our summed loss by
`num_items_in_batch` (global labelled items, gathered across ranks) makes a DDP run train on and report exactly the
loss of one process with the same global batch, with or without gradient accumulation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"


def summed_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    problem: str,
    weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of per-item losses, number of items). Items: labelled tokens or examples (single-label), label
    cells (multi-label), values (regression). Class weights scale each item's loss (multi-label: positives)."""
    logits = logits.float()
    if problem == REGRESSION:
        values = logits.squeeze(-1)
        target = labels.float().view_as(values)
        return ((values - target) ** 2).sum(), torch.tensor(target.numel(), device=logits.device)
    if problem == MULTI:
        target = labels.float()
        losses = F.binary_cross_entropy_with_logits(logits, target, pos_weight=weights, reduction="none")
        return losses.sum(), torch.tensor(target.numel(), device=logits.device)
    flat_labels = labels.reshape(-1).long()
    losses = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        flat_labels,
        weight=weights,
        ignore_index=IGNORE_INDEX,
        reduction="none",
        label_smoothing=label_smoothing,
    )
    return losses.sum(), (flat_labels != IGNORE_INDEX).sum()


def make_loss(problem: str, class_weights: Sequence[float] | None = None, label_smoothing: float = 0.0) -> Callable:
    """A `compute_loss_func`: summed loss over `num_items_in_batch` when `Trainer` gives it (training), else the mean
    over this batch's items (evaluation)."""
    weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None

    def loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"]
        device_weights = weights.to(logits.device) if weights is not None else None
        total, count = summed_loss(logits, labels, problem, device_weights, label_smoothing)
        divisor = num_items_in_batch if num_items_in_batch is not None else count
        if torch.is_tensor(divisor):
            divisor = divisor.to(total.device)
        return total / torch.clamp(torch.as_tensor(divisor, dtype=total.dtype, device=total.device), min=1)

    return loss
