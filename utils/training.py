"""Build the `Trainer` and run the train / evaluate / predict stages, saving metrics the transformers way."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset
from torch.utils.data import SequentialSampler
from transformers import EarlyStoppingCallback, EvalPrediction, Trainer, TrainerCallback
from transformers.trainer_utils import has_length

from utils.arguments import FinetuneTrainingArguments
from utils.batching import BucketedSampler, labelled_items
from utils.errors import ConfigError, FinetuneError
from utils.files import write_json
from utils.packing import SequencePacker, make_packer
from utils.task import Task

logger = logging.getLogger(__name__)

#: Defaults both tasks share: evaluate and save each epoch, log to TensorBoard. (The best checkpoint is restored at
#: the end whenever the data and strategies allow it: see `settle_training_args`.)
COMMON_TRAINING_DEFAULTS: dict[str, Any] = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "logging_steps": 25,
    "report_to": ["tensorboard"],
    # Training batches: packed random batches for token tasks (`--pack_sequences`, utils/packing.py), else
    # `--bucket_by_length` (utils/batching.py): upstream's group_by_length cost 1.5 test F1 points on CoNLL-2003 after
    # one epoch (docs/benchmarks.md); giving --train_sampling_strategy turns buckets off.
    "train_sampling_strategy": "random",
    "learning_rate": 5e-5,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "num_train_epochs": 3.0,
    "save_only_model": False,
}


@dataclass(frozen=True)
class Stages:
    """Which stages run; by default every stage whose split was given."""

    train: bool
    evaluate: bool
    predict: bool


def decide_stages(args: FinetuneTrainingArguments, given: set[str], splits: set[str]) -> Stages:
    """Explicit --do_* flags win; with none, a stage runs when its split exists. A stage without data is an error."""
    if not given & {"do_train", "do_eval", "do_predict"}:
        return Stages("train" in splits, "validation" in splits, "test" in splits)
    stages = Stages(
        args.do_train and "do_train" in given,
        args.do_eval and "do_eval" in given,
        args.do_predict and "do_predict" in given,
    )
    for wanted, split, flag in ((stages.train, "train", "--train_file"), (stages.evaluate, "validation",
                                "--validation_file"), (stages.predict, "test", "--test_file")):
        if wanted and split not in splits:
            raise ConfigError(f"A {split} stage was asked for but there is no {split} split: pass {flag}.")
    return stages


def settle_training_args(args: FinetuneTrainingArguments, stages: Stages, splits: set[str], given: set[str],
                         best_metric: tuple[str, bool] | None = None) -> FinetuneTrainingArguments:
    """Make the training arguments fit the data: no validation split, no evaluation during training; otherwise the
    best checkpoint by the task's metric (e.g. F1) is restored at the end, unless the user decided otherwise."""
    changes: dict[str, Any] = {"do_train": stages.train, "do_eval": stages.evaluate, "do_predict": stages.predict}
    if "train_sampling_strategy" in given and args.bucket_by_length:
        if "bucket_by_length" in given:
            raise ConfigError(f"--bucket_by_length replaces --train_sampling_strategy; drop one of them (got "
                              f"--train_sampling_strategy {args.train_sampling_strategy}).")
        changes["bucket_by_length"] = False
    if best_metric is not None and "metric_for_best_model" not in given:
        changes.update(metric_for_best_model=best_metric[0], greater_is_better=best_metric[1])
    if "validation" not in splits:
        if args.early_stopping_patience:
            raise ConfigError("--early_stopping_patience needs a validation split: pass --validation_file.")
        if args.eval_strategy != "no":
            logger.info("No validation split: no evaluation during training; the last checkpoint is the model.")
        changes.update(eval_strategy="no", load_best_model_at_end=False)
    elif "load_best_model_at_end" not in given and args.save_strategy != "no" and args.eval_strategy != "no":
        changes["load_best_model_at_end"] = True
    try:
        return dataclasses.replace(args, **changes)
    except ValueError as err:
        if args.early_stopping_patience or "load_best_model_at_end" in given:
            raise ConfigError(str(err)) from None
        logger.warning("Not restoring the best checkpoint at the end: %s", err)
        changes.pop("load_best_model_at_end", None)
        return dataclasses.replace(args, **changes)


class SplitScorer:
    """`compute_metrics` bound to one split, so predictions on its features map back to its raw examples."""

    def __init__(self, task: Task, features: Dataset, raw: Dataset, labels, data_args) -> None:
        self.task, self.features, self.raw, self.labels, self.data_args = task, features, raw, labels, data_args
        self.report = ""

    def __call__(self, prediction: EvalPrediction) -> dict[str, float]:
        decoded = self.task.decode(prediction.predictions, self.features, self.raw, self.labels, self.data_args)
        metrics, self.report = self.task.score(decoded, self.raw, self.labels, self.data_args)
        return metrics


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest checkpoint that was completely written. `Trainer` writes trainer_state.json last, so a run killed
    while saving leaves a checkpoint directory without it, which must not be resumed from."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted((int(name.split("-")[1]), name) for name in os.listdir(output_dir)
                   if name.startswith("checkpoint-") and name.split("-")[1].isdigit())
    for _, name in reversed(steps):
        path = os.path.join(output_dir, name)
        if os.path.isfile(os.path.join(path, "trainer_state.json")):
            return path
        logger.warning("Skipping %s: it was not completely written (the run was killed while saving).", path)
    return None


def resolve_checkpoint(args: FinetuneTrainingArguments) -> str | None:
    """`--resume_from_checkpoint last` means the newest complete checkpoint in output_dir (a warning if none)."""
    wanted = args.resume_from_checkpoint
    if wanted != "last":
        if wanted and not os.path.isfile(os.path.join(wanted, "trainer_state.json")):
            raise ConfigError(f"--resume_from_checkpoint {wanted}: not a complete checkpoint directory "
                              "(no trainer_state.json).")
        return wanted
    last = last_complete_checkpoint(args.output_dir)
    if last is None:
        logger.warning("--resume_from_checkpoint last: no checkpoint in %s; training from the start.",
                       args.output_dir)
    else:
        logger.info("Resuming from %s", last)
    return last


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


def check_output_dir(args: FinetuneTrainingArguments, stages: Stages) -> None:
    """Training into a directory that holds another run is refused unless asked to overwrite or to resume it."""
    out = args.output_dir
    if not stages.train or args.resume_from_checkpoint or not os.path.isdir(out):
        return
    finished = os.path.isfile(os.path.join(out, "all_results.json"))
    checkpoint = next((name for name in os.listdir(out) if name.startswith("checkpoint-")), None)
    if not finished and checkpoint is None:
        return
    if not args.overwrite_output_dir:
        held = "a finished run (all_results.json)" if finished else f"an unfinished run ({checkpoint})"
        raise ConfigError(f"--output_dir {out} already holds {held}. Pass --overwrite_output_dir to replace it, "
                          "--resume_from_checkpoint last to continue it, or choose another --output_dir.")
    if not args.should_save:  # the main process cleans up; the others only check
        return
    for name in os.listdir(out):
        path = os.path.join(out, name)
        if name.startswith("checkpoint-") and os.path.isdir(path):
            shutil.rmtree(path)
        elif name.endswith("_results.json") or name in {"trainer_state.json", "predictions.conll",
                                                        "predictions.jsonl", "predictions.tsv"}:
            os.remove(path)
    logger.info("--overwrite_output_dir: removed the previous run's checkpoints and results from %s", out)


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


def run_stages(
    trainer: Trainer,
    task: Task,
    stages: Stages,
    raw: Mapping[str, Dataset],
    features: Mapping[str, Dataset],
    labels,
    data_args,
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Train, evaluate and predict as asked; returns (all metrics, report text per split, prediction files)."""
    args: FinetuneTrainingArguments = trainer.args
    scorers = {split: SplitScorer(task, features[split], raw[split], labels, data_args) for split in features}
    results: dict[str, Any] = {}
    reports: dict[str, str] = {}
    written: list[str] = []

    def record(prefix: str, metrics: dict[str, Any]) -> None:
        trainer.log_metrics(prefix, metrics)
        trainer.save_metrics(prefix, metrics)
        results.update(metrics)

    if "validation" in features:
        trainer.compute_metrics = scorers["validation"]
        if args.eval_before_training:
            metrics = trainer.evaluate(metric_key_prefix="before_eval")
            reports["validation (before fine-tuning)"] = scorers["validation"].report
            record("before_eval", metrics)
    if stages.train:
        train_result = trainer.train(resume_from_checkpoint=resolve_checkpoint(args))
        stop = next(c for c in trainer.callback_handler.callbacks if isinstance(c, GracefulStop))
        if stop.received is not None:
            trainer.save_state()
            raise Interrupted(f"stopped by {signal.Signals(stop.received).name} at step {trainer.state.global_step} "
                              f"after saving a checkpoint; continue with --resume_from_checkpoint last.")
        trainer.save_model()
        metrics = dict(train_result.metrics, train_samples=len(raw["train"]), train_features=len(features["train"]))
        padding = trainer.padding_fraction() if isinstance(trainer, FinetuneTrainer) else None
        if padding is not None:
            metrics["train_padding_fraction"] = round(padding, 4)
        record("train", metrics)
        trainer.save_state()
    if stages.evaluate:
        trainer.compute_metrics = scorers["validation"]
        metrics = trainer.evaluate()
        metrics.update(eval_samples=len(raw["validation"]))
        reports["validation"] = scorers["validation"].report
        record("eval", metrics)
    if stages.predict:
        trainer.compute_metrics = scorers["test"]
        output = trainer.predict(features["test"], metric_key_prefix="predict")
        decoded = task.decode(output.predictions, features["test"], raw["test"], labels, data_args)
        metrics = dict(output.metrics, predict_samples=len(raw["test"]))
        reports["test"] = scorers["test"].report
        record("predict", metrics)
        if trainer.is_world_process_zero():
            written = task.write_predictions(args.output_dir, raw["test"], decoded, labels, data_args)
    return results, reports, written


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
