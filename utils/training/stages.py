"""Which stages run and with which settings, and running them: train, evaluate, predict, saving metrics the
transformers way."""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datasets import Dataset
from transformers import EvalPrediction, Trainer

from utils.core.errors import ConfigError
from utils.core.task import LoadedData, StageContext, Task, TaskStage
from utils.training.arguments import FinetuneTrainingArguments
from utils.training.checkpoints import resolve_checkpoint
from utils.training.trainer import FinetuneTrainer, GracefulStop, Interrupted

logger = logging.getLogger(__name__)

#: Defaults both tasks share: evaluate and save each epoch, log to TensorBoard. (The best checkpoint is restored at
#: the end whenever the data and strategies allow it: see `settle_training_args`.)
COMMON_TRAINING_DEFAULTS: dict[str, Any] = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "logging_steps": 25,
    "report_to": ["tensorboard"],
    # Training batches: packed random batches for token tasks (`--pack_sequences`, utils/core/packing.py),
    # else `--bucket_by_length` (utils/training/batching.py): upstream's group_by_length cost 1.5 test F1 points on
    # CoNLL-2003 after one epoch (docs/benchmarks.md); giving --train_sampling_strategy turns buckets off.
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
    for wanted, split, flag in (
        (stages.train, "train", "--train_file"),
        (stages.evaluate, "validation", "--validation_file"),
        (stages.predict, "test", "--test_file"),
    ):
        if wanted and split not in splits:
            raise ConfigError(f"A {split} stage was asked for but there is no {split} split: pass {flag}.")
    return stages


def settle_training_args(
    args: FinetuneTrainingArguments,
    stages: Stages,
    splits: set[str],
    given: set[str],
    best_metric: tuple[str, bool] | None = None,
) -> FinetuneTrainingArguments:
    """Make the training arguments fit the data: no validation split, no evaluation during training; otherwise the
    best checkpoint by the task's metric (e.g. F1) is restored at the end, unless the user decided otherwise."""
    changes: dict[str, Any] = {"do_train": stages.train, "do_eval": stages.evaluate, "do_predict": stages.predict}
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


def kept_checkpoint(state, args) -> dict[str, Any]:
    """When training restored a best checkpoint that is not its last step: which step, and why (the scores that
    decided), as `kept_step`/`kept_reason` result keys; else nothing."""
    best = state.best_model_checkpoint
    if not (
        args.load_best_model_at_end and best and state.best_global_step and state.best_global_step != state.global_step
    ):
        return {}
    name = args.metric_for_best_model or "loss"
    key = name if name.startswith("eval_") else f"eval_{name}"
    evaluations = [entry for entry in state.log_history if key in entry and "step" in entry]
    kept = next((entry for entry in evaluations if entry["step"] == state.best_global_step), None)
    last = evaluations[-1] if evaluations else None
    if kept is None or last is None:
        return {"kept_step": state.best_global_step}
    name = key[len("eval_") :]
    if last["step"] == kept["step"]:
        reason = (
            f"best {name} {kept[key]:.4f} at the last evaluation (step {kept['step']}); steps after it were "
            "never evaluated"
        )
    elif kept[key] == last[key]:
        reason = (
            f"{name} tied at {kept[key]:.4f} with the last evaluation (step {last['step']}); lower loss "
            f"{kept.get('eval_loss', float('nan')):.4f} against {last.get('eval_loss', float('nan')):.4f}"
        )
    else:
        reason = (
            f"{name} {kept[key]:.4f} against {last[key]:.4f} at the last evaluation (step {last['step']}; "
            f"{'higher' if args.greater_is_better else 'lower'} is better)"
        )
    return {"kept_step": kept["step"], "kept_reason": reason}


class SplitScorer:
    """`compute_metrics` bound to one split, so predictions on its features map back to its raw examples."""

    def __init__(self, task: Task, features: Dataset, split: str, labels, data: LoadedData) -> None:
        self.task, self.features, self.raw, self.labels, self.data = task, features, data.raw[split], labels, data
        self.report = ""

    def __call__(self, prediction: EvalPrediction) -> dict[str, float]:
        training = self.task.training
        decoded = training.decode(prediction.predictions, self.features, self.raw, self.labels, self.data)
        metrics, self.report = training.score(decoded, self.raw, self.labels, self.data)
        return metrics


def run_task_stages(task_stages: Sequence[TaskStage], context: StageContext) -> dict[str, Any]:
    """The task's own stages (before the model's parameters are counted and the `Trainer` is built); their metrics."""
    results: dict[str, Any] = {}
    for stage in task_stages:
        logger.info("Stage %s", stage.name)
        results.update(stage.run(context))
    return results


def run_stages(
    trainer: Trainer,
    task: Task,
    stages: Stages,
    data: LoadedData,
    features: Mapping[str, Dataset],
    labels,
    save_untrained: bool = False,
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Train, evaluate and predict as asked; returns (all metrics, report text per split, prediction files).
    `save_untrained`: a task stage finished the model (e.g. a zero-shot head), so it is saved without a train
    stage."""
    args: FinetuneTrainingArguments = trainer.args
    raw = data.raw
    scorers = {split: SplitScorer(task, features[split], split, labels, data) for split in features}
    results: dict[str, Any] = {}
    reports: dict[str, str] = {}
    written: list[str] = []

    def record(prefix: str, metrics: dict[str, Any]) -> None:
        trainer.log_metrics(prefix, metrics)
        trainer.save_metrics(prefix, metrics)
        results.update(metrics)

    if save_untrained and not stages.train and trainer.is_world_process_zero():
        trainer.model.save_pretrained(args.output_dir)
        trainer.processing_class.save_pretrained(args.output_dir)
    kept: dict[str, Any] = {}
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
            raise Interrupted(
                f"stopped by {signal.Signals(stop.received).name} at step {trainer.state.global_step} "
                f"after saving a checkpoint; continue with --resume_from_checkpoint last."
            )
        trainer.save_model()
        kept = kept_checkpoint(trainer.state, args)
        if kept:
            logger.warning(
                "Restored checkpoint-%d of %d steps, not the last one: %s.",
                kept["kept_step"],
                trainer.state.global_step,
                kept.get("kept_reason", "the best score"),
            )
        metrics = dict(train_result.metrics, train_samples=len(raw["train"]), train_features=len(features["train"]))
        padding = trainer.padding_fraction() if isinstance(trainer, FinetuneTrainer) else None
        if padding is not None:
            metrics["train_padding_fraction"] = round(padding, 4)
        record("train", metrics)
        trainer.save_state()
    if stages.evaluate:
        trainer.compute_metrics = scorers["validation"]
        metrics = trainer.evaluate()
        metrics.update(eval_samples=len(raw["validation"]), **{f"eval_{key}": value for key, value in kept.items()})
        reports["validation"] = scorers["validation"].report
        record("eval", metrics)
    if stages.predict:
        trainer.compute_metrics = scorers["test"]
        output = trainer.predict(features["test"], metric_key_prefix="predict")
        decoded = task.training.decode(output.predictions, features["test"], raw["test"], labels, data)
        metrics = dict(output.metrics, predict_samples=len(raw["test"]))
        reports["test"] = scorers["test"].report
        record("predict", metrics)
        if trainer.is_world_process_zero():
            written = task.training.write_predictions(args.output_dir, raw["test"], decoded, labels, data)
    return results, reports, written
