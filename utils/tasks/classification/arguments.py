"""Classification's data options: text columns, problem type, class weights, truncation; zero- and few-shot."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from utils.core.arguments import DataArguments, split_names
from utils.core.errors import ConfigError
from utils.core.losses import MULTI, REGRESSION, SINGLE

logger = logging.getLogger(__name__)

CONTRASTIVE, FINETUNE = "contrastive", "finetune"

WARMUP_RATIO = 0.1  # SetFit's default for the contrastive phase

#: The GLUE tasks of the transformers example run_glue.py (`--task_name`): text columns, label names in GLUE's id
#: order (None: regression) and the metrics GLUE reports, as the `glue` metric of `evaluate` computes them.
GLUE_DATASET = "nyu-mll/glue"
GLUE_TASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None, tuple[str, ...]]] = {
    "cola": (("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",)),
    "mnli": (("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("accuracy",)),
    "mrpc": (("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("accuracy", "f1")),
    "qnli": (("question", "sentence"), ("entailment", "not_entailment"), ("accuracy",)),
    "qqp": (("question1", "question2"), ("not_duplicate", "duplicate"), ("accuracy", "f1")),
    "rte": (("sentence1", "sentence2"), ("entailment", "not_entailment"), ("accuracy",)),
    "sst2": (("sentence",), ("negative", "positive"), ("accuracy",)),
    "stsb": (("sentence1", "sentence2"), None, ("pearson", "spearmanr")),
    "wnli": (("sentence1", "sentence2"), ("not_entailment", "entailment"), ("accuracy",)),
}
#: MNLI has two validation and test sets; like run_glue.py we validate on the matched ones (the mismatched ones:
#: --validation_split_name validation_mismatched --test_split_name test_mismatched).
GLUE_SPLITS = {"mnli": {"validation_split_name": "validation_matched", "test_split_name": "test_matched"}}

#: `--metric_name` values, by the problem types they apply to: the names of the `evaluate` metrics the example loads
#: (what it writes as `eval_<name>`), and our own spellings of the correlations.
METRIC_NAMES: dict[str, tuple[str, ...]] = {
    SINGLE: ("accuracy", "f1", "precision", "recall", "matthews_correlation", "mcc"),
    MULTI: ("accuracy", "f1", "precision", "recall"),
    REGRESSION: ("mse", "mae", "pearson", "pearsonr", "spearman", "spearmanr"),
}
#: Which of them are lower-is-better (for the default --metric_for_best_model).
LOWER_IS_BETTER = {"mse", "mae"}


@dataclass
class FewShotArguments:
    """Zero-shot and few-shot options (mixed into the classification data arguments)."""

    zero_shot: bool = field(
        default=False,
        metadata={
            "help": "No training: each text gets the label whose description is most similar (cosine of "
            "mean-pooled embeddings). The train split, if given, is not used."
        },
    )
    label_descriptions: str | None = field(
        default=None,
        metadata={
            "help": "Zero-shot: YAML/JSON mapping of label name to a description (or a list of them, "
            "averaged); its order is the label order. Default: the label names themselves."
        },
    )
    few_shot_k: int | None = field(
        default=None, metadata={"help": "Train on K examples per label, sampled (stratified) from the train split."}
    )
    few_shot_method: str = field(
        default=CONTRASTIVE,
        metadata={
            "help": "contrastive: SetFit-style pair training of the encoder, then a fitted head; finetune: "
            "the ordinary recipe on the K-shot sample.",
            "choices": [CONTRASTIVE, FINETUNE],
        },
    )
    few_shot_seed: int = field(default=42, metadata={"help": "Seed of the K-shot sample and of the pairs."})
    few_shot_iterations: int = field(
        default=20,
        metadata={
            "help": "Contrastive: pair-generation rounds; each gives every example one positive and one negative pair."
        },
    )
    few_shot_max_pairs: int | None = field(
        default=None, metadata={"help": "Contrastive: at most this many pairs (half positive, half negative)."}
    )
    few_shot_batch_size: int = field(
        default=16, metadata={"help": "Contrastive: pairs per step and process (as --per_device_train_batch_size)."}
    )
    few_shot_learning_rate: float = field(default=2e-5, metadata={"help": "Contrastive: encoder learning rate."})
    few_shot_epochs: int = field(default=1, metadata={"help": "Contrastive: passes over the pairs."})

    def check_few_shot(self) -> None:
        if self.zero_shot and self.few_shot_k:
            raise ConfigError("--zero_shot and --few_shot_k exclude each other: zero-shot trains on nothing.")
        if self.label_descriptions and not self.zero_shot:
            raise ConfigError("--label_descriptions is for --zero_shot; add --zero_shot or drop it.")
        if self.few_shot_k is not None and self.few_shot_k < 1:
            raise ConfigError(f"--few_shot_k must be a positive number of examples per label, got {self.few_shot_k}.")
        if self.few_shot_k == 1 and self.few_shot_method == CONTRASTIVE:
            raise ConfigError(
                "--few_shot_k 1 gives no same-label pairs for contrastive training; use K >= 2 or "
                "--few_shot_method finetune."
            )
        for name in ("few_shot_iterations", "few_shot_batch_size", "few_shot_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if self.few_shot_max_pairs is not None and self.few_shot_max_pairs < 2:
            raise ConfigError(f"--few_shot_max_pairs must be at least 2, got {self.few_shot_max_pairs}.")
        if not self.few_shot_learning_rate >= 0 or self.few_shot_learning_rate == float("inf"):  # nan fails >=
            raise ConfigError(
                f"--few_shot_learning_rate {self.few_shot_learning_rate}: must be a finite number of 0 "
                "or more, such as 2e-5."
            )

    @property
    def contrastive(self) -> bool:
        return bool(self.few_shot_k) and self.few_shot_method == CONTRASTIVE


@dataclass
class ClassificationDataArguments(DataArguments, FewShotArguments):
    """Classification-specific data options (zero-shot and few-shot ones in `FewShotArguments`)."""

    task_name: str | None = field(
        default=None,
        metadata={
            "help": "A GLUE task, as in run_glue.py: " + ", ".join(GLUE_TASKS) + ". Loads the Hub dataset "
            f"{GLUE_DATASET} (unless data files or --dataset_name are given) and sets the task's text columns, "
            "label names, problem type (stsb: regression) and metrics."
        },
    )
    text_column_names: str | None = field(
        default=None,
        metadata={
            "help": "Text column, or two comma-separated columns encoded as a sentence pair "
            "(default: the one text column of each split). Three or more columns, or any columns with "
            "--text_column_delimiter, are joined into one text."
        },
    )
    text_column_delimiter: str | None = field(
        default=None,
        metadata={
            "help": "Join the --text_column_names columns into one text with this string, as "
            "run_classification.py does (its default ' ' applies to three or more columns; \\n and \\t "
            "are a newline and a tab). Not given: two columns are encoded as a real pair."
        },
    )
    problem_type: str | None = field(
        default=None,
        metadata={
            "help": "Override the type detected from the labels.",
            "choices": ["single_label", "multi_label", "regression", SINGLE, MULTI],
        },
    )
    do_regression: bool = field(  # typed bool with a None default, as in the example: a bare --do_regression is true
        default=None,
        metadata={
            "help": "run_classification.py's switch: true is --problem_type regression (integer labels become "
            "scores); false keeps numeric labels as classes. Default: detected from the labels."
        },
    )
    metric_name: str | None = field(
        default=None,
        metadata={
            "help": "Metric(s) to report as eval_<name>/predict_<name> beside ours, and the default "
            "--metric_for_best_model: one of, or a comma-separated list of, accuracy, f1, precision, recall, "
            "matthews_correlation (single- and multi-label; f1/precision/recall are binary with two labels, "
            "macro with more, micro for multi-label), mse, mae, pearson(r), spearman(r) (regression). Several "
            "also give <split>_combined_score, their mean, as the examples do."
        },
    )
    label_delimiter: str = field(default=",", metadata={"help": "Separator of multi-label names in one string."})
    threshold: str = field(
        default="0.5",
        metadata={
            "help": "Multi-label: probability above which a label is on, or 'auto': one per label, chosen on "
            "validation to maximise micro-F1 after training and saved with the model (0.5 until then)."
        },
    )
    class_weights: str = field(
        default="none",
        metadata={
            "help": "Weighted loss: 'none', 'auto' (inverse class frequency in training), or one weight per "
            "label in label order, e.g. 1,3.5."
        },
    )
    truncation_side: str = field(
        default="right", metadata={"help": "Which end of a too-long text to cut.", "choices": ["right", "left"]}
    )
    static_student_dims: int | None = field(
        default=None,
        metadata={
            "help": "Train a static student instead of a transformer: token vectors of D dimensions distilled from "
            "--model's encoder, averaged, and a linear head; use with --teacher_model (docs/distillation.md)."
        },
    )

    def __post_init__(self) -> None:
        self.settle_glue_task()
        self.settle_regression_switch()
        super().__post_init__()
        self.check_few_shot()
        if self.threshold != "auto":  # a number, as a config file or the code that passed it meant it
            self.threshold = fixed_threshold(self)
        for name in split_names(self.metric_name):
            if not any(name in names for names in METRIC_NAMES.values()):
                known = sorted({n for names in METRIC_NAMES.values() for n in names})
                raise ConfigError(f"--metric_name {name}: not a metric we compute; choose from {known}.")
        if self.text_column_names is not None and not self.text_columns:
            raise ConfigError(f"--text_column_names {self.text_column_names!r} names no column.")
        if self.static_student_dims is not None and self.static_student_dims < 1:
            raise ConfigError(f"--static_student_dims must be 1 or more, got {self.static_student_dims}.")

    def settle_glue_task(self) -> None:
        """--task_name: the GLUE task's dataset (when no data is given), split names, text columns and problem type;
        anything given explicitly is kept. Idempotent (dataclasses.replace runs it again)."""
        if self.task_name is None:
            return
        self.task_name = self.task_name.lower()
        if self.task_name not in GLUE_TASKS:
            raise ConfigError(
                f"--task_name {self.task_name}: not a GLUE task; choose from {', '.join(GLUE_TASKS)} "
                "(or drop it and give --dataset_name or data files)."
            )
        columns, names, _ = GLUE_TASKS[self.task_name]
        if not self.dataset_name and not any((self.train_file, self.validation_file, self.test_file)):
            self.dataset_name, self.dataset_config_name = GLUE_DATASET, self.task_name
        if self.dataset_name == GLUE_DATASET:
            for flag, split in GLUE_SPLITS.get(self.task_name, {}).items():
                if getattr(self, flag) is None:
                    setattr(self, flag, split)
        if self.text_column_names is None:
            self.text_column_names = ",".join(columns)
        if names is None and self.problem_type is None and self.do_regression is None:
            self.problem_type = REGRESSION

    def settle_regression_switch(self) -> None:
        """--do_regression true is --problem_type regression; both given must agree."""
        if self.do_regression is None:
            return
        problem = PROBLEM_TYPES.get(self.problem_type, self.problem_type)
        if self.do_regression and problem not in (None, REGRESSION):
            raise ConfigError(f"--do_regression true contradicts --problem_type {self.problem_type}; give one.")
        if not self.do_regression and problem == REGRESSION:
            raise ConfigError("--do_regression false contradicts --problem_type regression; give one.")
        if self.do_regression:
            self.problem_type = REGRESSION

    @property
    def text_columns(self) -> list[str] | None:
        """The --text_column_names, or None."""
        return split_names(self.text_column_names) or None

    @property
    def joined_text(self) -> bool:
        """Whether the text columns are joined into one text (three or more, or a delimiter given) rather than
        encoded alone or as a pair."""
        columns = self.text_columns or []
        return len(columns) > 2 or (len(columns) > 1 and self.text_column_delimiter is not None)

    @property
    def text_delimiter(self) -> str:
        """--text_column_delimiter with \\n and \\t read as a newline and a tab (run_classification.py's default:
        a space)."""
        if self.text_column_delimiter is None:
            return " "
        return self.text_column_delimiter.replace("\\n", "\n").replace("\\t", "\t")

    @property
    def metric_names(self) -> list[str]:
        """The extra metrics asked for: --metric_name, else the GLUE task's."""
        if self.metric_name:
            return split_names(self.metric_name)
        return list(GLUE_TASKS[self.task_name][2]) if self.task_name else []


#: --problem_type spellings to the loss names.
PROBLEM_TYPES = {"single_label": SINGLE, "multi_label": MULTI}


def check_classification_arguments(data_args: ClassificationDataArguments, training_args, given: set[str]) -> None:
    """Refusals that need the training flags too: zero-shot saves a model but never trains."""
    if data_args.zero_shot and "do_train" in given and training_args.do_train:
        raise ConfigError(
            "--zero_shot does not train: drop --do_train (or use --few_shot_k K to train on K examples per label)."
        )


def writes_model_without_training(data_args: ClassificationDataArguments) -> bool:
    """Zero-shot writes a model to output_dir without a train stage (so the directory is protected as for one)."""
    return data_args.zero_shot


def fixed_threshold(data_args) -> float:
    """--threshold as a probability ('auto': 0.5 until the per-label thresholds are chosen after training)."""
    if data_args.threshold == "auto":
        return 0.5
    try:
        value = float(data_args.threshold)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 <= value <= 1:  # nan too: no probability is above it, so no label would ever be on
        raise ConfigError(f"--threshold {data_args.threshold}: must be a probability in [0, 1], such as 0.5, or auto.")
    return value
