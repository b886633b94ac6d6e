"""The teacher of a distillation run (--teacher_model): loaded once, run once over the training data (and
--distill_file) to make the soft labels the student trains on (why precomputed: utils/training/distillation.py),
and scored on the same test split as the student, so the model card states the retention measured in one run."""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import datasets
import numpy as np
import torch
from datasets import Dataset
from datasets.fingerprint import Hasher

from utils.core.arguments import ModelArguments
from utils.core.data import content_fingerprint
from utils.core.errors import ConfigError
from utils.core.labels import LabelSpace, fine_tuned_labels
from utils.core.modeling import load_config, load_tokenizer, model_path
from utils.core.ordering import length_batches
from utils.core.task import TASK_CONFIG_KEY, LoadedData, Task, TaskDistillation, saved_task
from utils.training.distillation import DistillationLoss, SoftLabelCollator
from utils.training.reporting import shown_path

logger = logging.getLogger(__name__)

#: Bumped whenever the soft labels' layout or making changes, so that cached ones of an older version are not reused.
SOFT_LABEL_VERSION = 1
#: Examples the teacher labels at a time: the unit in which --distill_file is read, labelled and written to disk.
CHUNK_EXAMPLES = 1024


def weights_fingerprint(directory: str) -> list[str]:
    """The hashes of a saved model's weight files (what makes its predictions, whatever the files' dates)."""
    files = sorted(glob.glob(os.path.join(directory, "*.safetensors")) + glob.glob(os.path.join(directory, "*.bin")))
    return [content_fingerprint(path) for path in files]


@dataclasses.dataclass
class Distiller:
    """A loaded teacher and what distillation needs of it."""

    task: Task
    spec: TaskDistillation
    args: Any  # FinetuneTrainingArguments
    student: str  # the student's source, for the card
    model: Any
    tokenizer: Any
    labels: LabelSpace  # the teacher's, in its own order
    order: list[int]  # the teacher's logit index of each of the student's labels, in the student's order
    distilled_rows: dict[str, int] = dataclasses.field(default_factory=dict)
    measured: dict[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def plan(
        cls, task: Task, model_args: ModelArguments, args, data: LoadedData, labels: LabelSpace
    ) -> Distiller | None:
        """The teacher of --teacher_model, checked against this run (task, labels), or None without one."""
        if args.teacher_model is None:
            return None
        spec = task.training.distillation
        if spec is None:
            raise ConfigError(f"--teacher_model: the {task.name} task has no distillation.")
        spec.check(data)
        path = args.teacher_model
        teacher_args = dataclasses.replace(model_args, model_name_or_path=path, config_name=None, tokenizer_name=None)
        config = load_config(teacher_args)
        names = fine_tuned_labels(config)
        if saved_task(config, [task]) is None or names is None:
            raise ConfigError(
                f"--teacher_model {path} is not a fine-tuned model of {task.script} (it records task "
                f"{getattr(config, TASK_CONFIG_KEY, None)!r}, labels {names})."
            )
        if set(names) != set(labels.names):
            raise ConfigError(
                f"--teacher_model {path} predicts {names}, this run's labels are {list(labels.names)}: "
                "teacher and student need the same labels."
            )
        tokenizer = load_tokenizer(teacher_args, **task.data.tokenizer_kwargs(config, data.args))
        model = task.training.auto_model.from_pretrained(path, config=config).to(args.device).eval()
        logger.info("Teacher %s (%d layers) for %s.", path, config.num_hidden_layers, task.script)
        student = model_path(model_args)
        return cls(
            task,
            spec,
            args,
            student,
            model,
            tokenizer,
            LabelSpace(tuple(names)),
            [names.index(n) for n in labels.names],
        )

    def wrap(self, task: Task) -> Task:
        """The task as this run trains it: soft-label batches, the distillation loss, the card's distillation lines."""
        training = task.training
        args = self.args
        return dataclasses.replace(
            task,
            training=dataclasses.replace(
                training,
                collator=lambda tokenizer, data, pad_to: SoftLabelCollator(
                    training.collator(tokenizer, data, pad_to), training.token_outputs
                ),
                loss=lambda data, labels, training_args: DistillationLoss(
                    training.loss(data, labels, training_args),
                    args.distill_temperature,
                    args.distill_weight,
                    args.gold_weight,
                ),
                card_details=lambda data, labels: [*training.card_details(data, labels), *self.card_lines()],
            ),
        )

    def row_logits(self, features: Dataset, mixed: bool = True) -> list[np.ndarray]:
        """The teacher's logits of each feature row, in the student's label order ([tokens, labels] per row for
        token tasks, [labels] otherwise), batched longest first; soft labels (`mixed`) in the run's precision, as
        training, scores in fp32, as every evaluation."""
        names = [name for name in self.tokenizer.model_input_names if name in features.column_names]
        columns = {name: features[name] for name in names}
        lengths = [len(ids) for ids in columns["input_ids"]]
        found: list[np.ndarray | None] = [None] * len(lengths)
        device = torch.device(self.args.device)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed and bool(self.args.bf16))
        with torch.inference_mode(), autocast:
            for batch in length_batches(lengths, self.args.per_device_eval_batch_size):
                inputs = self.tokenizer.pad({n: [columns[n][i] for i in batch] for n in names}, return_tensors="pt")
                logits = self.model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu().numpy()
                logits = logits[..., self.order]
                for row, index in enumerate(batch):
                    found[index] = logits[row, : lengths[index]] if logits.ndim == 3 else logits[row]
        return found  # type: ignore[return-value]

    def soft_rows(self, chunk: Dataset, tokenizer, labels: LabelSpace, data: LoadedData) -> Iterator[dict[str, Any]]:
        """One chunk of examples: teacher logits per unit, laid on the student's encoding as soft labels."""
        teacher_features = self.task.data.encode(chunk, self.tokenizer, self.labels, data)
        units = self.spec.unit_logits(teacher_features, self.row_logits(teacher_features), len(chunk))
        features = self.task.data.encode(chunk, tokenizer, labels, data)
        soft = self.spec.soft_labels(features, units, len(labels))
        names = [name for name in tokenizer.model_input_names if name in features.column_names]
        columns = {name: features[name] for name in names}
        for row, items in enumerate(soft):
            yield {**{name: columns[name][row] for name in names}, "labels": items}

    def generate(self, sources: Sequence[Dataset], tokenizer, labels: LabelSpace, data: LoadedData):
        for source in sources:
            for start in range(0, len(source), CHUNK_EXAMPLES):  # in memory, so no cache files per chunk
                chunk = Dataset.from_dict(source[start : start + CHUNK_EXAMPLES], features=source.features)
                yield from self.soft_rows(chunk, tokenizer, labels, data)

    def train_features(self, data: LoadedData, tokenizer, labels: LabelSpace, overwrite: bool = False) -> Dataset:
        """The training features with soft labels: the train split's (gold kept beside the teacher's targets) and
        --distill_file's (teacher only), written to the datasets cache as they are made. The cache key covers the
        teacher's weights, the student's tokenizer, the data and its settings, so rerunning a distillation (or the
        other processes of a distributed run) reuses the soft labels, and changing any of them makes them anew."""
        sources = [data.raw["train"]] if "train" in data.raw else []
        if self.args.distill_file:
            unlabelled = self.spec.read_unlabelled(self.args.distill_file, data.args)
            logger.info("--distill_file: %d texts for the teacher to label.", len(unlabelled))
            sources.append(unlabelled)
        key = [
            self.args.teacher_model,
            weights_fingerprint(self.args.teacher_model),
            tokenizer.name_or_path,
            len(tokenizer),
            [source._fingerprint for source in sources],
            repr(data.args),
            list(labels.names),
            bool(self.args.bf16),
            CHUNK_EXAMPLES,
            SOFT_LABEL_VERSION,
        ]
        fingerprint = uuid.uuid4().hex if overwrite else Hasher.hash(key)
        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            features = Dataset.from_generator(
                self.generate,
                gen_kwargs={"sources": sources, "tokenizer": tokenizer, "labels": labels, "data": data},
                fingerprint=f"distill-{fingerprint}",
            )
        finally:
            if bars:
                datasets.enable_progress_bars()
        self.distilled_rows = {"train": len(sources[0]) if "train" in data.raw else 0}
        if self.args.distill_file:
            self.distilled_rows["distill_file"] = len(sources[-1])
        return features

    def score(self, data: LoadedData, split: str) -> dict[str, float]:
        """The teacher's metrics on `split`, decoded and scored as the student's are."""
        raw = data.raw[split]
        features = self.task.data.encode(raw, self.tokenizer, self.labels, data)
        rows = self.row_logits(features, mixed=False)
        width = max((len(row) for row in rows), default=0) if rows and rows[0].ndim == 2 else None
        if width is None:
            logits = np.stack(rows)
        else:
            logits = np.zeros((len(rows), width, rows[0].shape[-1]), dtype=np.float32)
            for index, row in enumerate(rows):
                logits[index, : len(row)] = row
        inverse = np.argsort(self.order)  # back to the teacher's label order, which `self.labels` names
        predictions = self.task.training.reduce_logits(torch.from_numpy(logits[..., inverse]), None)
        decoded = self.task.training.decode(np.asarray(predictions), features, raw, self.labels, data)
        metrics, _ = self.task.training.score(decoded, raw, self.labels, data)
        return metrics

    def measure(self, data: LoadedData, results: dict[str, Any], main_metric: str) -> dict[str, float]:
        """The teacher's scores on the test split (else validation) beside the student's, and the retention."""
        split, prefix = ("test", "predict_") if "test" in data.raw else ("validation", "eval_")
        if split not in data.raw:
            return {}
        teacher = {f"teacher_{prefix}{name}": value for name, value in self.score(data, split).items()}
        student, reference = results.get(f"{prefix}{main_metric}"), teacher.get(f"teacher_{prefix}{main_metric}")
        if isinstance(student, (int, float)) and isinstance(reference, (int, float)) and reference:
            teacher["distill_retention"] = student / reference
        self.measured = {**teacher, "split": split, "metric": main_metric}  # type: ignore[dict-item]
        return teacher

    def card_lines(self) -> list[str]:
        """The model card's distillation section: teacher, student, data, loss and the measured retention."""
        args, measured = self.args, self.measured
        layers = f", {args.student_layers} of its layers kept (--student_layers)" if args.student_layers else ""
        data = ", ".join(f"{rows} {name} rows" for name, rows in self.distilled_rows.items()) or "none"
        lines = [
            "## Distillation",
            "",
            f"- teacher: `{shown_path(args.teacher_model)}`",
            f"- student: `{shown_path(self.student)}`{layers}",
            f"- data the teacher labelled: {data}",
            f"- loss: {args.distill_weight} x T^2 x KL(teacher || student) at temperature T={args.distill_temperature}"
            f" + {args.gold_weight} x cross-entropy on gold labels where there are any",
        ]
        if "distill_retention" in measured:
            metric, prefix = measured["metric"], "predict_" if measured["split"] == "test" else "eval_"
            lines.append(
                f"- retention: {measured['distill_retention']:.2%} of the teacher's {measured['split']} {metric} "
                f"({measured[f'teacher_{prefix}{metric}']:.4f}), both measured in this run"
            )
        return lines
