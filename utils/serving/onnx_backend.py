"""The ONNX Runtime backend of `Predictor`: where an export lives in a model directory, which graph to run, and
`OnnxForward`, the forward callable with `TorchForward`'s contract (rows of token ids in, per length batch the row
indices and the graph's float32 CPU outputs by name out), so the tasks' windowing, offsets, document context and
decoding are one code path for every backend.

`export.py --model DIR [--quantize int8]` writes `DIR/onnx/`: `model.onnx` (fp32), `model_int8.onnx` (dynamic int8
weights) when asked, the tokenizer, `config.json` and `export_report.json` (utils/serving/onnx_export.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.core.errors import ConfigError
from utils.core.ordering import length_batches, pad_rows
from utils.core.task import ForwardBatch

logger = logging.getLogger(__name__)

ONNX_DIRECTORY = "onnx"  # inside a run's output directory
GRAPH_FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
REPORT_FILE = "export_report.json"

#: ONNX Runtime graph fusions left out: its CPU SkipLayerNormalization kernel is slower than Add + LayerNormalization
#: in onnxruntime 1.32 (CoNLL-2003 MiniLM, fp32: 429 against 381 sentences/s; see utils/serving/onnx_optimize.py).
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)

#: Backends whose results depend on the other inputs of a batch, and why (said in the log and in serve.py's /info).
#: The int8 graph runs its rows alone by default (`Predictor.from_pretrained`'s `row_parallel`), so that this is so
#: only when asked for.
BATCH_DEPENDENT = {
    "onnx-int8": "int8 activations are quantized with one scale per batch (dynamic quantization), so a borderline "
    "entity or label can change with the inputs an input shares its batch with (same entities as "
    "predict.py for 89% of single-sentence requests under load, docs/serving.md); onnx-fp32 and torch "
    "give the same result whatever the batch, and so does int8 with rows alone (the default)",
}

#: Backends by name: `auto` is an ONNX export when the directory holds one (int8 when exported), else PyTorch;
#: `onnx` is the int8 graph when there is one, else the fp32 one.
BACKENDS = ("auto", "torch", "onnx", "onnx-fp32", "onnx-int8")


def export_directory(directory: str | os.PathLike) -> Path | None:
    """Where `directory`'s ONNX export is: `directory/onnx/`, or `directory` itself when it is one; None if none."""
    path = Path(directory)
    for candidate in (path / ONNX_DIRECTORY, path):
        if any((candidate / name).is_file() for name in GRAPH_FILES.values()):
            return candidate
    return None


def has_torch_weights(directory: str | os.PathLike) -> bool:
    path = Path(directory)
    return any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))


def resolve_backend(directory: str | os.PathLike, backend: str) -> tuple[str, Path | None]:
    """The backend to run (`torch`, `onnx-fp32` or `onnx-int8`) and, for ONNX, the graph file; errors say what to
    do when the directory does not hold what was asked for."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend}: use one of {list(BACKENDS)}.")
    exported = export_directory(directory)
    if backend == "auto":
        if exported is None:
            return "torch", None
        backend = "onnx"
    if backend == "torch":
        return "torch", None
    if exported is None:
        raise ConfigError(
            f"--backend {backend}: '{directory}' holds no ONNX export ({ONNX_DIRECTORY}/"
            f"{GRAPH_FILES['fp32']}); run `python export.py --model {directory}` first, or use "
            "--backend torch."
        )
    if backend == "onnx":
        backend = "onnx-int8" if (exported / GRAPH_FILES["int8"]).is_file() else "onnx-fp32"
    graph = exported / GRAPH_FILES[backend.removeprefix("onnx-")]
    if not graph.is_file():
        hint = " --quantize int8" if backend == "onnx-int8" else ""
        raise ConfigError(
            f"--backend {backend}: {exported} has no {graph.name}; run `python export.py --model "
            f"{directory}{hint}`, or choose another --backend."
        )
    return backend, graph


def onnx_session(graph: str | os.PathLike, device: torch.device, threads: int | None = None):
    """An ONNX Runtime session on the CPU (or CUDA when asked and onnxruntime-gpu is installed), every graph
    optimisation on; `threads` intra-op threads (None: ONNX Runtime's default, one per physical core)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("The ONNX backend needs onnxruntime: pip install onnxruntime.") from None
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(
                f"--device {device} with the ONNX backend needs onnxruntime-gpu (this onnxruntime "
                f"has {ort.get_available_providers()}); use --device cpu or --backend torch."
            )
        options = {"device_id": device.index or 0}
        providers = [("CUDAExecutionProvider", options), "CPUExecutionProvider"]
    settings = ort.SessionOptions()
    settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    settings.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
    if threads:
        settings.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(
            str(graph), settings, providers=providers, disabled_optimizers=list(DISABLED_OPTIMIZERS)
        )
    except Exception as err:  # onnxruntime raises its own exception types (InvalidGraph, Fail, ...)
        raise ConfigError(f"Could not load the ONNX graph {graph}: {' '.join(str(err).split())}") from None


@contextmanager
def torch_on_one_thread() -> Iterator[None]:
    """Torch on one thread while ONNX Runtime runs the model, its own thread count back afterwards.

    ONNX Runtime's thread pool and torch's OpenMP pool each spin on every core; the torch work between two batches
    (softmax and argmax of the logits) is too small to gain from threads, and the two pools contending on the same
    cores slow both: 3,000 CoNLL-2003 sentences on 2 cores, int8 graph, batch 8: 5.5 s with torch's 2 threads, 3.7 s
    with one (batch 32: 3.6 s against 3.3 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class OnnxForward:
    """`TorchForward`'s contract on an ONNX Runtime session: `forward(inputs)` yields, per batch of at most
    `batch_size` rows of similar length (longest first), the row indices and the float32 CPU outputs by name, padded
    on the right. The graph's inputs are fed from `inputs` by name; a graph input the encoding did not give
    (token_type_ids) is zeros, as the model's own default.

    With `parallel_rows` (on a session of one intra-op thread), each row runs alone, that many at a time: no batch, no
    padding, so a dynamically quantized graph's activation scales are the row's own and its result never depends on
    other inputs. ONNX Runtime spreads a single small pass over cores poorly, so rows side by side on one thread each
    lose little (docs/serving.md, 2 cores, CoNLL-2003, int8: predict.py 604 against 735 sentences/s in sorted
    batches; the service under 64 clients 470 against 439 requests/s, every answer equal to predict.py's)."""

    session: Any = field(repr=False)
    batch_size: int
    pad_id: int = 0
    graph: str = ""
    parallel_rows: int = 0  # > 0: rows alone, this many at once (see above)

    def __post_init__(self) -> None:
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_names = [node.name for node in self.session.get_outputs()]
        self.pool = (
            ThreadPoolExecutor(self.parallel_rows, thread_name_prefix="onnx-row") if self.parallel_rows else None
        )

    def __call__(self, inputs: Mapping[str, Sequence[Sequence[int]]]) -> Iterator[ForwardBatch]:
        with torch_on_one_thread():
            yield from self.batches(inputs)

    def batches(self, inputs: Mapping[str, Sequence[Sequence[int]]]) -> Iterator[ForwardBatch]:
        groups = self.groups([len(row) for row in inputs["input_ids"]])
        if self.pool is not None:
            yield from self.pool.map(lambda batch: (batch, self.outputs(self.feeds(inputs, batch))), groups)
            return
        for batch in groups:
            yield batch, self.outputs(self.feeds(inputs, batch))

    def groups(self, lengths: Sequence[int]) -> list[list[int]]:
        """The row indices of each run of the graph, for rows of these lengths: one row a run with `parallel_rows`,
        else batches of similar length, longest first."""
        if self.parallel_rows:
            return [[index] for index in range(len(lengths))]
        return length_batches(lengths, self.batch_size)

    def feeds(self, inputs: Mapping[str, Sequence[Sequence[int]]], batch: Sequence[int]) -> dict[str, np.ndarray]:
        """The graph's inputs for the rows `batch`, padded on the right to the longest."""
        feeds = {}
        for name in self.input_names:
            if name in inputs:
                feeds[name] = pad_rows([inputs[name][i] for i in batch], self.pad_id if name == "input_ids" else 0)
            elif name == "token_type_ids":
                feeds[name] = np.zeros((len(batch), max(len(inputs["input_ids"][i]) for i in batch)), dtype=np.int64)
            else:
                raise ConfigError(
                    f"The ONNX graph {self.graph} takes '{name}', which this model's encoding does "
                    "not give; export it again with this version of export.py."
                )
        return feeds

    def outputs(self, feeds: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Every output of the graph by name, as the model's own outputs are named (the export keeps the names)."""
        values = self.session.run(self.output_names, feeds)
        return {
            name: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
            for name, value in zip(self.output_names, values, strict=True)
        }
