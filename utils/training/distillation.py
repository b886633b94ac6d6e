"""The distillation loss and the batches it reads (docs/distillation.md).

Design: the teacher's predictions are computed once, before training, and stored with the encoded training examples
as *soft labels* (utils/training/teacher.py), rather than by a teacher forward pass per batch. Why:

- different tokenizers: a soft target belongs to a unit both models share (a word for NER, a text for
  classification); mapping the teacher's subwords to the student's is done once per example with both encodings
  at hand (`TaskDistillation`), instead of carrying the teacher's encoding through every batch and the packer;
- cost: the teacher runs once over the data, not once per epoch, and is not in memory while the student trains;
- the soft labels travel in the `labels` column, the one column `Trainer` hands to the loss, so sampling, packing
  (per-token tensors move with their tokens), gradient accumulation, DDP and bf16 stay `Trainer`'s, unchanged.

A soft label holds, per item (token or text), [1 or 0: has a teacher target, gold id or -100, teacher logits...].
The loss per item with a target is distill_weight * T^2 * KL(teacher_T || student_T) + gold_weight * CE(gold); the
sum over items is divided by the number of items with a target in the whole (accumulated, all-rank) step, as our
other losses divide by their labelled items (utils/core/losses.py). Evaluation batches carry plain gold labels and
get the task's own loss, so eval_loss compares with an undistilled run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from utils.core.losses import IGNORE_INDEX

#: Item layout of a soft label: the has-target flag, the gold id, then one teacher logit per label.
HAS_TARGET, GOLD, FIRST_LOGIT = 0, 1, 2


def is_soft(labels: torch.Tensor, logits: torch.Tensor) -> bool:
    """Soft labels have one more axis than gold ids: the item's [flag, gold, logits...]."""
    return labels.dim() == logits.dim() and labels.is_floating_point()


def distillation_sums(
    logits: torch.Tensor, soft: torch.Tensor, temperature: float, distill_weight: float, gold_weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed loss, items with a teacher target) of a batch: see the module's docstring."""
    logits = logits.float()
    soft = soft.to(logits.device).float()
    mask = soft[..., HAS_TARGET] == 1
    student, target = logits[mask], soft[mask]
    teacher = target[:, FIRST_LOGIT:]
    teacher_log = F.log_softmax(teacher / temperature, dim=-1)
    student_log = F.log_softmax(student / temperature, dim=-1)
    kl = (teacher_log.exp() * (teacher_log - student_log)).sum(-1) * temperature**2
    total = distill_weight * kl.sum()
    gold = target[:, GOLD].round().long()
    if gold_weight and bool((gold != IGNORE_INDEX).any()):
        total = total + gold_weight * F.cross_entropy(student, gold, ignore_index=IGNORE_INDEX, reduction="sum")
    return total, mask.sum()


class DistillationLoss:
    """`compute_loss_func`: soft labels (training) get `distillation_sums`; gold ones (evaluation) the task's loss."""

    def __init__(
        self, gold_loss: Callable | None, temperature: float, distill_weight: float, gold_weight: float
    ) -> None:
        self.gold_loss, self.temperature = gold_loss, temperature
        self.distill_weight, self.gold_weight = distill_weight, gold_weight

    def __call__(self, outputs: Mapping[str, Any], labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"]
        if not is_soft(labels, logits):
            if self.gold_loss is not None:
                return self.gold_loss(outputs, labels, num_items_in_batch=num_items_in_batch)
            return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1).long())
        total, count = distillation_sums(logits, labels, self.temperature, self.distill_weight, self.gold_weight)
        divisor = num_items_in_batch if num_items_in_batch is not None else count
        divisor = torch.as_tensor(divisor, dtype=total.dtype, device=total.device)
        return total / torch.clamp(divisor, min=1)


def as_teacher_items(batch_samples: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
    """An accumulation step's batches as `Trainer._get_num_items_in_batch` should count them: with soft labels, one
    labelled item (0) per item with a teacher target and -100 elsewhere, so the count is of teacher items (it would
    count every cell of a soft label) and is gathered across ranks as upstream gathers it. Gold batches: unchanged."""
    if not batch_samples or "labels" not in batch_samples[0]:
        return batch_samples
    first = batch_samples[0]["labels"]
    if not (torch.is_tensor(first) and first.is_floating_point() and first.dim() >= 2):
        return batch_samples
    return [{"labels": torch.where(batch["labels"][..., HAS_TARGET] == 1, 0, IGNORE_INDEX)} for batch in batch_samples]


class SoftLabelCollator:
    """The task's collator, with soft labels padded here: [0, -100, zeros] past each row's end for per-token items
    (the task's collator pads labels with a scalar). Rows with gold labels (evaluation) pass through unchanged."""

    def __init__(self, collator: Callable, per_token: bool) -> None:
        self.collator, self.per_token = collator, per_token

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        first = features[0].get("labels") if features else None
        soft = first is not None and np.ndim(first) == (2 if self.per_token else 1)
        if not soft:
            return self.collator(features)
        labels = [np.asarray(row["labels"], dtype=np.float32) for row in features]
        batch = self.collator([{k: v for k, v in row.items() if k != "labels"} for row in features])
        if not self.per_token:
            batch["labels"] = torch.from_numpy(np.stack(labels))
            return batch
        width = batch["input_ids"].shape[1]
        padded = np.zeros((len(labels), width, labels[0].shape[-1]), dtype=np.float32)
        padded[:, :, GOLD] = IGNORE_INDEX
        for row, items in enumerate(labels):
            padded[row, : len(items)] = items
        batch["labels"] = torch.from_numpy(padded)
        return batch
