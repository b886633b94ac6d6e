"""Predict with a fine-tuned model: entities (NER) or labels (classification), one JSON line per input line.

    python predict.py --model outputs/ner --input texts.txt --output entities.jsonl
    echo "Angela Merkel visited Paris." | python predict.py --model outputs/ner --input -
    python predict.py --model outputs/ner --input test.conll --output -          # pre-split words: + tokens, tags
    python predict.py --model outputs/classification --input reviews.jsonl --text_field review
    python predict.py --model outputs/ner --input pool.txt --output_format label-studio --output tasks.json
    python predict.py --model outputs/ner --input pool.txt --select_uncertain 100 --output_format doccano \
        --output next_batch.jsonl                   # the 100 texts the model is least sure of, pre-annotated

The task comes from the model's config (the architecture it was saved with), and decides what the model takes and
gives (utils/tasks/*/predict.py). Inputs: one text per line, JSONL with a text field (or, for NER, a `tokens` list),
or (NER) a CoNLL file, one output per sentence. Output lines follow the input, empty lines giving empty results. A
model trained with --context_size sees the neighbouring sentences of the same document (CoNLL `-DOCSTART-` lines, a
JSONL `document_id`) as in training. The same predictions from Python: `utils.serving.predictor.Predictor`.
--output_format label-studio|doccano writes pre-annotations those tools import (utils/serving/annotation_output.py);
--select_uncertain N keeps the N inputs the model is least sure about, most uncertain first.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import transformers

from utils.core.errors import ConfigError, DataError, run_command
from utils.core.files import write_jsonl
from utils.core.parsing import parse_args
from utils.core.validation import can_write_in, nearest_existing
from utils.serving.annotation_output import (
    OUTPUT_FORMATS,
    annotation_output,
    check_output_format,
    most_uncertain,
    write_output,
)
from utils.serving.inputs import INPUT_FORMATS, predict_examples, read_examples
from utils.serving.onnx_backend import BACKENDS
from utils.serving.predictor import Predictor

logger = logging.getLogger(__name__)


@dataclass
class PredictArguments:
    """predict.py's options (a YAML/JSON config file with these keys works too, as for the training scripts)."""

    model_name_or_path: str = field(
        metadata={"help": "Directory of a fine-tuned model: a run's --output_dir.", "aliases": ["--model"]}
    )
    input: str = field(metadata={"help": "Input file, or - for stdin."})
    output: str = field(default="-", metadata={"help": "Output JSONL file, or - for stdout."})
    text_field: str = field(default="text", metadata={"help": "JSONL input: the field holding the text."})
    batch_size: int = field(default=32, metadata={"help": "Model inputs per forward pass."})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:N, or auto (a GPU when there is one)."})
    input_format: str = field(
        default="auto", metadata={"help": "auto: from the file suffix, else from its content.",
                                  "choices": list(INPUT_FORMATS)}
    )
    max_seq_length: int | None = field(
        default=None, metadata={"help": "Most tokens per model input (default: the model's limit). NER windows longer "
                                "texts; classification cuts them and marks the result \"truncated\": true."}
    )
    stride: int | None = field(
        default=None,
        metadata={"help": "NER: tokens shared by consecutive windows of a long text "
                  "(default: run_ner.py's --stride default, at most half a window)."},
    )
    threshold: float = field(default=0.5, metadata={"help": "Multi-label: probability above which a label is on."})
    context_size: int | None = field(
        default=None,
        metadata={"help": "NER: document context tokens per side (default: what the model was trained with). Needs "
                  "documents in the input: CoNLL -DOCSTART- lines or a JSONL --document_field."},
    )
    document_field: str = field(default="document_id", metadata={"help": "JSONL input: the field naming the "
                                                                "document a line belongs to (NER document context)."})
    output_format: str = field(
        default="jsonl",
        metadata={"help": "jsonl (predict.py's own lines), or pre-annotations for an annotation tool: label-studio (a "
                  "JSON list of tasks with `predictions`: model_version, score, one result per entity or the chosen "
                  "labels) or doccano (JSONL with `label`); character offsets into each input text, and each "
                  "text's `uncertainty`.", "choices": list(OUTPUT_FORMATS)},
    )
    select_uncertain: int | None = field(
        default=None,
        metadata={"help": "Write only the N inputs the model is least sure about (NER: 1 - the smallest word "
                  "margin; classification: normalised entropy), most uncertain first, each with its uncertainty "
                  "and input_line: what to label next."},
    )
    model_version: str | None = field(
        default=None, metadata={"help": "Label Studio: the predictions' model_version (default: the model "
                                "directory's name)."}
    )
    from_name: str = field(default="label", metadata={"help": "Label Studio: the control tag's name in the labelling "
                                                       "config (<Labels name=...> or <Choices name=...>)."})
    to_name: str = field(default="text", metadata={"help": "Label Studio: the object tag's name (<Text name=...>)."})
    backend: str = field(
        default="auto", metadata={"help": "torch, onnx (the export's int8 graph if any, else fp32), onnx-fp32, "
                                  "onnx-int8, or auto: the ONNX export (export.py) when the model directory holds "
                                  "one, else torch.", "choices": list(BACKENDS)}
    )


@contextmanager
def readable_path(path: str) -> Iterator[str]:
    """A path the line-numbering readers can open: `-` (stdin) is spooled to a temporary file; errors say <stdin>."""
    if path != "-":
        if not os.path.isfile(path):
            raise DataError("input file not found.", source=path)
        yield path
        return
    stdin = getattr(sys.stdin, "buffer", None)
    if stdin is None or sys.stdin.closed:
        raise ConfigError("--input -: standard input is closed; pipe text in (echo ... | predict.py --input -) or "
                          "give --input FILE.")
    with tempfile.TemporaryDirectory() as directory:
        spooled = os.path.join(directory, "stdin")
        try:
            Path(spooled).write_bytes(stdin.read())
        except OSError as err:
            raise ConfigError(f"--input -: standard input cannot be read ({err.strerror}); give --input FILE."
                              ) from None
        try:
            yield spooled
        except DataError as err:
            raise DataError(str(err).replace(spooled, "<stdin>")) from None


def check_output(path: str) -> None:
    """--output is a file this user can write (checked before the model loads, not after predicting)."""
    if path == "-":
        return
    if os.path.isdir(path):
        example = os.path.join(path, "predictions.jsonl")
        raise ConfigError(f"--output {path} is a directory; name a file, e.g. {example}.")
    directory = nearest_existing(os.path.dirname(os.path.abspath(path)))
    if not can_write_in(directory):
        raise ConfigError(f"--output {path}: the directory {directory} is not writable (read-only disk or no "
                          "permission); choose another --output, or - for stdout.")


def write_stdout(records: Iterable[dict]) -> None:
    """JSON lines on stdout, UTF-8 whatever the locale, as they are ready (a reader downstream starts at once)."""
    binary = getattr(sys.stdout, "buffer", None)
    for record in records:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        if binary is None:
            sys.stdout.write(line)
        else:
            binary.write(line.encode("utf-8"))
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> dict:
    """Predict for every input; returns a summary (task, number of records, output, seconds)."""
    (args,), _ = parse_args((PredictArguments,), argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr, level=logging.INFO)
    transformers.utils.logging.disable_progress_bar()
    started = time.perf_counter()
    check_output(args.output)
    if args.select_uncertain is not None and args.select_uncertain < 1:
        raise ConfigError(f"--select_uncertain must be a positive number of texts, got {args.select_uncertain}.")
    with readable_path(args.input) as path:
        predictor = Predictor.from_pretrained(args.model_name_or_path, device=args.device,
                                              batch_size=args.batch_size, max_seq_length=args.max_seq_length,
                                              stride=args.stride, threshold=args.threshold,
                                              context_size=args.context_size, backend=args.backend)
        examples = read_examples(path, args.input_format, args.text_field, predictor.task,
                                 name="<stdin>" if args.input == "-" else None, document_field=args.document_field)
    check_output_format(predictor.task, args.output_format)
    uncertain = args.select_uncertain is not None or args.output_format != "jsonl"
    results = predict_examples(predictor, examples, uncertainty=uncertain)
    if not uncertain:
        if args.output == "-":
            write_stdout(results)
        else:
            write_jsonl(args.output, results)
    else:
        results = list(results)
        if args.select_uncertain is not None:
            results = most_uncertain(results, args.select_uncertain)
        version = args.model_version or Path(os.path.abspath(args.model_name_or_path)).name
        write_output(args.output, annotation_output(results, predictor.task, args.output_format, version,
                                                    args.from_name, args.to_name), args.output_format)
    seconds = time.perf_counter() - started
    written = len(results) if uncertain else len(examples)
    logger.info("%d %s predictions written to %s in %.1f s", written, predictor.task.name,
                "stdout" if args.output == "-" else args.output, seconds)
    return {"task": predictor.task.name, "records": written, "output": args.output, "seconds": seconds}


if __name__ == "__main__":
    run_command(main)
