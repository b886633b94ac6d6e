"""predict.py's job: read a file (or stdin), predict every input, write one result per input (or pre-annotations).

The output is checked before the model loads, so a path that cannot be written fails in a second, not after the
predictions; JSON lines go out as they are ready (a reader downstream starts at once); stdin is spooled to a temporary
file so the line-numbering readers can name `<stdin>` and a line in their errors.
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
from pathlib import Path
from typing import Any

from utils.core.calibration import BELOW_MIN_CONFIDENCE
from utils.core.errors import ConfigError, DataError
from utils.core.files import write_jsonl
from utils.core.validation import can_write_in, nearest_existing
from utils.serving.annotation_output import annotation_output, check_output_format, most_uncertain, write_output
from utils.serving.arguments import PredictArguments, PredictorArguments
from utils.serving.inputs import predict_examples, read_examples

logger = logging.getLogger(__name__)


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
        raise ConfigError(
            "--input -: standard input is closed; pipe text in (echo ... | predict.py --input -) or give --input FILE."
        )
    with tempfile.TemporaryDirectory() as directory:
        spooled = os.path.join(directory, "stdin")
        try:
            Path(spooled).write_bytes(stdin.read())
        except OSError as err:
            raise ConfigError(
                f"--input -: standard input cannot be read ({err.strerror}); give --input FILE."
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
        raise ConfigError(
            f"--output {path}: the directory {directory} is not writable (read-only disk or no "
            "permission); choose another --output, or - for stdout."
        )


def write_stdout(records: Iterable[dict]) -> None:
    """JSON lines on stdout, UTF-8 whatever the locale, as they are ready."""
    binary = getattr(sys.stdout, "buffer", None)
    for record in records:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        if binary is None:
            sys.stdout.write(line)
        else:
            binary.write(line.encode("utf-8"))
    sys.stdout.flush()


def predict_file(model: PredictorArguments, args: PredictArguments) -> dict[str, Any]:
    """Predict for every input of `args.input`; returns a summary (task, number of records, output, seconds)."""
    started = time.perf_counter()
    check_output(args.output)
    with readable_path(args.input) as path:
        predictor = model.load()
        examples = read_examples(
            path,
            args.input_format,
            args.text_field,
            predictor.task,
            name="<stdin>" if args.input == "-" else None,
            document_field=args.document_field,
        )
    check_output_format(predictor.task, args.output_format)
    uncertain = args.select_uncertain is not None or args.output_format != "jsonl"
    withheld = [0]  # units below --min_confidence, counted as the results stream by
    results = counted(predict_examples(predictor, examples, uncertainty=uncertain), withheld)
    if not uncertain:
        if args.output == "-":
            write_stdout(results)
        else:
            write_jsonl(args.output, results)
        written = len(examples)
    else:
        results = list(results)
        if args.select_uncertain is not None:
            results = most_uncertain(results, args.select_uncertain)
        version = args.model_version or Path(os.path.abspath(model.model_name_or_path)).name
        write_output(
            args.output,
            annotation_output(results, predictor.task, args.output_format, version, args.from_name, args.to_name),
            args.output_format,
        )
        written = len(results)
    seconds = time.perf_counter() - started
    logger.info(
        "%d %s predictions written to %s in %.1f s",
        written,
        predictor.task.name,
        "stdout" if args.output == "-" else args.output,
        seconds,
    )
    summary = {"task": predictor.task.name, "records": written, "output": args.output, "seconds": seconds}
    if model.min_confidence is not None:
        logger.info("%d units below --min_confidence %g (%s).", withheld[0], model.min_confidence, model.abstain)
        summary[BELOW_MIN_CONFIDENCE] = withheld[0]
    return summary


def counted(results: Iterable[dict[str, Any]], total: list[int]) -> Iterator[dict[str, Any]]:
    """The results unchanged, adding to `total[0]` how many units each had below --min_confidence (the count every
    task's `abstain` records under `BELOW_MIN_CONFIDENCE`)."""
    for result in results:
        total[0] += result.get(BELOW_MIN_CONFIDENCE, 0)
        yield result
