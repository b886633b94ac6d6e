"""The `Trainer` subclass and its callbacks: packed or bucketed training batches, evaluation in input order,
result files never half-written, a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from datasets import Dataset
from torch.utils.data import SequentialSampler
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback
from transformers.trainer_utils import has_length

from utils.core.arguments import FinetuneTrainingArguments
from utils.core.errors import FinetuneError
from utils.core.files import write_json
from utils.training.batching import BucketedSampler, labelled_items
from utils.training.packing import SequencePacker, make_packer

logger = logging.getLogger(__name__)


def is_token_classifier(model) -> bool:
    """A model with one output per token (a LoRA wrapper is looked through)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return type(base).__name__.endswith("ForTokenClassification")


class FinetuneTrainer(Trainer):
    """`Trainer` with evaluation in dataset order and result files that are never half-written.

    Upstream also length-groups the *evaluation* batches when `train_sampling_strategy="group_by_length"`, which
    shuffles the predictions relative to the dataset; ours must map back to input rows. Upstream's
    `all_results.json` also merges whatever an earlier run left in the directory; ours holds this run's metrics.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.run_results: dict[str, Any] = {}
        self.packer: SequencePacker | None = self.choose_packer()
        self.tokens_real = self.tokens_computed = 0  # training tokens: real ones, and all the model computed on
        self.items_per_example: float | None = None
        if self.buckets_apply(self.train_dataset) and "labels" in self.train_dataset.column_names:
            labels = self.train_dataset["labels"]
            self.items_per_example = sum(labelled_items(row) for row in labels) / max(len(labels), 1)

    def choose_packer(self) -> SequencePacker | None:
        """Pack token-task batches (`--pack_sequences`) when the model can take packed rows; else None."""
        dataset = self.train_dataset
        if not (getattr(self.args, "pack_sequences", False) and isinstance(dataset, Dataset) and len(dataset)
                and {"input_ids", "labels"} <= set(dataset.column_names) and is_token_classifier(self.model)):
            return None
        packer = make_packer(self.model, getattr(self.processing_class, "pad_token_id", None), self.args.pack_length)
        config = getattr(self.model, "config", None)
        if packer is None:
            logger.info("--pack_sequences: %s models with %s attention cannot take packed rows; training batches "
                        "come from length buckets instead.", getattr(config, "model_type", "these"),
                        getattr(config, "_attn_implementation", "this"))
        else:
            logger.info("Training batches: random, packed into rows of %d tokens (--pack_sequences).",
                        self.args.pack_length)
        return packer

    def buckets_apply(self, dataset) -> bool:
        """Length buckets need a `datasets.Dataset` of token ids (a streamed or custom dataset keeps upstream's
        sampler), and are not used when batches are packed."""
        return (getattr(self.args, "bucket_by_length", False) and self.packer is None
                and isinstance(dataset, Dataset) and "input_ids" in dataset.column_names)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Training batches are packed here, after the collator (so any sampler and collator keep working), and
        their real and computed tokens counted for `train_padding_fraction`."""
        if model.training and torch.is_tensor(inputs.get("attention_mask")) and inputs["attention_mask"].dim() == 2:
            self.tokens_real += int(inputs["attention_mask"].sum())
            if self.packer is not None:
                inputs = self.packer(inputs)
            self.tokens_computed += int(inputs["input_ids"].numel())
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def padding_fraction(self) -> float | None:
        """Share of the training tokens the model computed on that were padding (None before training)."""
        if not self.tokens_computed:
            return None
        return 1 - self.tokens_real / self.tokens_computed

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.buckets_apply(dataset):
            return super()._get_train_sampler(train_dataset)
        lengths = [len(ids) for ids in dataset["input_ids"]]
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return BucketedSampler(lengths, self.args.train_batch_size, self.args.bucket_pool_batches, seed)

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device):
        """With length buckets, divide summed losses by the labelled items a step holds on average, not by this
        step's own count: a batch of short sentences must not give each of its tokens more weight."""
        counted = super()._get_num_items_in_batch(batch_samples, device)
        if counted is None or self.items_per_example is None or not torch.is_tensor(counted) or counted.dim():
            return counted
        rows = sum(len(batch["labels"]) for batch in batch_samples)
        scope = self.args.world_size if self.args.average_tokens_across_devices and self.args.world_size > 1 else 1
        return torch.tensor(self.items_per_example * rows * scope, dtype=torch.float32, device=counted.device)

    def _get_eval_sampler(self, eval_dataset):
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None  # accelerate shards in order

    def save_metrics(self, split: str, metrics: dict[str, Any], combined: bool = True) -> None:
        if not self.is_world_process_zero():
            return
        write_json(os.path.join(self.args.output_dir, f"{split}_results.json"), metrics)
        if combined:
            self.run_results.update(metrics)
            write_json(os.path.join(self.args.output_dir, "all_results.json"), self.run_results)

    def save_state(self) -> None:
        if not self.is_world_process_zero():
            return
        path = os.path.join(self.args.output_dir, "trainer_state.json")
        self.state.save_to_json(f"{path}.tmp")
        os.replace(f"{path}.tmp", path)


class GracefulStop(TrainerCallback):
    """SIGINT/SIGTERM during training: finish the current step, save a checkpoint, stop. A second signal aborts."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    def handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        logger.warning("Got %s: saving a checkpoint after this step, then stopping.", signal.Signals(signum).name)

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self.handle)

    def on_step_end(self, args, state, control, **kwargs):
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()


class Interrupted(FinetuneError):
    """Training stopped on a signal after saving a checkpoint."""


def build_trainer(
    model,
    tokenizer,
    args: FinetuneTrainingArguments,
    features: Mapping[str, Dataset],
    data_collator,
    reduce_logits: Callable | None,
    compute_loss_func: Callable | None = None,
    extra_callbacks: Sequence[TrainerCallback] = (),
) -> FinetuneTrainer:
    """A `Trainer`: distribution, mixed precision, checkpoints and logging stay its (and accelerate's) job."""
    callbacks = [GracefulStop(), *extra_callbacks]
    if args.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
    return FinetuneTrainer(
        model=model,
        args=args,
        data_collator=data_collator,
        train_dataset=features.get("train"),
        eval_dataset=features.get("validation"),
        processing_class=tokenizer,
        compute_loss_func=compute_loss_func,
        preprocess_logits_for_metrics=reduce_logits,
        callbacks=callbacks,
    )


def log_hparams(trainer: Trainer, hyperparameters: Mapping[str, Any], results: Mapping[str, Any]) -> None:
    """The run's hyperparameters beside its final metrics in TensorBoard's HPARAMS tab (when TensorBoard is on)."""
    from transformers.integrations import TensorBoardCallback

    callback = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback)), None)
    log_dir = getattr(callback, "logging_dir", None)
    if not log_dir:
        return
    from torch.utils.tensorboard import SummaryWriter

    metrics = {f"hparam/{key}": float(value) for key, value in results.items()
               if isinstance(value, (int, float)) and key.split("_", 1)[0] in {"eval", "predict", "train"}}
    with SummaryWriter(log_dir=log_dir) as writer:
        writer.add_hparams({key: value if isinstance(value, (int, float, str, bool)) else str(value)
                            for key, value in hyperparameters.items()}, metrics, run_name=".")

