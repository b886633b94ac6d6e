"""The shared recipe: parse -> load data -> labels -> tokenizer/model -> encode -> Trainer -> stages -> outputs.

Each entry script hands in its `Task`; nothing here knows about entities or classes.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import transformers
from datasets import Dataset
from transformers import TrainerCallback, set_seed

from utils.core.arguments import ModelArguments
from utils.core.data import SPLIT_FILES, split_source
from utils.core.errors import FinetuneError
from utils.core.files import open_up_new_files
from utils.core.modeling import load_config, load_model, load_tokenizer, one_line
from utils.core.ordering import longest_first
from utils.core.parsing import parse_args, read_config_file
from utils.core.task import PROJECT_ROOT, TASK_CONFIG_KEY, LoadedData, StageContext, Task
from utils.core.validation import validate_job
from utils.training.arguments import FinetuneTrainingArguments, precision_note
from utils.training.batching import decide_batching
from utils.training.calibration import calibrate_run
from utils.training.checkpoints import check_output_dir
from utils.training.hub import push_output_dir
from utils.training.reporting import (
    base_model_id,
    results_table,
    shown_command,
    write_model_card,
    write_reports,
    write_training_curves,
)
from utils.training.stages import (
    COMMON_TRAINING_DEFAULTS,
    decide_stages,
    run_stages,
    run_task_stages,
    settle_training_args,
)
from utils.training.student import keep_layers, student_model_args
from utils.training.teacher import Distiller
from utils.training.trainer import build_trainer, log_hparams
from utils.training.tuning import (
    PARTIAL_TRAINING_LR,
    describe_training,
    is_peft_model,
    parameter_counts,
    prepare_model,
    save_adapter_outputs,
)

logger = logging.getLogger(__name__)

#: Hyperparameters worth a line in the model card.
CARD_HYPERPARAMETERS = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "weight_decay",
    "warmup_steps",
    "lr_scheduler_type",
    "optim",
    "seed",
    "bf16",
    "fp16",
)


def setup_logging(args: FinetuneTrainingArguments) -> None:
    """Our messages at INFO on the main process (warnings elsewhere); the libraries at WARNING unless --log_level
    asks for more."""
    ours = logging.INFO if args.should_log else logging.WARNING
    libraries = args.get_process_log_level() if args.log_level != "passive" else logging.WARNING
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
        level=logging.WARNING,
        force=True,
    )
    logging.getLogger("utils").setLevel(ours)
    datasets.utils.logging.set_verbosity(libraries)
    transformers.utils.logging.set_verbosity(libraries)


def has_data(data_args) -> bool:
    return bool(data_args.dataset_name or any(getattr(data_args, arg) for arg in SPLIT_FILES.values()))


def sample_defaults(task: Task) -> dict[str, Any]:
    """The task's sample recipe as defaults, its data paths taken relative to the project, not the working dir."""
    config = read_config_file(task.sample_config)
    for arg in SPLIT_FILES.values():
        if arg in config:
            config[arg] = str(PROJECT_ROOT / config[arg])
    return config


def sorted_by_length(features: Dataset) -> Dataset:
    """Evaluation features longest first, so each batch pads little (decoding maps rows back by example_index)."""
    return features.select(longest_first([len(ids) for ids in features["input_ids"]]))


@dataclass(frozen=True)
class JobOutcome:
    """What a finished job hands back: every metric (all_results.json) and the training arguments it ran with."""

    results: dict[str, Any]
    args: FinetuneTrainingArguments


@dataclass(frozen=True)
class ParsedJob:
    """A job's parsed arguments, and which flags (or config keys) the user gave."""

    model_args: ModelArguments
    data_args: Any
    training_args: FinetuneTrainingArguments
    given: set[str]


def argument_types(task: Task) -> tuple[type, ...]:
    return ModelArguments, task.data.arguments, FinetuneTrainingArguments


def parse_job(task: Task, argv: Sequence[str]) -> ParsedJob:
    """Flags and config file on top of the defaults; with no data given, the task's sample recipe (anything the
    user gave still wins). The recipe may overwrite only its own output directory: pointed at another one, the run
    is protected like any other (another run there is refused unless --overwrite_output_dir)."""
    types = argument_types(task)
    defaults = {**COMMON_TRAINING_DEFAULTS, **task.training_defaults}
    (model_args, data_args, training_args), given = parse_args(types, argv, defaults)
    if not has_data(data_args):
        sample = sample_defaults(task)
        if "output_dir" in given and "overwrite_output_dir" not in given:
            sample.pop("overwrite_output_dir", None)
        (model_args, data_args, training_args), given = parse_args(types, argv, {**defaults, **sample})
    return ParsedJob(model_args, data_args, training_args, given)


def run(task: Task, argv: Sequence[str] | None = None, callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
    """Run one fine-tuning job end to end (or, with --hp_search_trials, a search whose trials and final training are
    such jobs); returns every metric (the content of all_results.json).

    `callbacks` are extra `TrainerCallback`s (the benchmarks use one to count padding)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    job = parse_job(task, argv)
    validate_job(job.model_args, job.data_args, job.training_args, job.given)
    setup_logging(job.training_args)
    if job.training_args.hp_search_trials:
        from utils.training.hp_search import search

        known = {field.name for kind in argument_types(task) for field in dataclasses.fields(kind)}
        return search(
            argv, job.model_args, job.training_args, known, functools.partial(run_job, task, callbacks=callbacks)
        ).results
    try:
        return run_job(task, argv, callbacks, job).results
    except RuntimeError as err:  # torch.distributed's errors are RuntimeErrors
        if job.training_args.world_size > 1 and is_lost_peer(err):
            cause = one_line(err)[:300]
            raise PeerLost(
                f"another process of this distributed run stopped or cannot be reached ({cause}), so this "
                "one stops too. Relaunch every machine with --resume_from_checkpoint last to continue from "
                "the newest checkpoint."
            ) from None
        raise


class PeerLost(FinetuneError):
    """A rank of a distributed run died (its machine, its process) or stopped answering (--ddp_timeout)."""


#: What gloo, NCCL and the rendezvous store say when a peer is gone or silent.
LOST_PEER_MESSAGES = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "timed out",
    "Timed out",
    "DistNetworkError",
    "DistStoreError",
    "NCCL communicator was aborted",
)


def is_lost_peer(err: BaseException) -> bool:
    """Whether an error is a collective that failed because another rank is gone (not a bug of this rank)."""
    import torch.distributed

    return isinstance(err, torch.distributed.DistError) or any(text in str(err) for text in LOST_PEER_MESSAGES)


def run_job(
    task: Task, argv: Sequence[str], callbacks: Sequence[TrainerCallback] = (), job: ParsedJob | None = None
) -> JobOutcome:
    """One job: load, train, evaluate, predict, write the outputs; returns the metrics and the settled training
    arguments (the hyper-parameter search reads the metric chosen). `job`: `argv` already parsed."""
    started = time.time()
    job = job or parse_job(task, argv)
    model_args, data_args, given = job.model_args, job.data_args, job.given
    training_args = partial_training_lr(model_args, job.training_args, given)
    task.data.check_arguments(data_args, training_args, given)
    if "train_file" not in given and data_args.train_file and data_args.train_file.startswith(str(PROJECT_ROOT)):
        logger.info("No data given: running the %s sample recipe %s.", task.name, task.sample_config)
    set_seed(training_args.seed)
    model_args = student_model_args(model_args, training_args.teacher_model, training_args.student_layers, given)
    config = load_config(model_args)
    with training_args.main_process_first(desc="loading data"):
        data = task.data.load(data_args, model_args)
    splits = set(data.raw)
    stages = decide_stages(training_args, given, splits)
    training_args = settle_training_args(training_args, stages, splits, given, task.training.best_metric(data))
    task_stages = task.training.stages(data)
    produced = any(stage.produces_model for stage in task_stages)
    with training_args.main_process_first(desc="checking output_dir"):
        check_output_dir(training_args, stages.train or produced, task.training.prediction_files)

    labels = task.data.build_labels(data, without_labels(config) if model_args.reinit_head else config)
    data = dataclasses.replace(data, raw=task.data.check_labels(data, labels))
    tokenizer = load_tokenizer(model_args, **task.data.tokenizer_kwargs(config, data_args))
    overrides = {TASK_CONFIG_KEY: task.name, **task.training.model_overrides(data, labels)}
    model_class = task.training.model_class(data) or task.training.auto_model
    model = keep_layers(load_model(model_args, model_class, labels, config, **overrides), training_args.student_layers)
    distiller = Distiller.plan(task, model_args, training_args, data, labels)  # None without --teacher_model
    task = distiller.wrap(task) if distiller else task
    results = run_task_stages(task_stages, StageContext(model, tokenizer, data, labels, training_args))
    model = prepare_model(model, model_args, task.training.peft_task_type)
    counts = parameter_counts(model)
    logger.info(
        "Trainable parameters: %s of %s (%.2f%%)",
        f"{counts['trainable_parameters']:,}",
        f"{counts['total_parameters']:,}",
        counts["trainable_percent"],
    )
    with training_args.main_process_first(desc="tokenizing"):
        features = {split: task.data.encode(data.raw[split], tokenizer, labels, data) for split in splits}
        if distiller and stages.train:
            features["train"] = distiller.train_features(data, tokenizer, labels, data_args.overwrite_cache)
    if training_args.sort_eval_by_length:
        features.update(
            {split: sorted_by_length(features[split]) for split in ("validation", "test") if split in splits}
        )

    hub = HubTarget.take_from(training_args)  # pushed once at the end, not by Trainer mid-run
    training_args = dataclasses.replace(training_args, push_to_hub=False, hub_token=None)
    logger.info(
        "World size %d (%s) on %s", training_args.world_size, training_args.parallel_mode.value, training_args.device
    )
    logger.info(precision_note(training_args))
    batching = decide_batching(
        training_args,
        given,
        model,
        tokenizer.pad_token_id,
        task.training.token_outputs,
        data_args.pad_to_max_length,
        data_args.max_seq_length,
    )
    reduce_logits = task.training.reduce_logits if training_args.argmax_in_metrics else None
    trainer = build_trainer(
        model,
        tokenizer,
        training_args,
        features,
        task.training.collator(tokenizer, data, batching.pad_to),
        reduce_logits,
        task.training.loss(data, labels, training_args),
        callbacks,
        batching,
    )
    trainer.run_results.update({**counts, **results})  # into all_results.json with the metrics
    stage_results, reports, written = run_stages(trainer, task, stages, data, features, labels, produced)
    results = {**counts, **results, **stage_results}
    if distiller and trainer.is_world_process_zero():  # the teacher on the student's test split: the retention
        results.update(distiller.measure(data, results, training_args.metric_for_best_model or "loss"))
        trainer.save_metrics("teacher", {k: v for k, v in results.items() if k.startswith(("teacher_", "distill_"))})
    if stages.train and is_peft_model(model) and trainer.is_world_process_zero():
        save_adapter_outputs(trainer.model, training_args.output_dir, model_args.merge_adapter)
    calibration_lines: list[str] = []
    if (stages.train or produced) and trainer.is_world_process_zero():
        calibrated, calibration_lines = calibrate_run(trainer, task, data, labels)
        if calibrated:
            trainer.save_metrics("calibration", calibrated)
            results.update(calibrated)
    if trainer.is_world_process_zero():
        finish_outputs(
            task, trainer, model_args, data, labels, results, reports, written, argv, hub, calibration_lines
        )
        open_up_new_files(training_args.output_dir, started)  # adapters, zero-shot models: saved outside Trainer
    return JobOutcome(results, training_args)


def partial_training_lr(
    model_args: ModelArguments, args: FinetuneTrainingArguments, given: set[str]
) -> FinetuneTrainingArguments:
    """Adapters and linear probes learn at a higher rate than full fine-tuning; used unless --learning_rate is set."""
    if "learning_rate" in given:
        return args
    for flag, rate in PARTIAL_TRAINING_LR.items():
        if getattr(model_args, flag):
            logger.info("--%s without --learning_rate: learning rate %g.", flag, rate)
            return dataclasses.replace(args, learning_rate=rate)
    return args


def without_labels(config):
    """A copy of the model config that names no labels, so the label space comes from the data (--reinit_head)."""
    config = copy.deepcopy(config)
    config.id2label = {i: f"LABEL_{i}" for i in range(config.num_labels)}
    config.label2id = {name: i for i, name in config.id2label.items()}
    return config


@dataclass(frozen=True)
class HubTarget:
    """Where (and whether) to push the finished output directory."""

    push: bool
    repo_id: str | None
    private: bool | None
    token: str | None

    @classmethod
    def take_from(cls, args: FinetuneTrainingArguments) -> HubTarget:
        return cls(args.push_to_hub, args.hub_model_id, args.hub_private_repo, args.hub_token)


def finish_outputs(
    task: Task,
    trainer,
    model_args,
    data: LoadedData,
    labels,
    results: dict[str, Any],
    reports: dict[str, str],
    written: list[str],
    argv: Sequence[str],
    hub: HubTarget,
    calibration_lines: Sequence[str] = (),
) -> None:
    """Main process only: reports, training curves, TensorBoard hyperparameters, model card, results table, push."""
    args = trainer.args
    output_dir = args.output_dir
    os.makedirs(output_dir, exist_ok=True)
    main_metric = args.metric_for_best_model or "loss"
    hyperparameters = {name: getattr(args, name) for name in CARD_HYPERPARAMETERS}
    write_reports(output_dir, reports, task.training.report_file)
    curves = write_training_curves(output_dir, trainer.state.log_history, main_metric)
    log_hparams(trainer, hyperparameters, results)
    write_model_card(
        output_dir,
        title=f"{os.path.basename(os.path.abspath(output_dir))} ({task.name})",
        pipeline_tag=task.pipeline_tag,
        base_model=base_model_id(model_args.model_name_or_path),
        data_sources={split: split_source(data.args, split) for split in data.raw},
        labels=labels.names,
        hyperparameters=hyperparameters,
        results=results,
        main_metrics=[main_metric],
        details=[
            *task.training.card_details(data, labels),
            *describe_training(model_args, results),
            *calibration_lines,
        ],
        command=shlex.join(["python", task.script, *shown_command(argv)]),
        curves=curves,
    )
    table = results_table(results, [main_metric])
    if table:
        print(f"\nResults ({output_dir}):\n{table}")
    if written:
        print("Predictions: " + ", ".join(os.path.join(output_dir, name) for name in written))
    if hub.push:
        push_output_dir(output_dir, hub.repo_id, hub.private, hub.token)
