"""The `Trainer` subclass and its callbacks: packed or bucketed training batches (as `BatchingPlan` decided),
evaluation in input order, result files never half-written, a clean stop on SIGINT/SIGTERM.

`FinetuneTrainer` overrides public methods where they suffice (`compute_loss`, `prediction_step`, `train`,
`save_model`, `save_metrics`, `save_state`), and private ones only where transformers has no public hook
(`PRIVATE_OVERRIDES`); each says why, and tests/test_layers.py fails if transformers renames one (so an upgrade
cannot silently bypass it)."""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from datasets import Dataset
from torch.utils.data import SequentialSampler
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback
from transformers.integrations.integration_utils import TensorBoardCallback, default_logdir
from transformers.trainer_pt_utils import nested_gather
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy, TrainOutput, has_length

from utils.core.errors import FinetuneError
from utils.core.files import open_up_new_files, write_json
from utils.training.arguments import FinetuneTrainingArguments
from utils.training.batching import BatchingPlan, BucketedSampler, labelled_items
from utils.training.checkpoints import write_checkpoint
from utils.training.distillation import DistillationLoss, as_teacher_items
from utils.training.guards import NonFiniteGuard

logger = logging.getLogger(__name__)


#: Beside each checkpoint: what the training so far adds up to, so that a resumed run reports the whole run's
#: train_loss and padding fraction (transformers reports the resumed part's alone), as an uninterrupted run would.
TOTALS_FILE = "finetune_totals.json"

#: What a checkpoint holds only for resuming from it (optimizer, scheduler, scaler, RNG states): two thirds of a
#: checkpoint of an Adam-trained model. Only the newest checkpoint of a run is ever resumed from.
RESUME_STATE_FILES = ("optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt", "rng_state.pth", "rng_state_*.pth")


#: The private `Trainer` methods overridden below, for lack of a public hook (tests/test_layers.py checks that
#: transformers still has each, so an upgrade that renames one fails a test instead of bypassing it).
PRIVATE_OVERRIDES = (
    "_save_checkpoint",
    "_load_best_model",
    "_determine_best_metric",
    "_get_train_sampler",
    "_get_num_items_in_batch",
    "_get_eval_sampler",
)


class FinetuneTrainer(Trainer):
    """`Trainer` with the training batches of a `BatchingPlan`, evaluation in dataset order and result files that
    are never half-written. Upstream's `all_results.json` also merges whatever an earlier run left in the directory;
    ours holds this run's metrics."""

    def __init__(self, *args, batching: BatchingPlan | None = None, **kwargs) -> None:
        """`batching`: how training batches are made (`decide_batching`); None: upstream's random batches."""
        self.batching = batching or BatchingPlan()
        super().__init__(*args, **kwargs)
        self.place_tensorboard_logs()
        self.run_results: dict[str, Any] = {}
        self.packer = self.batching.packer
        self.tokens_real = self.tokens_computed = 0  # training tokens: real ones, and all the model computed on
        self.loss_before_resume = 0.0  # summed step losses of the steps a resumed run starts after
        self.items_per_example: float | None = None
        distilling = isinstance(self.compute_loss_func, DistillationLoss)  # soft labels: counted per step
        if self.buckets_apply(self.train_dataset) and "labels" in self.train_dataset.column_names and not distilling:
            labels = self.train_dataset["labels"]
            self.items_per_example = sum(labelled_items(row) for row in labels) / max(len(labels), 1)

    def place_tensorboard_logs(self) -> None:
        """TensorBoard's callback learns its directory only when training begins; an evaluation before that
        (--eval_before_training) would open a writer in ./runs of the working directory, and the whole training
        would be logged there instead of in output_dir/runs. So the directory is fixed here, once."""
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
                callback.logging_dir = os.path.join(self.args.output_dir, default_logdir())

    def buckets_apply(self, dataset) -> bool:
        """Length buckets need a `datasets.Dataset` of token ids (a streamed or custom dataset keeps upstream's
        sampler)."""
        return self.batching.kind == "buckets" and isinstance(dataset, Dataset) and "input_ids" in dataset.column_names

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation and prediction run in fp32 even when training runs under bf16/fp16 autocast (which accelerate
        puts around `forward` for the whole run): scores and prediction files are then those predict.py and serve.py
        compute from the saved fp32 weights, whatever precision trained them."""
        with full_precision_forward(self.accelerator.unwrap_model(model)):
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Training batches are packed here, after the collator (so any sampler and collator keep working), and
        their real and computed tokens counted for `train_padding_fraction`."""
        if model.training and torch.is_tensor(inputs.get("attention_mask")) and inputs["attention_mask"].dim() == 2:
            self.tokens_real += int(inputs["attention_mask"].sum())
            if self.packer is not None:
                inputs = self.packer(inputs)
            self.tokens_computed += int(inputs["input_ids"].numel())
        return super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs) -> TrainOutput:
        """`Trainer.train`, with train_loss (and the padding counts) over the whole run when it is resumed."""
        checkpoint = resume_from_checkpoint if isinstance(resume_from_checkpoint, str) else ""
        totals = os.path.join(checkpoint, TOTALS_FILE)
        initial_step = 0
        if os.path.isfile(totals):
            with open(totals, encoding="utf-8") as stream:
                carried = json.load(stream)
            self.loss_before_resume = carried["loss"]
            self.tokens_real, self.tokens_computed = carried["tokens_real"], carried["tokens_computed"]
            with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as stream:
                initial_step = json.load(stream)["global_step"]  # where the resumed run starts
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        resumed_steps = self.state.global_step - initial_step
        if initial_step and "train_loss" in output.metrics:
            loss = (self.loss_before_resume + output.metrics["train_loss"] * resumed_steps) / self.state.global_step
            output = output._replace(training_loss=loss, metrics={**output.metrics, "train_loss": loss})
        return output

    def _save_checkpoint(self, model, trial) -> None:
        """Upstream's checkpoint, written so that a failed write leaves no half checkpoint (`write_checkpoint`), plus
        `TOTALS_FILE`: the loss summed so far, so that a resumed run reports the whole run's train_loss. Private,
        because the running loss (`_tr_loss`, `_total_loss_scalar`) has no public accessor and the file must be in
        the checkpoint before anything can resume from it. (The older checkpoints' resume state is dropped by
        `DropOlderResumeState`, a callback.)"""
        write_checkpoint(self, super()._save_checkpoint, model, trial)
        pending = nested_gather(self._tr_loss, self.args.parallel_mode).mean().item()  # every rank takes part
        if self.is_world_process_zero():
            directory = os.path.join(self.args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            write_json(
                os.path.join(directory, TOTALS_FILE),
                {
                    "loss": self.loss_before_resume + self._total_loss_scalar + pending,
                    "tokens_real": self.tokens_real,
                    "tokens_computed": self.tokens_computed,
                },
            )

    def _load_best_model(self) -> None:
        """The best checkpoint is loaded back at the end, unless it is the last step's: those weights are the ones in
        memory. Private: loading the best model has no public hook (a callback's `on_train_end` comes after it)."""
        best = self.state.best_model_checkpoint
        if best and os.path.basename(os.path.normpath(best)) == f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}":
            logger.info("The best checkpoint is the last step's (%s); its weights are already loaded.", best)
            return
        super()._load_best_model()

    def _determine_best_metric(self, metrics: dict[str, float], trial) -> bool:
        """Upstream keeps the earliest of equal scores, so a metric that stays flat on a small validation set (F1
        0.0, accuracy 1.0) restores the first checkpoint and throws the rest of the training away. Here a tie goes to
        the lower validation loss, and equal losses to the later checkpoint. Private: the
        choice of the best checkpoint has no public hook."""
        name, best = self.args.metric_for_best_model, self.state.best_metric
        key = f"eval_{name}" if name and not name.startswith("eval_") else name
        if best is None or key not in metrics or not math.isclose(metrics[key], best, rel_tol=1e-12, abs_tol=1e-12):
            return super()._determine_best_metric(metrics=metrics, trial=trial)
        loss, best_loss = metrics.get("eval_loss"), eval_loss_at(self.state.log_history, self.state.best_global_step)
        if loss is not None and best_loss is not None and loss > best_loss:
            return False
        self.state.best_metric = metrics[key]
        if self.args.save_strategy in (SaveStrategy.STEPS, SaveStrategy.EPOCH, SaveStrategy.BEST):
            self.state.best_global_step = self.state.global_step
        return True

    def padding_fraction(self) -> float | None:
        """Share of the training tokens the model computed on that were padding (None before training)."""
        if not self.tokens_computed:
            return None
        return 1 - self.tokens_real / self.tokens_computed

    def _get_train_sampler(self, train_dataset=None):
        """Length buckets (`BucketedSampler`). Private: a sampler of one's own has no public hook short of
        rewriting `get_train_dataloader`."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.buckets_apply(dataset):
            return super()._get_train_sampler(train_dataset)
        lengths = [len(ids) for ids in dataset["input_ids"]]
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return BucketedSampler(lengths, self.args.train_batch_size, self.args.bucket_pool_batches, seed)

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device):
        """With length buckets, divide summed losses by the labelled items a step holds on average, not by this
        step's own count: a batch of short sentences must not give each of its tokens more weight (soft labels of
        distillation: the step's items with a teacher target, `as_teacher_items`). Private: the count
        is made over the whole accumulation step before `compute_loss` sees one micro-batch, so no public hook can
        change it."""
        if isinstance(self.compute_loss_func, DistillationLoss):
            batch_samples = as_teacher_items(batch_samples)
        counted = super()._get_num_items_in_batch(batch_samples, device)
        if counted is None or self.items_per_example is None or not torch.is_tensor(counted) or counted.dim():
            return counted
        rows = sum(len(batch["labels"]) for batch in batch_samples)
        scope = self.args.world_size if self.args.average_tokens_across_devices and self.args.world_size > 1 else 1
        return torch.tensor(self.items_per_example * rows * scope, dtype=torch.float32, device=counted.device)

    def _get_eval_sampler(self, eval_dataset):
        """Evaluation in dataset order: upstream length-groups the evaluation batches too when
        `train_sampling_strategy="group_by_length"`, which shuffles the predictions against the dataset, and ours
        map back to input rows. Private: the evaluation sampler has no public hook."""
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

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Weights as readable as every other output (see `open_up_new_files`); checkpoints save through here too."""
        started = time.time()
        super().save_model(output_dir, _internal_call=_internal_call)
        open_up_new_files(output_dir or self.args.output_dir, started)

    def save_state(self) -> None:
        if not self.is_world_process_zero():
            return
        path = os.path.join(self.args.output_dir, "trainer_state.json")
        self.state.save_to_json(f"{path}.tmp")
        os.replace(f"{path}.tmp", path)


@contextmanager
def full_precision_forward(model: torch.nn.Module) -> Iterator[None]:
    """Run `model` without the mixed-precision wrapper accelerate put around its `forward` (it keeps the original as
    `_original_forward`); a model without one is left as it is."""
    original = model.__dict__.get("_original_forward")
    if original is None:
        yield
        return
    wrapped = model.forward
    model.forward = original
    try:
        yield
    finally:
        model.forward = wrapped


def eval_loss_at(log_history: Sequence[Mapping[str, Any]], step: int | None) -> float | None:
    """The validation loss logged at `step`, or None."""
    for entry in reversed(log_history):
        if entry.get("step") == step and "eval_loss" in entry:
            return entry["eval_loss"]
    return None


def drop_resume_state(run_dir: str, keep: str) -> None:
    """Remove the resume state (`RESUME_STATE_FILES`) of every checkpoint in `run_dir` but `keep`, the newest."""
    for checkpoint in glob.glob(os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-*")):
        if os.path.abspath(checkpoint) == os.path.abspath(keep):
            continue
        for pattern in RESUME_STATE_FILES:
            for path in glob.glob(os.path.join(checkpoint, pattern)):
                os.remove(path)


class DropOlderResumeState(TrainerCallback):
    """After each checkpoint, the resume state (optimizer, scheduler, RNG: two thirds of an Adam-trained checkpoint)
    goes from the older checkpoints, which are kept only as candidates for the best model (weights alone). Only the
    newest checkpoint is resumed from, and it keeps everything (a finished run can be resumed to train longer). The
    embedded MiniLM's 2-epoch run keeps 87 + 260 + 87 MB instead of 2 x 260 + 87. DeepSpeed and FSDP keep resume
    state their own way and are left alone."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        trainer = self.trainer
        if state.is_world_process_zero and not (trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled):
            drop_resume_state(
                args.output_dir, keep=os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            )


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

    def on_epoch_end(self, args, state, control, **kwargs):
        """Stopping ends the epoch early, and an epoch's end evaluates (eval_strategy epoch): that evaluation of a
        half-trained epoch is not one the uninterrupted run makes, and it could become the "best" checkpoint, so a
        resumed run would end with another model. The checkpoint is saved without it."""
        if self.received is not None:
            control.should_evaluate = False

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
    batching: BatchingPlan | None = None,
) -> FinetuneTrainer:
    """A `Trainer`: distribution, mixed precision, checkpoints and logging stay its (and accelerate's) job."""
    callbacks = [GracefulStop(), NonFiniteGuard(), *extra_callbacks]
    if args.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
    trainer = FinetuneTrainer(
        model=model,
        args=args,
        data_collator=data_collator,
        train_dataset=features.get("train"),
        eval_dataset=features.get("validation"),
        processing_class=tokenizer,
        compute_loss_func=compute_loss_func,
        preprocess_logits_for_metrics=reduce_logits,
        callbacks=callbacks,
        batching=batching,
    )
    trainer.add_callback(DropOlderResumeState(trainer))
    return trainer


def log_hparams(trainer: Trainer, hyperparameters: Mapping[str, Any], results: Mapping[str, Any]) -> None:
    """The run's hyperparameters beside its final metrics in TensorBoard's HPARAMS tab (when TensorBoard is on)."""
    callback = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback)), None)
    log_dir = getattr(callback, "logging_dir", None)
    if not log_dir:
        return
    from torch.utils.tensorboard import SummaryWriter

    metrics = {
        f"hparam/{key}": float(value)
        for key, value in results.items()
        if isinstance(value, (int, float)) and key.split("_", 1)[0] in {"eval", "predict", "train"}
    }
    with SummaryWriter(log_dir=log_dir) as writer:
        writer.add_hparams(
            {
                key: value if isinstance(value, (int, float, str, bool)) else str(value)
                for key, value in hyperparameters.items()
            },
            metrics,
            run_name=".",
        )
