"""predict.py's inputs: text lines, JSONL or CoNLL, read into examples; predictions a chunk at a time, in order.

What a model accepts comes from its `Task` (`task.serving.input_kinds`: texts, sentence pairs, pre-split words),
never from the task's name; `task` None accepts every kind.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from utils.core.conll import DOCSTART, read_conll
from utils.core.errors import ConfigError, DataError
from utils.core.examples import PAIR, TOKENS, Example, taken_kinds
from utils.core.files import read_utf8_lines
from utils.core.task import Task
from utils.serving.predictor import Predictor

logger = logging.getLogger(__name__)

#: Input formats of predict.py; "auto" picks one from the file name, else from the content.
INPUT_FORMATS = ("auto", "text", "jsonl", "conll")

SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".conll": "conll", ".iob": "conll", ".bio": "conll"}

IOB_TAG = re.compile(r"^(O|[BIESLU]-\S+)$")


def takes(task: Task | None, kind: str) -> bool:
    """Whether the model takes this kind of input (`utils.core.examples`); None (no model named): yes."""
    return task is None or kind in task.serving.input_kinds


def model_phrase(task: Task | None) -> str:
    """How an error message names the model: by its task's name."""
    return "this model" if task is None else f"this model ({task.name})"


def input_format(path: str, lines: Sequence[str], requested: str, task: Task | None = None) -> str:
    """`--input_format`, or for `auto`: from the file's suffix (.jsonl/.json, .conll/.iob/.bio), else from its first
    lines: a JSON object is JSONL; `-DOCSTART-`, or (for a model that takes words) lines of word + IOB tag columns,
    is CoNLL; else text (one text per line; note that `.txt` is text too, unless its content says CoNLL)."""
    if requested != "auto":
        return requested
    suffix = Path(path).suffix.lower()
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix]
    head = [line for line in lines[:200] if line.strip()][:20]
    if not head:
        return "text"
    if head[0].lstrip().startswith("{"):
        return "jsonl"
    if head[0].split()[0] == DOCSTART:
        return "conll"
    if takes(task, TOKENS) and all(len(line.split()) >= 2 and IOB_TAG.match(line.split()[-1]) for line in head):
        return "conll"
    return "text"


def read_examples(
    path: str,
    requested_format: str = "auto",
    text_field: str = "text",
    task: Task | None = None,
    name: str | None = None,
    document_field: str = "document_id",
) -> list[Example]:
    """The inputs of a file for a model of `task`: one per line (text, JSONL) or per sentence (CoNLL); errors name
    the line. `name` is how the log names the input (e.g. <stdin> for a spooled copy). Documents: `-DOCSTART-` lines
    (CoNLL; a file without them is one document) or the JSONL `document_field`."""
    if requested_format not in INPUT_FORMATS:
        raise ConfigError(f"--input_format {requested_format}: use one of {list(INPUT_FORMATS)}.")
    lines = read_utf8_lines(path)
    fmt = input_format(path, lines, requested_format, task)
    logger.info("Reading %s as %s", name or path, fmt)
    if fmt == "conll":
        if not takes(task, TOKENS):
            raise ConfigError(
                f"{path} is CoNLL (pre-split words), which only models that tag words take; "
                f"{model_phrase(task)} takes texts. Give one text per line or JSONL."
            )
        corpus = read_conll(path)
        return [
            Example(text=" ".join(tokens), tokens=tuple(tokens), document=str(document))
            for tokens, document in zip(corpus.tokens, corpus.document_id, strict=True)
        ]
    if fmt == "text":
        return [Example(text=line) for line in lines]
    return [
        jsonl_example(line, f"{path}:{number}", text_field, task, document_field)
        for number, line in enumerate(lines, start=1)
    ]


def jsonl_example(
    line: str, source: str, text_field: str, task: Task | None = None, document_field: str = "document_id"
) -> Example:
    """One JSONL line: its `tokens` list (a model that takes words) or its text field (and `text_pair`); a blank line
    is an empty text."""
    if not line.strip():
        return Example()
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON ({err.msg} at column {err.colno}).", source=source) from None
    if not isinstance(record, dict):
        raise DataError("each line must be a JSON object {...}.", source=source)
    document = record.get(document_field)
    document = None if document is None else str(document)
    words = takes(task, TOKENS)
    if words and "tokens" in record:
        tokens = record["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
            raise DataError(f"'tokens' must be a list of strings, got {tokens!r:.80}", source=source)
        return Example(text=" ".join(tokens), tokens=tuple(tokens), document=document)
    if text_field not in record:
        raise DataError(
            f"no '{text_field}' field (it has {sorted(record)}); name the text field with --text_field"
            + (" or give a 'tokens' list." if words else "."),
            source=source,
        )
    text, pair = record[text_field], record.get("text_pair")
    if not isinstance(text, str):
        raise DataError(f"'{text_field}' must be a string, got {text!r:.80}", source=source)
    if pair is not None and not isinstance(pair, str):
        raise DataError(f"'text_pair' must be a string, got {pair!r:.80}", source=source)
    if pair is not None and not takes(task, PAIR):
        raise DataError(
            f"'text_pair' is for models of sentence pairs; {model_phrase(task)} takes "
            f"{taken_kinds(task.serving.input_kinds)}.",
            source=source,
        )
    return Example(text=text, text_pair=pair, document=document)


def chunk_ends(examples: Sequence[Example], chunk_size: int, whole_documents: bool) -> Iterator[int]:
    """Where each chunk of `chunk_size` examples ends; with `whole_documents`, never inside a document (of
    consecutive examples), so document context is the same whatever the chunk size."""
    end = 0
    while end < len(examples):
        end = min(end + chunk_size, len(examples))
        while (
            whole_documents
            and 0 < end < len(examples)
            and examples[end].document is not None
            and (examples[end].document == examples[end - 1].document)
        ):
            end += 1
        yield end


def predict_examples(
    predictor: Predictor, examples: Sequence[Example], chunk_size: int = 4096, uncertainty: bool = False
) -> Iterator[dict[str, Any]]:
    """Results in input order, computed a chunk at a time (memory stays flat however long the file); with
    `uncertainty`, each with the model's `"uncertainty"` (see `Predictor.predict_examples`)."""
    chunk_start = 0
    for chunk_end in chunk_ends(examples, chunk_size, whole_documents=predictor.whole_documents):
        yield from predictor.predict_examples(examples[chunk_start:chunk_end], uncertainty)
        chunk_start = chunk_end
