"""Human-facing outputs: the results table printed at the end, the metric reports, and the model card."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from utils.files import atomic_write

EMBEDDED_MODEL_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: (column title, metric key prefix) in the order a reader compares them.
RESULT_COLUMNS = (("before fine-tuning", "before_eval_"), ("validation", "eval_"), ("test", "predict_"))
SKIPPED_METRICS = {"runtime", "samples_per_second", "steps_per_second", "samples", "model_preparation_time"}


def results_table(results: Mapping[str, Any], main_metrics: Sequence[str]) -> str:
    """A markdown table: one row per metric, one column per scored split (before fine-tuning, validation, test)."""
    columns = [(title, prefix) for title, prefix in RESULT_COLUMNS if any(k.startswith(prefix) for k in results)]
    if not columns:
        return ""
    names = [name for name in main_metrics if any(f"{prefix}{name}" in results for _, prefix in columns)]
    for _, prefix in columns:
        for key in results:
            name = key[len(prefix):]
            if key.startswith(prefix) and name not in names and name not in SKIPPED_METRICS:
                names.append(name)
    lines = ["| metric | " + " | ".join(title for title, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name in names:
        cells = []
        for _, prefix in columns:
            value = results.get(f"{prefix}{name}")
            cells.append("" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_reports(output_dir: str, reports: Mapping[str, str]) -> None:
    """`classification_report.txt`: the per-label (per-entity-type) table of each scored split."""
    if not reports:
        return
    with atomic_write(os.path.join(output_dir, "classification_report.txt")) as stream:
        for split, text in reports.items():
            stream.write(f"== {split} ==\n{text.rstrip()}\n\n")


def base_model_id(model_name_or_path: str | None) -> str:
    """The base model as the Hub knows it (the embedded model is all-MiniLM-L6-v2)."""
    return model_name_or_path or EMBEDDED_MODEL_HUB_ID


def write_model_card(
    output_dir: str,
    *,
    title: str,
    pipeline_tag: str,
    base_model: str,
    data_sources: Mapping[str, str],
    labels: Sequence[str],
    hyperparameters: Mapping[str, Any],
    results: Mapping[str, Any],
    main_metrics: Sequence[str],
    details: Sequence[str] = (),
    command: str = "",
) -> None:
    """`README.md` with Hub metadata (so the Hub renders it) and what a reader needs to trust the model."""
    metadata: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": pipeline_tag,
        "base_model": base_model,
        "tags": ["finetune-kit", pipeline_tag],
    }
    model_index = [
        {"type": name, "value": round(float(results[f"{prefix}{name}"]), 4), "name": f"{split} {name}"}
        for split, prefix in (("validation", "eval_"), ("test", "predict_"))
        for name in main_metrics
        if f"{prefix}{name}" in results
    ]
    if model_index:
        metadata["model-index"] = [{"name": os.path.basename(os.path.abspath(output_dir)), "results": [
            {"task": {"type": pipeline_tag}, "metrics": model_index}]}]
    lines = ["---", yaml.safe_dump(metadata, sort_keys=False).rstrip(), "---", "", f"# {title}", "",
             f"Fine-tuned from `{base_model}` with finetune-kit.", ""]
    if command:
        lines += ["Trained with:", "", "```bash", command, "```", ""]
    lines += ["## Data", ""] + [f"- {split}: `{source}`" for split, source in data_sources.items()] + [""]
    lines += ["## Labels", "", ", ".join(f"`{label}`" for label in labels), ""]
    if details:
        lines += list(details) + [""]
    lines += ["## Hyperparameters", "", "| name | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in hyperparameters.items()] + [""]
    table = results_table(results, main_metrics)
    if table:
        lines += ["## Results", "", table, ""]
    lines += [
        "## Use", "", "```python", "from transformers import pipeline", "",
        f'model = pipeline("{pipeline_tag}", model="{output_dir}")', "```", "",
        "## Limitations", "",
        "Scores hold for data like the evaluation data above; expect lower scores on other domains, and check the "
        "labels you rely on against the per-label report (`classification_report.txt`).", "",
    ]
    with atomic_write(os.path.join(output_dir, "README.md")) as stream:
        stream.write("\n".join(lines))
