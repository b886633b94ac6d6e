"""Predictions of a saved fine-tuned model, whatever its task: `Predictor.from_pretrained(directory)`.

What every task shares lives here: loading a run's output directory (config, tokenizer, the model on its device),
telling the task that trained it (`utils.core.task.saved_task`, over `utils.tasks.registry.TASKS` or the tasks
given), the options every task has (batch size, max_seq_length within the model's limit), checking that inputs are
strings of a kind the task takes, and the forward pass: `TorchForward` runs the model on rows of token ids in batches
of similar length and hands back every output of the model by name. What a task knows (its options, how inputs
become model inputs, how outputs become results) is its prediction object, built by `task.serving.predictor`
(utils/tasks/*/predict.py) with the forward pass as a callable; `Predictor` delegates to it and reads none of its
results. Another backend is another forward callable with `TorchForward`'s contract, so the tasks' code stays one
path: ONNX Runtime's is `OnnxForward` (utils/serving/onnx_backend.py), picked by `from_pretrained(..., backend=...)`
or from what the directory holds.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from utils.core.arguments import ModelArguments
from utils.core.calibration import ABSTAIN_MODES, check_min_confidence
from utils.core.errors import ConfigError, DataError
from utils.core.examples import Example, taken_kinds
from utils.core.labels import LabelSpace, fine_tuned_labels
from utils.core.modeling import load_config, load_tokenizer
from utils.core.task import TASK_CONFIG_KEY, Task, TaskPrediction, saved_task
from utils.serving.onnx_backend import (
    BATCH_DEPENDENT,
    OnnxForward,
    export_directory,
    has_torch_weights,
    onnx_session,
    resolve_backend,
)
from utils.serving.torch_backend import DEFAULT_MAX_BATCH_TOKENS, packed_forward
from utils.tasks.registry import TASKS

logger = logging.getLogger(__name__)

#: What to point --model at, for the error messages.
RUN_DIRECTORY = "the --output_dir of a " + " or ".join(task.script for task in TASKS) + " run"


def model_task(config, directory: str, tasks: Sequence[Task] = TASKS) -> Task:
    """The task that trained a saved model (`saved_task`), or an error naming what the directory holds."""
    task = saved_task(config, tasks)
    if task is not None:
        return task
    if fine_tuned_labels(config) is None:
        raise ConfigError(
            f"The model in '{directory}' was never fine-tuned: its config has no label names (only "
            "LABEL_0, LABEL_1, ...) and names no task. Fine-tune it with "
            + " or ".join(task.script for task in tasks)
            + " and point --model at that run's "
            "--output_dir."
        )
    recorded = getattr(config, TASK_CONFIG_KEY, None)
    known = ", ".join(f"{task.name} ({task.serving.architecture_suffix})" for task in tasks)
    what = (
        f"was trained for the task {recorded!r}"
        if recorded
        else (f"has architectures {getattr(config, 'architectures', None) or []}")
    )
    raise ConfigError(f"Cannot tell the task of the model in '{directory}': it {what}, which is none of {known}.")


def resolve_device(device: str | torch.device) -> torch.device:
    """`auto` is the GPU when there is one, else the CPU; asking for a GPU that is not there is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU is available here; use --device cpu or auto.")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device} is not a device; use cpu, cuda, cuda:N or auto.") from None


def model_limit(tokenizer: PreTrainedTokenizerBase, config) -> int:
    """The most tokens one model input may hold (the tokenizer's limit, else the position embeddings')."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    limits = [limit for limit in limits if limit and limit < 100_000]  # tokenizers without a limit say 1e30
    return min(limits) if limits else 512


def settle_loaded_objects() -> None:
    """Collect what loading left as garbage, then move every object alive (the libraries, the model, the tokenizer)
    to the collector's permanent generation (`gc.freeze`). Why: Python's full collection traverses every tracked
    object, hundreds of thousands once torch and transformers are loaded, and the many small objects predictions
    make set one off every few thousand sentences: a pause in the middle of a request (docs/serving.md). Frozen
    objects are still freed when nothing refers to them; only reference cycles among them stay to the end."""
    gc.collect()
    gc.freeze()


def check_examples(examples: Sequence[Example], task: Task) -> None:
    """A service may hand in anything: only `Example`s of strings, of a kind the task takes."""
    if isinstance(examples, (str, Example)):
        raise DataError("expected a list of inputs, got one; wrap it in a list.")
    for index, example in enumerate(examples):
        if not isinstance(example, Example):
            raise DataError(f"input {index} is {type(example).__name__}, not an Example: {example!r:.80}")
        for what, value in (("text", example.text), ("text_pair", example.text_pair)):
            if not isinstance(value, str) and not (value is None and what == "text_pair"):
                raise DataError(f"{what} {index} is {type(value).__name__}, not a string: {value!r:.80}")
        if example.tokens is not None and not all(isinstance(token, str) for token in example.tokens):
            raise DataError(f"input {index}: every token must be a string, got {example.tokens!r:.80}")
        if example.kind not in task.serving.input_kinds:
            raise ConfigError(
                f"input {index} is {example.kind!r}, but this model ({task.name}) takes "
                f"{taken_kinds(task.serving.input_kinds)}."
            )


def as_examples(
    inputs: Sequence[Any], text_pairs: Sequence[Any] | None = None, documents: Sequence[Hashable | None] | None = None
) -> list[Example]:
    """Plain inputs as `Example`s: a string is a text, a list of strings a sentence of pre-split words; `text_pairs`
    and `documents` one per input."""
    if isinstance(inputs, str):
        raise DataError("expected a list of texts, got one string; wrap it in a list.")
    for name, extra in (("text pairs", text_pairs), ("document ids", documents)):
        if extra is not None and len(extra) != len(inputs):
            raise DataError(f"{len(inputs)} inputs but {len(extra)} {name}; give one per input.")
    examples = []
    for index, item in enumerate(inputs):
        document = None if documents is None else documents[index]
        pair = None if text_pairs is None else text_pairs[index]
        if isinstance(item, (list, tuple)):
            examples.append(Example(text=" ".join(map(str, item)), tokens=tuple(item), document=document))
        else:
            examples.append(Example(text=item, text_pair=pair, document=document))
    return examples


def task_options(task: Task, given: Sequence[Any] | Any = (), **by_name: Any) -> Any:
    """The task's options object (`task.serving.options`): the one of that type among `given` (e.g. every task's
    options parsed from predict.py's flags), else the defaults; then the named values that are its fields (the
    names of other tasks' options are left to them)."""
    kind = task.serving.options
    candidates = [given] if not isinstance(given, (list, tuple)) else list(given)
    options = next((item for item in candidates if isinstance(item, kind)), None) or kind()
    known = {item.name for item in dataclasses.fields(kind)}
    return dataclasses.replace(options, **{name: value for name, value in by_name.items() if name in known})


@dataclass(repr=False)
class Predictor:
    """A fine-tuned model ready to predict; build it with `Predictor.from_pretrained(directory)`.

    `task` is the model's `Task` (`task.name` says which); `options` the task's options object (its
    `task.serving.options` dataclass); `prediction` the task's prediction object, which makes the results."""

    model: PreTrainedModel | None  # None for an ONNX backend (its `forward` runs the graph)
    tokenizer: PreTrainedTokenizerBase
    task: Task
    labels: LabelSpace
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 32
    max_seq_length: int | None = None  # None: the model's limit
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS  # packed token-model inputs: most tokens per forward pass
    options: Any = None  # the task's options (None: its defaults)
    config: Any = None  # None: the model's
    backend: str = "torch"  # torch, onnx-fp32 or onnx-int8 (utils/serving/onnx_backend.py)
    forward: Any = None  # None: `TorchForward` on `model`; another backend's callable with its contract
    min_confidence: float | None = None  # units scored below it are withheld or flagged (`task.serving.abstain`)
    abstain: str = "withhold"  # or "flag"
    prediction: TaskPrediction = field(init=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch_size must be positive, got {self.batch_size}.")
        if self.max_batch_tokens < 1:
            raise ConfigError(f"--max_batch_tokens must be positive, got {self.max_batch_tokens}.")
        check_min_confidence(self.min_confidence)
        if self.abstain not in ABSTAIN_MODES:
            raise ConfigError(f"--abstain {self.abstain}: choose one of {', '.join(ABSTAIN_MODES)}.")
        if self.config is None:
            self.config = self.model.config
        if self.options is None:
            self.options = self.task.serving.options()
        limit = model_limit(self.tokenizer, self.config)
        self.max_seq_length = self.max_seq_length or limit
        if not 8 <= self.max_seq_length <= limit:
            raise ConfigError(
                f"--max_seq_length {self.max_seq_length} must be between 8 and the model's limit of {limit}."
            )
        # long texts are windowed or cut by the task's encoding, so the tokenizer's "longer than the maximum ...
        # will result in indexing errors" warning would only mislead; this is how it marks itself as shown
        warned = getattr(self.tokenizer, "deprecation_warnings", {})
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True
        if self.forward is None:
            self.forward = packed_forward(
                self.model,
                self.task.training.token_outputs,
                self.device,
                self.batch_size,
                self.max_batch_tokens,
                self.tokenizer.pad_token_id or 0,
            )
        self.prediction = self.task.serving.predictor(
            self.forward, self.tokenizer, self.config, self.labels, self.max_seq_length, self.options
        )

    def __repr__(self) -> str:
        return (
            f"Predictor(task={self.task.name!r}, labels={list(self.labels.names)}, backend={self.backend}, "
            f"device={self.device}, batch_size={self.batch_size}, max_seq_length={self.max_seq_length}, "
            f"options={self.options})"
        )

    @classmethod
    def from_pretrained(
        cls,
        directory: str,
        device: str | torch.device = "auto",
        batch_size: int = 32,
        max_seq_length: int | None = None,
        backend: str = "auto",
        threads: int | None = None,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        row_parallel: bool | None = None,
        options: Sequence[Any] | Any = (),
        tasks: Sequence[Task] = TASKS,
        min_confidence: float | None = None,
        abstain: str = "withhold",
        **option_values: Any,
    ) -> Predictor:
        """Load the model a fine-tuning run saved in `directory` (its `--output_dir`), in eval mode on `device`.

        `backend`: `torch`, `onnx` (the export's int8 graph when there is one, else fp32), `onnx-fp32`, `onnx-int8`,
        or `auto`: the ONNX export when the directory holds one (`export.py` writes `directory/onnx/`; `directory`
        may also be that folder itself), else PyTorch. `threads`: ONNX Runtime's intra-op threads (None: its
        default, one per physical core). `max_batch_tokens`: PyTorch token models that take packed rows (NER on BERT,
        RoBERTa, ...) run at most this many tokens per forward pass instead of `batch_size` padded rows.
        `row_parallel` (ONNX): each input row runs alone on a one-thread session, `threads` rows at a time (default:
        one per CPU), so that no result depends on its batchmates (`OnnxForward`); None (the default) is on for the
        int8 graph, whose dynamic quantization would otherwise make results depend on the batch, off otherwise.
        `max_seq_length` defaults to the model's limit. `min_confidence`: results' units (a text's label, an
        entity) whose calibrated confidence is below it are withheld, or only flagged with `abstain="flag"`.

        The task's own options: an object of its `task.serving.options` type among `options` (e.g. every task's
        options as predict.py parsed them), and/or its fields by name (`stride=64` for NER, `threshold=0.3` for
        classification); names of other tasks' options are ignored. `tasks`: the tasks a saved model may be of.
        """
        target = resolve_device(device)
        path = Path(directory)
        if not path.is_dir():
            raise ConfigError(f"Model directory '{directory}' does not exist. Point --model at {RUN_DIRECTORY}.")
        backend, graph = resolve_backend(directory, backend)
        if row_parallel is None:
            row_parallel = backend in BATCH_DEPENDENT
        if graph is not None:  # the export holds its own config and tokenizer
            directory, path = str(graph.parent), graph.parent
        elif row_parallel:
            raise ConfigError(
                "--row_parallel runs rows alone on ONNX Runtime; the PyTorch backend's results do not "
                "depend on the batch anyway: drop it, or choose an ONNX --backend."
            )
        elif not has_torch_weights(path) and export_directory(path) == path:
            raise ConfigError(
                f"--backend torch: '{directory}' holds only an ONNX export; point --model at the run's "
                "directory for PyTorch, or use --backend onnx."
            )
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"'{directory}' holds no config.json, so it is not a saved model. Point --model at {RUN_DIRECTORY}."
            )
        model_args = ModelArguments(model_name_or_path=str(directory))
        config = load_config(model_args)
        task = model_task(config, directory, tasks)
        names = task.serving.label_names(config)
        if names is None:
            raise ConfigError(
                f"The model in '{directory}' was never fine-tuned: its config has no label names (only "
                "LABEL_0, LABEL_1, ...). Fine-tune it with "
                + " or ".join(task.script for task in tasks)
                + " and point --model at that run's --output_dir."
            )
        tokenizer = load_tokenizer(model_args, **task.data.tokenizer_kwargs(config, None))
        model, forward = None, None
        if graph is None:
            try:
                model = task.training.auto_model.from_pretrained(str(directory), config=config)
            except OSError as err:
                raise ConfigError(f"Could not load the model weights from '{directory}': {err}") from None
            model.to(target).eval()
        else:
            workers = (threads or os.cpu_count() or 1) if row_parallel else 0
            forward = OnnxForward(
                onnx_session(graph, target, 1 if row_parallel else threads),
                batch_size,
                tokenizer.pad_token_id or 0,
                str(graph),
                parallel_rows=workers,
            )
        logger.info(
            "Loaded %s model from %s on %s with %s (labels: %s)",
            task.name,
            graph or directory,
            target,
            backend,
            ", ".join(names),
        )
        if backend in BATCH_DEPENDENT and not row_parallel:
            logger.warning("%s with --row_parallel false: %s.", backend, BATCH_DEPENDENT[backend])
        predictor = cls(
            model=model,
            tokenizer=tokenizer,
            task=task,
            labels=LabelSpace(tuple(names)),
            device=target,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            max_batch_tokens=max_batch_tokens,
            options=task_options(task, options, **option_values),
            config=config,
            backend=backend,
            forward=forward,
            min_confidence=min_confidence,
            abstain=abstain,
        )
        settle_loaded_objects()
        return predictor

    # ------------------------------------------------------------ public API: checked inputs, the task's results

    @property
    def batch_dependent(self) -> str | None:
        """Why a result can depend on the other inputs of its batch (`BATCH_DEPENDENT`), or None when it cannot."""
        return None if getattr(self.forward, "parallel_rows", 0) else BATCH_DEPENDENT.get(self.backend)

    @property
    def whole_documents(self) -> bool:
        """Whether an input's result depends on the other inputs of its document (so chunks keep documents whole)."""
        return bool(self.prediction.whole_documents)

    def settings(self) -> dict[str, Any]:
        """The settings results depend on: the shared ones, then the task's as its prediction object resolved them."""
        return {
            "max_seq_length": self.max_seq_length,
            "batch_size": self.batch_size,
            "row_parallel": getattr(self.forward, "parallel_rows", 0),
            "min_confidence": self.min_confidence,
            "abstain": self.abstain,
            **self.prediction.settings(),
        }

    def predict_examples(self, examples: Sequence[Example], uncertainty: bool = False) -> list[dict[str, Any]]:
        """One result per example, in order: the task's (what predict.py writes for each input). `uncertainty`: each
        result gets `"uncertainty"` in [0, 1], the task's measure of how unsure the model is, to choose what to
        label next."""
        check_examples(examples, self.task)
        if uncertainty:
            results = self.prediction.predict(examples, uncertainty=True)
        else:
            results = self.prediction.predict(examples)
        if self.min_confidence is None:
            return results
        return [self.task.serving.abstain(result, self.min_confidence, self.abstain) for result in results]

    def predict(
        self,
        inputs: Sequence[str | Sequence[str]],
        text_pairs: Sequence[str] | None = None,
        documents: Sequence[Hashable | None] | None = None,
        uncertainty: bool = False,
    ) -> list[dict[str, Any]]:
        """`predict_examples` on plain inputs: a string is a text, a list of strings a sentence of pre-split words;
        `text_pairs` (models of sentence pairs) and `documents` (models trained with document context) one per
        input."""
        return self.predict_examples(as_examples(inputs, text_pairs, documents), uncertainty)
