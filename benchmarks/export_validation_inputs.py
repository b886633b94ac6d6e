"""What export.py's validation decides on a real model, by what it validates on: the built-in texts (no
--validation_file) against a validation file, each export into a copy of the model directory.

    python benchmarks/export_validation_inputs.py --model /work/models/conll-fp32 \\
        --validation_file ../shared/data/conll2003/valid.txt --output benchmarks/results/export_validation_inputs.json

For each set of inputs: whether the int8 export passed, the agreement of the fp32 and int8 graphs with PyTorch per
decision unit (words for NER) and per example, how many units, and what the report says it validated on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.reporting import machine, write_results  # noqa: E402


def export_copy(model: str, workdir: Path, name: str, validation_file: str | None) -> dict:
    """export_model(--quantize int8) into a fresh copy of `model` (without its onnx/): the report, or the error."""
    from utils.core.errors import ConfigError
    from utils.serving.onnx_export import export_model

    copy = workdir / name
    shutil.copytree(model, copy, ignore=shutil.ignore_patterns("onnx", ".onnx*", "checkpoint-*", "runs"))
    try:
        return export_model(str(copy), quantize="int8", validation_file=validation_file)
    except ConfigError as err:
        rejected = copy / ".onnx-rejected" / "export_report.json"
        report = json.loads(rejected.read_text(encoding="utf-8")) if rejected.is_file() else {}
        return {**report, "error": str(err)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--validation_file", required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="export-validation-") as workdir:
        for name, validation_file in (("built-in", None), ("validation file", args.validation_file)):
            report = export_copy(args.model, Path(workdir), name.replace(" ", "-"), validation_file)
            validation = report.get("validation", {})
            runs[name] = {
                "passed": report.get("passed", False),
                "error": report.get("error"),
                "inputs": validation.get("inputs"),
                "examples": validation.get("examples"),
                "unit": validation.get("unit"),
                **{
                    f"{variant}_{key}": validation.get(variant, {}).get(key)
                    for variant in ("fp32", "int8")
                    for key in ("agreement", "units", "example_agreement", "max_abs_logit_diff")
                },
            }
    lines = [
        f"Model `{Path(args.model).name}`, int8 export (`--quantize int8`), default bounds (fp32 agreement >= 0.98, "
        "int8 >= 0.95, fp32 logits within 1e-3). CPU: "
        f"{machine()['cpu']} ({', '.join(machine()['cpu_features'])}).",
        "",
        "| validated on | passed | unit | units | fp32 agreement | int8 agreement | int8 examples equal | inputs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        lines.append(
            f"| {name} | {run['passed']} | {run['unit']} | {run['int8_units']} | {run['fp32_agreement']:.4f} | "
            f"{run['int8_agreement']:.4f} | {run['int8_example_agreement']:.4f} | {run['inputs']} |"
        )
    write_results(args.output, {"machine": machine(), "model": args.model, "runs": runs}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
