"""`export.py`: a fine-tuned run's model as ONNX graphs (fp32, and dynamic int8 when asked), validated on real inputs
before they are installed in `DIR/onnx/`.

The exporter is PyTorch's own `torch.onnx.export(dynamo=True)` (torch.export + onnxscript): optimum's ONNX exporter
now lives in `optimum-onnx`, whose releases require transformers < 4.58, and this project runs transformers 5. The
graph takes the model's inputs (input_ids, attention_mask, token_type_ids when the tokenizer gives them) with dynamic
batch and sequence axes and returns every output of the model by its name (a classifier's `logits`); onnxscript's ONNX
Runtime fusions then turn attention, GELU and layer norms into ONNX Runtime's fused ops
(utils/serving/onnx_optimize.py: what, and why each step). int8 is ONNX Runtime's dynamic quantization (int8 weights
of every MatMul and fused Attention, activations quantized on the fly), the classification head left in fp32.

Validation runs the same inputs (the validation file, or 150 built-in texts, one longer than a window, as pre-split
words for models that take them, so that NER agreement is per word) through
`Predictor` with the PyTorch model and with each graph, on one code path, recording every row's outputs: the report
gives the largest absolute output difference over real tokens and how often the results' decisions agree with
PyTorch's (what a result decides is the task's: `task.serving.decisions`, e.g. per word for NER, per text for
classification) and per example. An export whose fp32 logits differ by more than `atol`, whose fp32
agreement is below `min_agreement`, or whose int8 agreement is below `min_quantized_agreement`, is an error and
nothing is installed. The int8 bound is looser because int8 moves borderline predictions both ways: on SST-2 dev the
int8 graph agrees with PyTorch on 97.8% of the texts and is as accurate (0.870 against 0.865); the bound is there to
catch a broken graph, and the accuracy to judge by is measured with gold labels (benchmarks/export_accuracy.py).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from utils.core.errors import ConfigError
from utils.core.files import umask_mode, write_json
from utils.core.task import Task
from utils.serving.export_validation import check_report, compare, run_backend, validation_examples
from utils.serving.onnx_backend import GRAPH_FILES, ONNX_DIRECTORY, REPORT_FILE
from utils.serving.onnx_optimize import optimize_graph
from utils.serving.predictor import Predictor
from utils.serving.torch_backend import MODEL_INPUTS
from utils.tasks.registry import TASKS

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("int8",)
QUANTIZED_OPS = ("MatMul", "Gemm", "Attention")  # Attention (fused, see onnx_optimize.py) becomes QAttention


class ExportWrapper(torch.nn.Module):
    """The model with its inputs as positional tensors and its outputs (`names`, the tensors of its output but the
    loss) as a tuple, so the graph's outputs carry the model's own names."""

    def __init__(self, model: torch.nn.Module, names: Sequence[str]):
        super().__init__()
        self.model, self.names = model, tuple(names)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        given = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
        outputs = self.model(input_ids=input_ids, **{k: v for k, v in given.items() if v is not None})
        return tuple(outputs[name] for name in self.names)


def output_names(model: torch.nn.Module, sample: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the model's tensor outputs (what `TorchForward` hands the task), in the model's order."""
    with torch.no_grad():
        outputs = model(**sample)
    return [name for name, value in outputs.items() if torch.is_tensor(value) and name != "loss"]


def graph_inputs(tokenizer) -> list[str]:
    """The model inputs the tokenizer gives (the order of `MODEL_INPUTS`)."""
    given = set(tokenizer("a b")) & set(tokenizer.model_input_names)
    return [name for name in MODEL_INPUTS if name in given]


def export_graph(model: torch.nn.Module, tokenizer, path: Path, opset: int | None = None) -> dict[str, Any]:
    """Write the fp32 graph of `model` to `path`; returns what the report says about it."""
    names = graph_inputs(tokenizer)
    sample = tokenizer(
        ["Angela Merkel met Emmanuel Macron in Paris .", "Kyoto is in Japan ."], padding=True, return_tensors="pt"
    )
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic = {name: {0: batch, 1: sequence} for name in names}
    outputs = output_names(model.eval(), {name: sample[name] for name in names})
    wrapper = ExportWrapper(model, outputs).eval()
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    started = time.perf_counter()
    # "torchvision is not installed. Skipping torchvision::nms" and the like: true, and of no concern here
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # "The axis name: batch will not be used, since it shares the same shape constraints with another axis"
            warnings.filterwarnings("ignore", message=".*axis name", category=UserWarning)
            program = torch.onnx.export(
                wrapper,
                (),
                kwargs={name: sample[name] for name in names},
                dynamo=True,
                dynamic_shapes=dynamic,
                input_names=names,
                output_names=outputs,
                opset_version=opset,
                external_data=parameters > (1 << 31) - (1 << 28),
                verbose=False,
            )
            program.save(str(path), external_data=parameters > (1 << 31) - (1 << 28))
    except Exception as err:  # the exporter's errors come from torch.export, onnxscript, ...: one line for the user
        raise ConfigError(
            f"torch.onnx.export failed for this model: {type(err).__name__}: {' '.join(str(err).split())[:800]}"
        ) from None
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    return {
        "inputs": names,
        "outputs": outputs,
        "opset": max(o.version for o in graph.opset_import if not o.domain),
        "seconds": round(time.perf_counter() - started, 1),
    }


def quantize_graph(source: Path, target: Path) -> dict[str, Any]:
    """Dynamic int8 quantization of `source`'s weighted MatMuls and Attentions (the last MatMul, the classification
    head, kept in fp32)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False)
    weights = {initializer.name for initializer in graph.graph.initializer}
    weighted = [
        node.name
        for node in graph.graph.node
        if node.op_type in QUANTIZED_OPS and any(name in weights for name in node.input)
    ]
    heads = [node.name for node in graph.graph.node if node.op_type == "MatMul" and node.name in weighted]
    excluded = heads[-1:]
    started = time.perf_counter()
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the quantizer logs a line per tensor, and advice, on the root logger
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=excluded,
        )
    finally:
        root.setLevel(level)
    quantized = onnx.load(str(target), load_external_data=False)
    ops = sorted({node.op_type for node in quantized.graph.node if node.op_type in ("QAttention", "MatMulInteger")})
    return {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": "QInt8",
        "per_channel": True,
        "quantized_nodes": len(weighted) - len(excluded),
        "quantized_ops": ops,
        "kept_fp32": excluded,
        "seconds": round(time.perf_counter() - started, 1),
    }


# ---------------------------------------------------------------- the export


def install(staging: Path, target: Path) -> None:
    """Replace `target` by `staging` (the old export is removed only once the new one is in place)."""
    previous = target.with_name(f".{target.name}-previous")
    if previous.exists():
        shutil.rmtree(previous)
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    if previous.exists():
        shutil.rmtree(previous)


def file_size_mib(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / (1 << 20), 1)


def export_model(
    directory: str,
    quantize: str | None = None,
    validation_file: str | None = None,
    text_field: str = "text",
    max_validation_examples: int | None = None,
    atol: float = 1e-3,
    min_agreement: float = 0.98,
    min_quantized_agreement: float = 0.95,
    batch_size: int = 32,
    opset: int | None = None,
    tasks: Sequence[Task] = TASKS,
) -> dict[str, Any]:
    """Export, quantize, validate, then install `directory/onnx/`; returns the report (also written there)."""
    if quantize not in (None, *QUANTIZATIONS):
        raise ConfigError(f"--quantize {quantize}: use one of {list(QUANTIZATIONS)}, or leave it out for fp32 only.")
    for name, value in (("--min_agreement", min_agreement), ("--min_quantized_agreement", min_quantized_agreement)):
        if not 0 <= value <= 1:
            raise ConfigError(f"{name} must be between 0 and 1, got {value}.")
    started = time.perf_counter()
    source = Predictor.from_pretrained(directory, device="cpu", backend="torch", batch_size=batch_size, tasks=tasks)
    examples, inputs = validation_examples(validation_file, source, text_field, max_validation_examples)
    target = Path(directory) / ONNX_DIRECTORY
    staging = Path(tempfile.mkdtemp(prefix=".onnx-export-", dir=directory))
    staging.chmod(umask_mode(0o777))  # mkdtemp's 0700 would stay on the installed directory
    try:
        exported = export_graph(source.model, source.tokenizer, staging / "exported.onnx", opset)
        optimized = optimize_graph(staging / "exported.onnx", staging / GRAPH_FILES["fp32"])
        exported["onnxruntime_optimizations"] = optimized
        for leftover in staging.glob("exported.onnx*"):
            leftover.unlink()
        report: dict[str, Any] = {
            "model": str(directory),
            "task": source.task.name,
            "labels": list(source.labels.names),
            "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}; onnxscript ORT fusions",
            "graphs": {"fp32": {"file": GRAPH_FILES["fp32"], **exported}},
        }
        source.config.save_pretrained(staging)
        source.tokenizer.save_pretrained(staging)
        if (Path(directory) / "README.md").is_file():  # the model card: base model, data, results
            shutil.copy2(Path(directory) / "README.md", staging / "README.md")
        if quantize:
            quantized = quantize_graph(staging / GRAPH_FILES["fp32"], staging / GRAPH_FILES[quantize])
            report["graphs"][quantize] = {"file": GRAPH_FILES[quantize], **quantized}
        for graph in report["graphs"].values():
            graph["size_mib"] = file_size_mib(staging / graph["file"])
        import onnxruntime

        logger.info("Validating on %d inputs: %s", len(examples), inputs)
        reference = run_backend(directory, "torch", examples, batch_size, tasks)
        report["validation"] = {
            "inputs": inputs,
            "examples": len(examples),
            "unit": source.task.serving.decision_unit,
            "atol": atol,
            "min_agreement": min_agreement,
            "min_quantized_agreement": min_quantized_agreement,
            "onnxruntime": onnxruntime.__version__,
            "torch_examples_per_second": round(len(examples) / reference[2], 1) if reference[2] else None,
        }
        for variant in report["graphs"]:
            report["validation"][variant] = compare(
                reference,
                run_backend(str(staging), f"onnx-{variant}", examples, batch_size, tasks),
                source.task.serving.decisions,
            )
        report["seconds"] = round(time.perf_counter() - started, 1)
        failures = check_report(report)
        report["passed"] = not failures
        write_json(staging / REPORT_FILE, report)
        if failures:
            kept = Path(directory) / ".onnx-rejected"
            if kept.exists():
                shutil.rmtree(kept)
            staging.rename(kept)
            raise ConfigError(
                f"The export failed validation ({'; '.join(failures)}); nothing was installed. The "
                f"graphs and report are in {kept} for a look."
            )
        install(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("ONNX export written to %s: %s", target, json.dumps(report["validation"]))
    return report
