"""The distillation options (docs/distillation.md): a teacher, a smaller student, unlabelled text and the loss
weights. A mixin of `FinetuneTrainingArguments`, so every entry script and config file takes them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from utils.core.errors import ConfigError

#: Files --distill_file reads, by extension: one text per line, or one JSON object per line.
DISTILL_FORMATS = (".txt", ".jsonl")


@dataclass
class DistillationArguments:
    """Knowledge distillation: the student trains on a fine-tuned teacher's soft predictions."""

    teacher_model: str | None = field(
        default=None,
        metadata={
            "help": "A fine-tuned model of this task (an output directory) to distil from: the model being "
            "trained learns the teacher's temperature-scaled predictions, mixed with the gold labels where "
            "there are any. The teacher may use another tokenizer (NER distils per word)."
        },
    )
    student_layers: int | None = field(
        default=None,
        metadata={
            "help": "Build the student by keeping N evenly spaced encoder layers (the first and the last among "
            "them) of --model, or of --teacher_model when --model is not given (DistilBERT-style "
            "initialisation). Without it the student is --model as it is."
        },
    )
    distill_file: str | None = field(
        default=None,
        metadata={
            "help": "Unlabelled in-domain text that only the teacher labels, added to the training data: .txt "
            "(one text per line; for NER one sentence per line, words split on spaces) or .jsonl (objects with "
            "`text`, or `tokens` for NER). Read and labelled in chunks, never whole in memory. Needs "
            "--teacher_model."
        },
    )
    distill_temperature: float = field(
        default=2.0, metadata={"help": "Softmax temperature of teacher and student in the distillation loss."}
    )
    distill_weight: float = field(
        default=0.5,
        metadata={"help": "Weight of the KL term (times temperature squared) per item with a teacher target."},
    )
    gold_weight: float = field(
        default=0.5,
        metadata={"help": "Weight of the cross-entropy on gold labels, for items that have one (0: teacher only)."},
    )

    def __post_init__(self) -> None:
        self.check_distillation()
        super().__post_init__()

    def check_distillation(self) -> None:
        if self.student_layers is not None and self.student_layers < 1:
            raise ConfigError(f"--student_layers must be 1 or more, got {self.student_layers}.")
        if self.distill_temperature <= 0:
            raise ConfigError(f"--distill_temperature must be positive, got {self.distill_temperature}.")
        if self.distill_weight < 0 or self.gold_weight < 0 or self.distill_weight + self.gold_weight == 0:
            raise ConfigError(
                f"--distill_weight {self.distill_weight} and --gold_weight {self.gold_weight}: both must be 0 or "
                "more, and not both 0."
            )
        if self.teacher_model is not None and not os.path.isdir(self.teacher_model):
            raise ConfigError(
                f"--teacher_model {self.teacher_model}: no such directory; give the output directory of a "
                "fine-tuned model of this task."
            )
        if self.distill_file is None:
            return
        if self.teacher_model is None:
            raise ConfigError("--distill_file is text only a teacher can label: give --teacher_model too.")
        if not os.path.isfile(self.distill_file):
            raise ConfigError(f"--distill_file {self.distill_file}: no such file.")
        if not self.distill_file.endswith(DISTILL_FORMATS):
            raise ConfigError(
                f"--distill_file {self.distill_file}: give a {' or '.join(DISTILL_FORMATS)} file (one text, or one "
                "JSON object, per line)."
            )
