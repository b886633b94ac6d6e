"""predict.py's results as pre-annotations for annotation tools (Label Studio tasks with `predictions`, doccano
JSONL), and the choice of what to label next: the N inputs the model is least sure about.

What a result is as an annotation (spans or choices) is the task's (`Task.annotation`); the tools' formats are
utils/core/annotations'. Uncertainty is the task's measure (`Predictor.predict(..., uncertainty=True)`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from utils.core.annotations.doccano import doccano_record
from utils.core.annotations.label_studio import label_studio_tasks
from utils.core.errors import ConfigError
from utils.core.files import write_json, write_jsonl
from utils.core.task import Task

#: predict.py --output_format: its own JSON lines, or pre-annotations a tool imports.
OUTPUT_FORMATS = ("jsonl", "label-studio", "doccano")


def check_output_format(task: Task, output_format: str) -> None:
    """A tool format needs a task whose results can be annotations (before any prediction is made)."""
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"--output_format {output_format}: use one of {list(OUTPUT_FORMATS)}.")
    if output_format != "jsonl" and task.serving.annotation is None:
        raise ConfigError(
            f"--output_format {output_format}: {task.name} predictions cannot be pre-annotations; use "
            "--output_format jsonl."
        )


def most_uncertain(results: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The `count` results with the highest `"uncertainty"` (ties: input order), most uncertain first, each with
    `"input_line"`, its 1-based position in the input, to find it again."""
    ranked = sorted(range(len(results)), key=lambda i: (-results[i]["uncertainty"], i))
    return [{**results[i], "input_line": i + 1} for i in ranked[:count]]


def annotation_output(
    results: Sequence[dict[str, Any]],
    task: Task,
    output_format: str,
    model_version: str,
    from_name: str = "label",
    to_name: str = "text",
) -> list[dict[str, Any]] | Sequence[dict]:
    """The results in `output_format`: unchanged for jsonl, else Label Studio tasks or doccano lines."""
    if output_format == "jsonl":
        return results
    records = [task.serving.annotation(result) for result in results]
    if output_format == "doccano":
        lines = [doccano_record(record) for record in records]
    else:
        lines = label_studio_tasks(records, model_version, from_name, to_name)
    for result, line in zip(results, lines, strict=True):
        if "input_line" in result:  # --select_uncertain: where the text was, beside it (LS: a data column)
            (line["data"] if output_format == "label-studio" else line)["input_line"] = result["input_line"]
    return lines


def write_output(path: str, records: Sequence[dict[str, Any]], output_format: str) -> None:
    """Label Studio takes one JSON list of tasks; jsonl and doccano are one JSON object per line. `-`: stdout."""
    if path != "-":
        (write_json if output_format == "label-studio" else write_jsonl)(path, records)
        return
    if output_format == "label-studio":
        text = json.dumps(list(records), ensure_ascii=False, indent=1) + "\n"
    else:
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    sys.stdout.buffer.write(text.encode("utf-8")) if hasattr(sys.stdout, "buffer") else sys.stdout.write(text)
    sys.stdout.flush()
