"""What a task plugs into the shared code: a `Task` record in three parts (data, training, serving), each a dataclass
of typed callables. The shared pipeline (utils/training/) and serving (utils/serving/) reach a task only through it:
no shared module compares task names, reads a task's result keys or options, or knows the shape of its outputs.

A new task is a new `Task` (utils/tasks/<name>/task.py, or anywhere: the one of tests/test_third_task.py trains,
predicts, serves and exports without a line of shared code changed).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from datasets import Dataset, DatasetDict

from utils.core.annotations.records import AnnotatedText
from utils.core.calibration import SplitScores
from utils.core.examples import Example
from utils.core.labels import LabelSpace

#: The checkout's root: the zero-argument runs' recipes and sample data are found from here, not the working dir.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: What a model's forward pass hands back per batch: the batch's row indices and the model's outputs by name
#: (float32 CPU tensors whose first axis is those rows; per-token outputs padded on the right to the batch's
#: longest row). `Forward` below is the callable that yields them.
ForwardBatch = tuple[list[int], Mapping[str, Any]]


class Forward(Protocol):
    """Runs a saved model: rows of token ids by input name (input_ids, attention_mask, token_type_ids; other keys
    are ignored) in, `ForwardBatch`es out (utils/serving/predictor.py: `TorchForward`; `OnnxForward` for ONNX)."""

    def __call__(self, inputs: Mapping[str, Sequence[Sequence[int]]]) -> Iterator[ForwardBatch]: ...


@dataclass(frozen=True)
class LoadedData:
    """A job's data as the task loaded it: the canonical splits, the user's data arguments exactly as given, and what
    loading settled (a record of the task's own, e.g. classification's detected problem type and label order; None
    when a task settles nothing). Settled values never go back into `args`."""

    raw: DatasetDict
    args: Any
    settled: Any = None


@dataclass(frozen=True)
class StageContext:
    """What a task's own stage works with."""

    model: Any
    tokenizer: Any
    data: LoadedData
    labels: LabelSpace
    training_args: Any


@dataclass(frozen=True)
class TaskStage:
    """A stage of the task's own that runs before the shared train stage (e.g. few-shot's contrastive phase), through
    `Trainer` like every other. `run` returns metrics to record under `name`; `produces_model`: the stage leaves a
    finished model (e.g. a zero-shot head), which the pipeline saves even when no train stage runs."""

    name: str
    run: Callable[[StageContext], Mapping[str, Any]]
    produces_model: bool = False


class TaskPrediction(Protocol):
    """A task's prediction object (built by `TaskServing.predictor`): results for checked inputs."""

    #: Whether an input's result depends on the other inputs of its document (callers keep documents whole).
    whole_documents: bool

    def predict(self, examples: Sequence[Example], uncertainty: bool = False) -> list[dict[str, Any]]:
        """One result (a JSON-able dict) per example, in order; `uncertainty`: each with `"uncertainty"` in [0, 1].
        Kinds of input the task does not take (see `TaskServing.input_kinds`) are refused with a `ConfigError`."""
        ...

    def settings(self) -> dict[str, Any]:
        """The options as resolved for this model (for the service's /info)."""
        ...


@dataclass(frozen=True)
class TaskData:
    """Files or the Hub -> the task's canonical splits -> labels -> model inputs."""

    arguments: type  # the task's data-arguments dataclass (flags and config keys)
    load: Callable[[Any, Any], LoadedData]  # (data_args, model_args): canonical, validated splits
    build_labels: Callable[[LoadedData, Any], LabelSpace]  # (data, model config): the label order
    check_labels: Callable[[LoadedData, LabelSpace], DatasetDict]  # eval/test labels unseen in training
    encode: Callable[[Dataset, Any, LabelSpace, LoadedData], Dataset]  # (split, tokenizer, labels, data)
    # refusals that need no data (data_args, training_args, flags given), before anything is loaded
    check_arguments: Callable[[Any, Any, set[str]], None] = field(default=lambda data_args, training_args, given: None)
    # tokenizer settings (model config, data_args; None: loading a saved model to predict)
    tokenizer_kwargs: Callable[[Any, Any], dict[str, Any]] = field(default=lambda config, data_args: {})


@dataclass(frozen=True)
class TaskDistillation:
    """How a task distils (utils/training/distillation.py): the teacher's outputs per unit of the task (a word, a
    text), and those units' targets laid on the student's own inputs, so teacher and student may tokenize apart."""

    # (teacher features, per-row teacher logits [tokens or 1, labels], examples): per example, its units' logits
    unit_logits: Callable[[Dataset, Sequence[Any], int], list]
    # (student features, per-example unit logits, labels): per feature row, soft labels: one item
    # [1 or 0 (has a teacher target), gold id or -100, teacher logits...] per output (token or text)
    soft_labels: Callable[[Dataset, Sequence[Any], int], list]
    # (path, data_args): a --distill_file's texts as the task's canonical rows without labels (streamed to disk)
    read_unlabelled: Callable[[str, Any], Dataset]
    check: Callable[[LoadedData], None] = field(default=lambda data: None)  # refusals (e.g. regression)


@dataclass(frozen=True)
class TaskTraining:
    """The model, how batches and losses are made, and how predictions become metrics and files."""

    auto_model: Any  # the model class `load_model` instantiates, unless `model_class` picks another
    peft_task_type: str  # peft's `TaskType` for LoRA adapters on this task's models
    token_outputs: bool  # one output per token: batches can be packed (utils/core/packing.py)
    # (tokenizer, data, pad_to: pad every batch to this length, or None for the longest): the data collator
    collator: Callable[[Any, LoadedData, int | None], Any]
    reduce_logits: Callable[[Any, Any], Any]  # `preprocess_logits_for_metrics`
    decode: Callable[[Any, Dataset, Dataset, LabelSpace, LoadedData], list]  # (predictions, features, raw split, ..)
    score: Callable[[list, Dataset, LabelSpace, LoadedData], tuple[dict[str, float], str]]  # (metrics, report)
    write_predictions: Callable[[str, Dataset, list, LabelSpace, LoadedData], list[str]]  # files written
    prediction_files: tuple[str, ...]  # every file `write_predictions` may write (--overwrite removes them)
    report_file: str = "classification_report.txt"  # per-label report of each scored split
    model_class: Callable[[LoadedData], Any] = field(default=lambda data: None)  # None: `auto_model`
    model_overrides: Callable[[LoadedData, LabelSpace], dict[str, Any]] = field(default=lambda data, labels: {})
    loss: Callable[[LoadedData, LabelSpace, Any], Callable | None] = field(
        default=lambda data, labels, training_args: None
    )  # `compute_loss_func`, or None for the model's own
    stages: Callable[[LoadedData], Sequence[TaskStage]] = field(default=lambda data: ())
    card_details: Callable[[LoadedData, LabelSpace], list[str]] = field(default=lambda data, labels: [])
    best_metric: Callable[[LoadedData], tuple[str, bool]] = field(default=lambda data: ("loss", False))
    distillation: TaskDistillation | None = None  # None: --teacher_model is refused for the task


@dataclass(frozen=True)
class TaskServing:
    """How a saved model of the task predicts: its options, the inputs it takes, its results, how exports compare."""

    options: type  # dataclass of the task's prediction options (flags of predict.py / serve.py; fields default)
    # kinds of `Example` the task takes: "text", "pair" (text + text_pair), "tokens" (pre-split words)
    input_kinds: frozenset[str]
    # (forward, tokenizer, config, labels, max_seq_length, options): the task's prediction object
    predictor: Callable[[Forward, Any, Any, LabelSpace, int, Any], TaskPrediction]
    label_names: Callable[[Any], list[str] | None]  # a saved config's label names; None: never fine-tuned
    decisions: Callable[[Mapping[str, Any]], list[Hashable]]  # what a result decides, per unit (export agreement)
    decision_unit: str  # what one decision is about, for the export report ("word", "text")
    architecture_suffix: str  # saved models of the task end so (models saved before `finetune_task` was written)
    annotation: Callable[[Mapping[str, Any]], AnnotatedText] | None = None  # a result as a pre-annotation
    # (result, --min_confidence, --abstain): the result with its units below the confidence withheld or flagged,
    # and how many there were under `utils.core.calibration.BELOW_MIN_CONFIDENCE`
    abstain: Callable[[dict[str, Any], float, str], dict[str, Any]] = field(
        default=lambda result, min_confidence, mode: result
    )


@dataclass(frozen=True)
class TaskCalibration:
    """How a task's confidences are calibrated (utils/training/calibration.py, docs/calibration.md): what one unit
    is, and a split's units from the task's prediction object built on the model without calibration."""

    unit: str  # what one confidence is about ("text", "entity")
    kept_metric: str  # what the risk-coverage table measures over the units kept ("accuracy", "precision")
    # (prediction, raw split, labels, data): the split's `SplitScores`
    scores: Callable[[TaskPrediction, Dataset, LabelSpace, LoadedData], SplitScores]
    # binary units whose score's log-odds also get a bias (Platt scaling: temperature and bias)
    bias: bool = False
    # the run asked for per-label thresholds (`--threshold auto`)
    wants_thresholds: Callable[[LoadedData], bool] = field(default=lambda data: False)


@dataclass(frozen=True)
class Task:
    """One task: its name and entry script, and the three parts above."""

    name: str
    script: str  # the entry script, as the model card's command names it
    pipeline_tag: str
    sample_config: str  # the zero-argument run's recipe: shipped sample data and settings that suit it
    data: TaskData
    training: TaskTraining
    serving: TaskServing
    training_defaults: Mapping[str, Any] = field(default_factory=dict)
    calibration: TaskCalibration | None = None  # None: the task's scores are not calibrated


#: The config attribute that records which task trained a model (how serving picks the task of a saved model).
TASK_CONFIG_KEY = "finetune_task"


def saved_task(config: Any, tasks: Sequence[Task]) -> Task | None:
    """The task that trained a saved model: the name its config records, else the end of its architecture's name."""
    recorded = getattr(config, TASK_CONFIG_KEY, None)
    if recorded is not None:
        return {task.name: task for task in tasks}.get(recorded)
    for architecture in getattr(config, "architectures", None) or []:
        for task in tasks:
            if architecture.endswith(task.serving.architecture_suffix):
                return task
    return None
