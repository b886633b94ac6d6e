"""Training that goes numerically wrong stops with one line naming the step, instead of finishing with exit 0 and a
model whose every weight is NaN (`--learning_rate inf`, a loss that overflows)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import torch
from transformers import TrainerCallback

from utils.core.errors import FinetuneError

logger = logging.getLogger(__name__)

#: Trainable tensors checked at every step: the last ones of the model, its task head (weight and bias).
HEAD_TENSORS = 2


class TrainingDiverged(FinetuneError):
    """The loss, the gradients or the weights stopped being finite numbers."""


def last_trainable(model: torch.nn.Module, count: int = HEAD_TENSORS) -> list[tuple[str, torch.nn.Parameter]]:
    """The model's last `count` trainable tensors (the task head in every model this kit builds)."""
    trainable = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    return trainable[-count:]


def first_non_finite(named: Iterable[tuple[str, torch.Tensor | None]]) -> str | None:
    """The name of the first tensor holding a NaN or an infinity, or None."""
    for name, tensor in named:
        if tensor is not None and tensor.numel() and not bool(torch.isfinite(tensor.detach()).all()):
            return name
    return None


class NonFiniteGuard(TrainerCallback):
    """Stops training at the first step whose loss, gradients or weights are not finite.

    Checking every weight at every step would cost a pass over the whole model per step, so each step checks only
    the task head, which is enough: a non-finite loss makes every gradient non-finite (after clipping, a NaN total
    norm multiplies each gradient by NaN), the head's included, and non-finite weights anywhere make the next
    loss non-finite. So the head's gradients are checked before the optimizer applies them (the step is named
    before it spoils the weights), and the head's weights after it (`--learning_rate inf` spoils them with finite
    gradients). The whole model is checked only before a checkpoint is written and when training ends, once each.
    Logged `loss` and `grad_norm` are checked too, although `Trainer`'s `logging_nan_inf_filter` (on by default)
    replaces a non-finite step loss by the running mean, which is why the loss alone is not a reliable signal.

    Under --fp16 a non-finite gradient is expected now and then: the loss scaler skips that step and lowers its
    scale, so only the weights are checked there."""

    def __init__(self) -> None:
        self.head: list[tuple[str, torch.nn.Parameter]] | None = None

    def stop(self, args, step: int, what: str) -> None:
        raise TrainingDiverged(
            f"training diverged at step {step}: {what}. Nothing from this step on was saved. Lower --learning_rate "
            f"(now {args.learning_rate:g}), keep --max_grad_norm above 0 (now {args.max_grad_norm:g}), or check the "
            "data; then train again (or --resume_from_checkpoint an earlier checkpoint)."
        )

    def head_of(self, model) -> list[tuple[str, torch.nn.Parameter]]:
        if self.head is None:
            self.head = last_trainable(model) if model is not None else []
        return self.head

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.head = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if args.fp16 or model is None:
            return
        name = first_non_finite((f"the gradient of {n}", p.grad) for n, p in self.head_of(model))
        if name:
            self.stop(args, state.global_step + 1, f"{name} is not finite (NaN or infinite loss)")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is None:
            return
        name = first_non_finite(self.head_of(model))
        if name:
            self.stop(args, state.global_step, f"weight {name} became NaN or infinite after the optimizer step")
        if control.should_save:
            self.check_all(args, state.global_step, model, "before its checkpoint was written")

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if control.should_save and model is not None:
            self.check_all(args, state.global_step, model, "before its checkpoint was written")

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs):
        for key in ("loss", "grad_norm") if not args.fp16 else ("loss",):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                self.stop(args, state.global_step, f"the logged {key} is {value}")

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self.check_all(args, state.global_step, model, "at the end of training, before the model was saved")

    def check_all(self, args, step: int, model, when: str) -> None:
        name = first_non_finite(model.named_parameters())
        if name:
            self.stop(args, step, f"weight {name} is NaN or infinite {when}")
