"""How `export.py` validates an export before installing it: the same inputs (a validation file, or built-in texts:
utils/serving/validation_texts.txt) through `Predictor` with PyTorch and with each graph, every row's outputs
recorded, and the results compared by what they decide (the task's `task.serving.decisions`: per word for models that
take pre-split words, which get the built-in texts as words)."""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from utils.core.errors import ConfigError, DataError
from utils.core.examples import TOKENS, Example
from utils.core.task import ForwardBatch, Task
from utils.serving.inputs import predict_examples, read_examples
from utils.serving.predictor import Predictor
from utils.tasks.registry import TASKS

TABLE_SUFFIXES = {".tsv": "\t", ".csv": ","}

#: Validation inputs when no file is given: 148 English texts, one per line (news with people, organisations, places
#: and events; reviews; headlines in capitals; lower-case chat; names with accents), about 2,700 words.
BUILT_IN_FILE = Path(__file__).with_name("validation_texts.txt")

#: Beside them: an empty text, and one text longer than a window (its windows are stitched).
EXTRA_TEXTS = (
    "",
    " ".join(
        [
            "Officials in Brussels and Washington said the talks between NATO and the United Nations would resume "
            "in Geneva next week ."
        ]
        * 30
    ),
)

#: How built-in texts are split into words for models that take pre-split words: words (with inner hyphens,
#: apostrophes and dots: U.S, 6-0, O'Brien) and every other character alone, as CoNLL-style data splits them.
WORDS = re.compile(r"\w+(?:[-'.’]\w+)*|\S")


# ---------------------------------------------------------------- validation inputs


def table_examples(path: str, text_field: str) -> list[Example]:
    """A TSV/CSV file with a header: the `text_field` column, else its one column that is not a label."""
    delimiter = TABLE_SUFFIXES[Path(path).suffix.lower()]
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=delimiter))
    columns = list(rows[0]) if rows else []
    texts = [name for name in columns if name not in {"label", "labels", "idx", "id"}]
    column = text_field if text_field in columns else (texts[0] if len(texts) == 1 else None)
    if column is None:
        raise DataError(
            f"no '{text_field}' column (it has {columns}); name the text column with --text_field.", source=path
        )
    return [Example(text=row[column] or "") for row in rows]


def built_in_examples(task: Task) -> tuple[list[Example], str]:
    """The built-in validation inputs, and what they are (for the report). A model that takes pre-split words gets
    them as words, so that its results decide per word (`task.serving.decisions`): a whole text's entities as one
    decision would make a handful of borderline words refuse a good export."""
    texts = [*BUILT_IN_FILE.read_text(encoding="utf-8").splitlines(), *EXTRA_TEXTS]
    if TOKENS in task.serving.input_kinds:
        examples = [Example(text=text, tokens=tuple(WORDS.findall(text))) if text else Example() for text in texts]
        words = sum(len(example.tokens or ()) for example in examples)
        what = f"{len(examples)} texts ({words} words) as pre-split words"
    else:
        examples, what = [Example(text=text) for text in texts], f"{len(texts)} texts"
    return examples, f"built-in: {what}, from utils/serving/{BUILT_IN_FILE.name} (news, reviews, headlines)"


def validation_examples(
    path: str | None, predictor: Predictor, text_field: str = "text", limit: int | None = None
) -> tuple[list[Example], str]:
    """The validation inputs: the file's (predict.py's formats, or a TSV/CSV table), or the built-in texts; and what
    they are, for the report."""
    if path is None:
        examples, what = built_in_examples(predictor.task)
    elif not os.path.isfile(path):
        raise DataError("validation file not found.", source=path)
    elif Path(path).suffix.lower() in TABLE_SUFFIXES:
        examples, what = table_examples(path, text_field), path
    else:
        examples, what = read_examples(path, "auto", text_field, predictor.task), path
    if limit and limit < len(examples):
        return examples[:limit], f"{what}, the first {limit} inputs"
    return examples, what


# ---------------------------------------------------------------- comparing backends


class RecordingForward:
    """A forward callable that passes another's batches on and keeps each row's outputs (per-token ones over its
    real tokens: `token_outputs`, the task says which), all outputs of a row laid end to end."""

    def __init__(self, forward, token_outputs: bool):
        self.forward, self.token_outputs, self.rows = forward, token_outputs, []

    def __call__(self, inputs: Mapping[str, Sequence[Sequence[int]]]) -> Iterator[ForwardBatch]:
        lengths = [len(row) for row in inputs["input_ids"]]
        rows: list[np.ndarray] = [np.empty(0)] * len(lengths)
        for batch, outputs in self.forward(inputs):
            for row, index in enumerate(batch):
                rows[index] = np.concatenate(
                    [
                        (value[row, : lengths[index]] if self.token_outputs and value.dim() > 1 else value[row])
                        .numpy()
                        .ravel()
                        for value in outputs.values()
                    ]
                )
            yield batch, outputs
        self.rows += rows


def run_backend(
    directory: str, backend: str, examples: Sequence[Example], batch_size: int, tasks: Sequence[Task] = TASKS
) -> tuple[list[dict], list[np.ndarray], float]:
    """Results and per-row outputs of `examples` with one backend, and the seconds predicting took."""
    loaded = Predictor.from_pretrained(directory, device="cpu", backend=backend, batch_size=batch_size, tasks=tasks)
    recorder = RecordingForward(loaded.forward, loaded.task.training.token_outputs)
    predictor = dataclasses.replace(loaded, forward=recorder)
    started = time.perf_counter()
    results = list(predict_examples(predictor, examples))
    return results, recorder.rows, time.perf_counter() - started


def compare(reference: tuple, other: tuple, decisions: Callable[[Mapping[str, Any]], list]) -> dict[str, Any]:
    """How far one backend's outputs and decisions (the task's `decisions` of a result) are from the reference's
    (PyTorch)."""
    (ref_results, ref_rows, _), (results, rows, seconds) = reference, other
    if len(ref_rows) != len(rows) or any(a.shape != b.shape for a, b in zip(ref_rows, rows)):
        raise ConfigError("The ONNX backend's model inputs differ from PyTorch's: the two cannot be compared.")
    diffs = [float(np.abs(a - b).max()) for a, b in zip(ref_rows, rows) if a.size]
    units = same = examples_same = 0
    for ref_result, result in zip(ref_results, results, strict=True):
        expected, got = decisions(ref_result), decisions(result)
        units += len(expected)
        same += sum(a == b for a, b in zip(expected, got, strict=True))
        examples_same += expected == got
    return {
        "max_abs_logit_diff": max(diffs, default=0.0),
        "mean_abs_logit_diff": float(np.mean([np.abs(a - b).mean() for a, b in zip(ref_rows, rows) if a.size]))
        if diffs
        else 0.0,
        "agreement": same / units if units else 1.0,
        "units": units,
        "example_agreement": examples_same / len(results) if results else 1.0,
        "examples_per_second": round(len(results) / seconds, 1) if seconds else None,
    }


def check_report(report: dict[str, Any]) -> list[str]:
    """The validation figures that are out of bounds."""
    validation, failures = report["validation"], []
    fp32 = validation["fp32"]
    if fp32["max_abs_logit_diff"] > validation["atol"]:
        failures.append(
            f"fp32 logits differ from PyTorch's by up to {fp32['max_abs_logit_diff']:.2g} > --atol "
            f"{validation['atol']}"
        )
    for variant in report["graphs"]:
        agreement = validation[variant]["agreement"]
        flag = "min_agreement" if variant == "fp32" else "min_quantized_agreement"
        if agreement < validation[flag]:
            failures.append(
                f"{variant} agrees with PyTorch on {agreement:.2%} of the {validation['unit']}s < "
                f"--{flag} {validation[flag]}"
            )
    return failures
