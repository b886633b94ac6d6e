"""Export a fine-tuned model to ONNX (fp32, and int8 with --quantize int8), validated against PyTorch.

    python export.py --model outputs/ner --quantize int8 --validation_file valid.txt
    python predict.py --model outputs/ner --input texts.txt          # now runs the ONNX graph (--backend onnx)

Writes `DIR/onnx/`: model.onnx, model_int8.onnx (when asked), the tokenizer, config.json and export_report.json (the
largest logit difference and the agreement of predicted tags / labels with PyTorch on the validation inputs). An
export that fails validation is an error and installs nothing. How and why: utils/serving/onnx_export.py.
"""

from __future__ import annotations

import json

from utils.core.errors import run_command
from utils.serving.arguments import ExportArguments, parse_script_args
from utils.serving.onnx_export import export_model


def main(argv: list[str] | None = None) -> dict:
    """Export, validate, install; returns the report."""
    (args,) = parse_script_args((ExportArguments,), argv)
    report = export_model(
        args.model_name_or_path,
        quantize=args.quantize,
        validation_file=args.validation_file,
        text_field=args.text_field,
        max_validation_examples=args.max_validation_examples,
        atol=args.atol,
        min_agreement=args.min_agreement,
        min_quantized_agreement=args.min_quantized_agreement,
        batch_size=args.batch_size,
        opset=args.opset,
    )
    print(json.dumps({"onnx": f"{args.model_name_or_path}/onnx", "validation": report["validation"]}, indent=2))
    return report


if __name__ == "__main__":
    run_command(main)
