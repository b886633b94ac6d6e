"""Export a fine-tuned model to ONNX (fp32, and int8 with --quantize int8), validated against PyTorch.

    python export.py --model outputs/ner --quantize int8 --validation_file valid.txt
    python predict.py --model outputs/ner --input texts.txt          # now runs the ONNX graph (--backend onnx)

Writes `DIR/onnx/`: model.onnx, model_int8.onnx (when asked), the tokenizer, config.json and export_report.json (the
largest logit difference and the agreement of predicted tags / labels with PyTorch on the validation inputs). An
export that fails validation is an error and installs nothing. How and why: utils/serving/onnx_export.py.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field

import transformers

from utils.core.errors import run_command
from utils.core.parsing import parse_args
from utils.serving.onnx_export import QUANTIZATIONS, export_model


@dataclass
class ExportArguments:
    """export.py's options (a YAML/JSON config file with these keys works too)."""

    model_name_or_path: str = field(
        metadata={"help": "Directory of a fine-tuned model: a run's --output_dir.", "aliases": ["--model"]}
    )
    quantize: str | None = field(
        default=None, metadata={"help": "Also write a dynamically quantized graph.", "choices": list(QUANTIZATIONS)}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Inputs to validate on (predict.py's formats: text, JSONL, CoNLL; or a "
                                "TSV/CSV table with a header). Default: a few built-in texts."}
    )
    text_field: str = field(default="text", metadata={"help": "The text field (JSONL) or column (TSV/CSV)."})
    max_validation_examples: int | None = field(default=None, metadata={"help": "Validate on the first N inputs."})
    atol: float = field(default=1e-3, metadata={"help": "Largest absolute fp32 logit difference from PyTorch."})
    min_agreement: float = field(
        default=0.98, metadata={"help": "Least fraction of words (NER) or texts whose prediction must equal "
                                "PyTorch's, for the fp32 graph."}
    )
    min_quantized_agreement: float = field(
        default=0.95, metadata={"help": "The same for the int8 graph: lower, as int8 moves borderline predictions "
                                "both ways (see utils/serving/onnx_export.py)."}
    )
    batch_size: int = field(default=32, metadata={"help": "Model inputs per forward pass while validating."})
    opset: int | None = field(default=None, metadata={"help": "ONNX opset (default: the exporter's)."})


def main(argv: list[str] | None = None) -> dict:
    """Export, validate, install; returns the report."""
    (args,), _ = parse_args((ExportArguments,), argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr, level=logging.INFO)
    transformers.utils.logging.disable_progress_bar()
    for chatty in ("onnxscript", "onnx_ir"):  # a line per rewrite rule and pass at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    report = export_model(args.model_name_or_path, quantize=args.quantize, validation_file=args.validation_file,
                          text_field=args.text_field, max_validation_examples=args.max_validation_examples,
                          atol=args.atol, min_agreement=args.min_agreement,
                          min_quantized_agreement=args.min_quantized_agreement, batch_size=args.batch_size,
                          opset=args.opset)
    print(json.dumps({"onnx": f"{args.model_name_or_path}/onnx", "validation": report["validation"]}, indent=2))
    return report


if __name__ == "__main__":
    run_command(main)
