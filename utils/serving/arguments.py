"""The options of predict.py, serve.py and export.py (`HfArgumentParser` dataclasses; a YAML/JSON config works too).

`PredictorArguments` are what loading a `Predictor` takes, written once for the two scripts that load one; each script
adds its own dataclass beside it. serve.py's forward passes default to fewer inputs (`ServePredictorArguments`). The
tasks' own prediction options (`task.serving.options`: NER's --stride, classification's --threshold, ...) are parsed
beside them and handed to the loaded model's task (`parse_script_args`).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import transformers

from utils.core.calibration import check_min_confidence
from utils.core.errors import ConfigError
from utils.core.parsing import parse_args
from utils.serving.annotation_output import OUTPUT_FORMATS
from utils.serving.inputs import INPUT_FORMATS
from utils.serving.onnx_backend import BACKENDS
from utils.serving.onnx_export import QUANTIZATIONS
from utils.serving.predictor import Predictor
from utils.serving.torch_backend import DEFAULT_MAX_BATCH_TOKENS
from utils.tasks.registry import TASKS

MODEL_HELP = "Directory of a fine-tuned model: a run's --output_dir."

#: uvicorn's HTTP implementations and event loops; `auto` takes the C ones (httptools, uvloop: uvicorn[standard])
#: when installed, else the pure-Python h11 and asyncio.
HTTP = ("auto", "h11", "httptools")
LOOPS = ("auto", "asyncio", "uvloop")
FAST_SERVER_PACKAGES = ("httptools", "uvloop")


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


#: Libraries that log a line per step at INFO (onnxscript: per rewrite rule and pass while exporting).
CHATTY_LOGGERS = ("onnxscript", "onnx_ir")


def task_option_types() -> tuple[type, ...]:
    """Every task's prediction options, each once (flags of predict.py and serve.py)."""
    return tuple(dict.fromkeys(task.serving.options for task in TASKS))


def parse_script_args(types: Sequence[type], argv: Sequence[str] | None) -> tuple[Any, ...]:
    """A serving script's options (flags, or a config file with flag overrides), then logging to stderr: stdout may
    carry the results (predict.py --output -). With `PredictorArguments` among `types`, the tasks' prediction
    options are parsed too and kept in its `task_options` (the loaded model's task takes its own)."""
    options = task_option_types() if any(issubclass(kind, PredictorArguments) for kind in types) else ()
    parsed, _ = parse_args((*types, *options), argv)
    parsed = tuple(parsed)
    for item in parsed[: len(types)]:
        if isinstance(item, PredictorArguments):
            item.task_options = parsed[len(types) :]
    parsed = parsed[: len(types)]
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        level=logging.INFO,
    )
    transformers.utils.logging.disable_progress_bar()
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)
    return parsed


@dataclass
class PredictorArguments:
    """The model to predict with and how (predict.py and serve.py)."""

    model_name_or_path: str = field(metadata={"help": MODEL_HELP, "aliases": ["--model"]})
    backend: str = field(
        default="auto",
        metadata={
            "help": "torch, onnx (the export's int8 graph if any, else fp32), onnx-fp32, "
            "onnx-int8, or auto: the ONNX export (export.py) when the model directory holds "
            "one, else torch.",
            "choices": list(BACKENDS),
        },
    )
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:N, or auto (a GPU when there is one)."})
    batch_size: int = field(default=32, metadata={"help": "Model inputs per forward pass."})
    max_batch_tokens: int = field(
        default=DEFAULT_MAX_BATCH_TOKENS,
        metadata={
            "help": "NER with PyTorch on BERT, RoBERTa, XLM-R, CamemBERT or ELECTRA: inputs are packed end to "
            "end (no padding), at most this many tokens per forward pass, instead of --batch_size rows."
        },
    )
    max_seq_length: int | None = field(
        default=None,
        metadata={
            "help": "Most tokens per model input (default: the model's limit). NER windows longer "
            'texts; classification cuts them and marks the result "truncated": true.'
        },
    )
    threads: int | None = field(
        default=None,
        metadata={
            "help": "Intra-op threads of ONNX Runtime and torch "
            "(default: one per core); with --row_parallel, rows at once."
        },
    )
    row_parallel: bool | None = field(
        default=None,
        metadata={
            "help": "ONNX backends: run each input row alone (no batch, no padding), rows in parallel on one "
            "thread each, so that no result depends on its batchmates. Default: on for the int8 graph, whose "
            "dynamic quantization would otherwise scale each batch's activations together (so a result would "
            "depend on the other inputs of its batch), off for fp32; --row_parallel false batches int8 rows "
            "too: faster over a whole file, but results then depend on batchmates (docs/serving.md).",
            "nargs": "?",  # a bare --row_parallel is true, as for the other flags
            "const": True,
        },
    )

    min_confidence: float | None = field(
        default=None,
        metadata={
            "help": "Withhold what the model is less sure of than this calibrated probability: a text's label "
            "(the result's label becomes null) or an entity (dropped); each result counts or marks what it "
            "withheld (docs/calibration.md: the risk-coverage table helps choose it)."
        },
    )
    abstain: str = field(
        default="withhold",
        metadata={
            "help": "What --min_confidence does below it: withhold, or flag (kept, marked abstained).",
            "choices": ["withhold", "flag"],
        },
    )

    def __post_init__(self) -> None:
        check_min_confidence(self.min_confidence)
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be positive, got {self.threads}.")
        self.task_options: tuple[Any, ...] = ()  # every task's prediction options (`parse_script_args`)

    def load(self) -> Predictor:
        """The `Predictor` these options describe."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return Predictor.from_pretrained(
            self.model_name_or_path,
            device=self.device,
            batch_size=self.batch_size,
            max_seq_length=self.max_seq_length,
            backend=self.backend,
            threads=self.threads,
            max_batch_tokens=self.max_batch_tokens,
            row_parallel=self.row_parallel,
            options=self.task_options,
            min_confidence=self.min_confidence,
            abstain=self.abstain,
        )


@dataclass
class PredictArguments:
    """predict.py's own options: where the inputs come from and what the output is."""

    input: str = field(metadata={"help": "Input file, or - for stdin."})
    output: str = field(default="-", metadata={"help": "Output JSONL file, or - for stdout."})
    text_field: str = field(default="text", metadata={"help": "JSONL input: the field holding the text."})
    input_format: str = field(
        default="auto",
        metadata={"help": "auto: from the file suffix, else from its content.", "choices": list(INPUT_FORMATS)},
    )
    document_field: str = field(
        default="document_id",
        metadata={"help": "JSONL input: the field naming the document a line belongs to (NER document context)."},
    )
    output_format: str = field(
        default="jsonl",
        metadata={
            "help": "jsonl (predict.py's own lines), or pre-annotations for an annotation tool: label-studio (a "
            "JSON list of tasks with `predictions`: model_version, score, one result per entity or the chosen "
            "labels) or doccano (JSONL with `label`); character offsets into each input text, and each "
            "text's `uncertainty`.",
            "choices": list(OUTPUT_FORMATS),
        },
    )
    select_uncertain: int | None = field(
        default=None,
        metadata={
            "help": "Write only the N inputs the model is least sure about (NER: 1 - the smallest word "
            "margin; classification: normalised entropy), most uncertain first, each with its uncertainty "
            "and input_line: what to label next."
        },
    )
    model_version: str | None = field(
        default=None,
        metadata={"help": "Label Studio: the predictions' model_version (default: the model directory's name)."},
    )
    from_name: str = field(
        default="label",
        metadata={
            "help": "Label Studio: the control tag's name in the labelling "
            "config (<Labels name=...> or <Choices name=...>)."
        },
    )
    to_name: str = field(default="text", metadata={"help": "Label Studio: the object tag's name (<Text name=...>)."})

    def __post_init__(self) -> None:
        if self.select_uncertain is not None and self.select_uncertain < 1:
            raise ConfigError(f"--select_uncertain must be a positive number of texts, got {self.select_uncertain}.")


@dataclass
class ServePredictorArguments(PredictorArguments):
    """serve.py's model options: predict.py's, with smaller forward passes."""

    batch_size: int = field(
        default=8,
        metadata={
            "help": "Model inputs per forward pass (ONNX backends, and PyTorch models whose inputs "
            "are not packed: see --max_batch_tokens). Smaller than predict.py's 32: a gathered "
            "batch holds a few dozen texts of any length, and forward passes of 8 similar lengths "
            "pad less (64 clients, int8: 1.45x the requests/s of 32; docs/serving.md)."
        },
    )


@dataclass
class ServeArguments:
    """serve.py's own options: where it listens, how it gathers requests, what one request may hold."""

    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (loopback by default)."})
    port: int = field(default=8000, metadata={"help": "Port to listen on."})
    model_name: str | None = field(
        default=None,
        metadata={
            "help": "The model's name in the Open Inference Protocol routes (/v2/models/NAME/infer); default: the "
            "model directory's basename."
        },
    )
    max_batch_size: int = field(default=64, metadata={"help": "Most inputs gathered into one model call."})
    max_wait_ms: float = field(default=5.0, metadata={"help": "Longest wait for batchmates of a request (ms)."})
    max_texts_per_request: int = field(default=256, metadata={"help": "Most texts (or sentences) per request."})
    max_chars_per_text: int = field(default=20_000, metadata={"help": "Most characters per text."})
    shutdown_grace_seconds: float | None = field(
        default=None,
        metadata={
            "help": "SIGTERM / Ctrl-C: how long the requests in flight may go on before they are answered 503 and "
            "the model's work stops. Default: enough for the largest request the limits allow, from the time the "
            "loaded model takes on a text of --max_chars_per_text characters at start (twice that for "
            "--max_texts_per_request texts, plus 5 s)."
        },
    )
    log_level: str = field(
        default="info",
        metadata={"help": "uvicorn's log level.", "choices": ["critical", "error", "warning", "info", "debug"]},
    )
    access_log: bool = field(default=False, metadata={"help": "Log every request."})
    http: str = field(
        default="auto",
        metadata={
            "help": "uvicorn's HTTP implementation (auto: httptools when installed, else h11).",
            "choices": list(HTTP),
        },
    )
    loop: str = field(
        default="auto",
        metadata={"help": "uvicorn's event loop (auto: uvloop when installed, else asyncio).", "choices": list(LOOPS)},
    )

    def __post_init__(self) -> None:
        if self.http == "auto":
            self.http = "httptools" if installed("httptools") else "h11"
        if self.loop == "auto":
            self.loop = "uvloop" if installed("uvloop") else "asyncio"
        for flag, value in (("--http", self.http), ("--loop", self.loop)):
            if value in FAST_SERVER_PACKAGES and not installed(value):
                raise ConfigError(
                    f"{flag} {value}: {value} is not installed; pip install 'uvicorn[standard]' (it "
                    "is in requirements.txt), or use auto."
                )
        for name in ("max_batch_size", "max_texts_per_request", "max_chars_per_text"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be positive, got {getattr(self, name)}.")
        if self.max_wait_ms < 0:
            raise ConfigError(f"--max_wait_ms must be 0 or more, got {self.max_wait_ms}.")
        if self.shutdown_grace_seconds is not None and not 0 <= self.shutdown_grace_seconds < 86_400:
            raise ConfigError(
                f"--shutdown_grace_seconds must be 0 or more seconds (under a day), got {self.shutdown_grace_seconds}."
            )
        if self.model_name is not None and (not self.model_name or "/" in self.model_name):
            raise ConfigError(f"--model_name {self.model_name!r} must be a non-empty name without '/'.")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"--port {self.port} is not a port number (0-65535).")


@dataclass
class ExportArguments:
    """export.py's options."""

    model_name_or_path: str = field(metadata={"help": MODEL_HELP, "aliases": ["--model"]})
    quantize: str | None = field(
        default=None, metadata={"help": "Also write a dynamically quantized graph.", "choices": list(QUANTIZATIONS)}
    )
    validation_file: str | None = field(
        default=None,
        metadata={
            "help": "Inputs to validate on (predict.py's formats: text, JSONL, CoNLL; or a "
            "TSV/CSV table with a header). Default: 150 built-in English texts (about 3,200 words: news, "
            "reviews, headlines), as pre-split words for NER, so that its agreement is per word."
        },
    )
    text_field: str = field(default="text", metadata={"help": "The text field (JSONL) or column (TSV/CSV)."})
    max_validation_examples: int | None = field(default=None, metadata={"help": "Validate on the first N inputs."})
    atol: float = field(default=1e-3, metadata={"help": "Largest absolute fp32 logit difference from PyTorch."})
    min_agreement: float = field(
        default=0.98,
        metadata={
            "help": "Least fraction of words (NER) or texts whose prediction must equal PyTorch's, for the fp32 graph."
        },
    )
    min_quantized_agreement: float = field(
        default=0.95,
        metadata={
            "help": "The same for the int8 graph: lower, as int8 moves borderline predictions "
            "both ways (see utils/serving/onnx_export.py)."
        },
    )
    batch_size: int = field(default=32, metadata={"help": "Model inputs per forward pass while validating."})
    opset: int | None = field(default=None, metadata={"help": "ONNX opset (default: the exporter's)."})
