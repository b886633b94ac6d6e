"""Human-facing outputs: the results table printed at the end, the metric reports, and the model card."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from utils.core.files import atomic_write

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
            name = key[len(prefix) :]
            if key.startswith(prefix) and name not in names and name not in SKIPPED_METRICS:
                names.append(name)
    lines = ["| metric | " + " | ".join(title for title, _ in columns) + " |", "|---|" + "---|" * len(columns)]
    for name in names:
        cells = []
        for _, prefix in columns:
            value = results.get(f"{prefix}{name}")
            cells.append("" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_reports(output_dir: str, reports: Mapping[str, str], file_name: str) -> None:
    """The task's report file (`classification_report.txt`): the per-label (per-entity-type) table of each scored
    split."""
    if not reports:
        return
    with atomic_write(os.path.join(output_dir, file_name)) as stream:
        for split, text in reports.items():
            stream.write(f"== {split} ==\n{text.rstrip()}\n\n")


def write_training_curves(output_dir: str, log_history: Sequence[Mapping[str, Any]], metric: str) -> bool:
    """training_curves.png: training and validation loss, and the main validation metric, over optimizer steps."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evaluation = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    scores = [(e["step"], e[f"eval_{metric}"]) for e in log_history if f"eval_{metric}" in e and "step" in e]
    if not train and not evaluation:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axes, metric_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for points, label, style in ((train, "train loss", "-"), (evaluation, "validation loss", "o-")):
        if points:
            loss_axes.plot(*zip(*points), style, label=label)
    loss_axes.set_xlabel("step")
    loss_axes.set_ylabel("loss")
    loss_axes.legend()
    loss_axes.set_title("Loss")
    if scores:
        metric_axes.plot(*zip(*scores), "o-", color="tab:green")
    metric_axes.set_xlabel("step")
    metric_axes.set_ylabel(metric)
    metric_axes.set_title(f"Validation {metric}")
    figure.tight_layout()
    with atomic_write(os.path.join(output_dir, "training_curves.png"), "wb") as stream:
        figure.savefig(stream, format="png", dpi=110)
    plt.close(figure)
    return True


def redact_command(argv: Sequence[str]) -> list[str]:
    """The command line with secret values (tokens) replaced, for the model card."""
    secret = {"--token", "--hub_token"}
    redacted, hide_next = [], False
    for arg in argv:
        name = arg.split("=", 1)[0]
        if hide_next:
            redacted.append("***")
        elif name in secret and "=" in arg:
            redacted.append(f"{name}=***")
        else:
            redacted.append(arg)
        hide_next = arg in secret
    return redacted


def shown_path(value: str) -> str:
    """A local path as the model card shows it (the card goes to the Hub): relative to the working directory when it
    lies inside it, else its base name; anything that is not an absolute path (Hub ids, flags) is unchanged."""
    if not os.path.isabs(value):
        return value
    relative = os.path.relpath(value)
    return os.path.basename(os.path.normpath(value)) if relative.split(os.sep, 1)[0] == os.pardir else relative


def shown_command(argv: Sequence[str]) -> list[str]:
    """The command line with secrets redacted and absolute local paths shown as `shown_path` shows them."""
    shown = []
    for arg in redact_command(argv):
        name, equals, value = arg.partition("=")
        shown.append(f"{name}={shown_path(value)}" if equals and name.startswith("--") else shown_path(arg))
    return shown


def base_model_id(model_name_or_path: str | None) -> str:
    """The base model as the Hub knows it (the embedded model is all-MiniLM-L6-v2; a local directory by its name)."""
    return shown_path(model_name_or_path) if model_name_or_path else EMBEDDED_MODEL_HUB_ID


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
    curves: bool = False,
) -> None:
    """`README.md` with Hub metadata (so the Hub renders it) and what a reader needs to trust the model; no absolute
    local path (the card is pushed to the Hub)."""
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
        metadata["model-index"] = [
            {
                "name": os.path.basename(os.path.abspath(output_dir)),
                "results": [{"task": {"type": pipeline_tag}, "metrics": model_index}],
            }
        ]
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {title}",
        "",
        f"Fine-tuned from `{base_model}` with finetune-kit.",
        "",
    ]
    if command:
        lines += ["Trained with:", "", "```bash", command, "```", ""]
    lines += ["## Data", ""] + [f"- {split}: `{shown_path(source)}`" for split, source in data_sources.items()]
    lines += [""]
    lines += ["## Labels", "", ", ".join(f"`{label}`" for label in labels), ""]
    if details:
        lines += list(details) + [""]
    lines += ["## Hyperparameters", "", "| name | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in hyperparameters.items()] + [""]
    table = results_table(results, main_metrics)
    if table:
        lines += ["## Results", "", table, ""]
    if curves:
        lines += [
            "## Training curves",
            "",
            "![Loss and validation metric over training steps](training_curves.png)",
            "",
        ]
    lines += [
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'model = pipeline("{pipeline_tag}", model="{shown_path(os.path.abspath(output_dir))}")',
        "```",
        "",
        "## Intended use",
        "",
        f"{pipeline_tag.replace('-', ' ').capitalize()} of text like the training data above.",
        "",
        "## Limitations",
        "",
        "Scores hold for data like the evaluation data above; expect lower scores on other domains, and check the "
        "labels you rely on against the per-label report (`classification_report.txt`). The model inherits the "
        "biases of its base model and of the training data.",
        "",
    ]
    with atomic_write(os.path.join(output_dir, "README.md")) as stream:
        stream.write("\n".join(lines))
