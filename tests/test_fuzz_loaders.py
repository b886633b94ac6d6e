"""Fuzzing every loader (CoNLL, CSV/TSV, JSON/JSONL; both tasks) with hypothesis.

Valid generated files must come back exactly (the expected rows are built from the generator's own structure, never
by parsing the file); damaged files (random bytes, truncation, latin-1/UTF-16 bytes inside UTF-8, huge lines, wrong
column counts, missing labels) must either load or raise a `FinetuneError` that names the file, and the line or row
where one can be known. Any other exception fails the test.

Every example rewrites the same few file names with the same pinned mtime, so a loader that served a stale cached
parse would fail the exact comparisons.
"""

from __future__ import annotations

import ast
import codecs
import csv
import io
import json
import logging
import math
import os
import re
import string
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from utils.core.arguments import ModelArguments
from utils.core.conll import DOCSTART, read_conll
from utils.core.errors import DataError, FinetuneError
from utils.tasks.classification.arguments import ClassificationDataArguments
from utils.tasks.classification.data import load_classification_data
from utils.tasks.ner.arguments import NerDataArguments
from utils.tasks.ner.data import load_ner_data
from utils.tasks.ner.iob import malformed_tag_fix

FUZZ = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
PINNED_MTIME_NS = 1_700_000_000 * 10**9
ASCII_SPACE = string.whitespace

# ---------------------------------------------------------------- text pieces

#: Any character a UTF-8 text file can hold except NUL (refused: the sign of UTF-16) and U+FEFF (a BOM at the start).
CHAR = st.characters(exclude_categories=["Cs"], exclude_characters="\x00\ufeff")
TEXT = st.text(CHAR, min_size=1, max_size=24).filter(str.strip)
#: A word with no ASCII whitespace (the column and word separator); unicode spaces such as U+00A0 are allowed.
WORD = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00\ufeff" + ASCII_SPACE), min_size=1, max_size=10
).filter(lambda w: w != DOCSTART)
#: A value in a tab-separated file: spaces inside, none at the ends (columns are stripped).
TAB_VALUE = (
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00\ufeff\t\n"), min_size=1, max_size=10)
    .map(lambda v: v.strip(ASCII_SPACE))
    .filter(lambda v: v and v != DOCSTART)
)
IOB_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "S-ORG", "E-ORG"]


def well_formed(tag: str) -> bool:
    """Not a misspelt IOB tag (`b-x`, `B_X`, `o`), which the loaders refuse by design (test_label_checks.py)."""
    return malformed_tag_fix(tag) is None and malformed_tag_fix(tag.strip(ASCII_SPACE)) is None


TAG = st.one_of(st.sampled_from(IOB_TAGS), WORD.filter(str.strip).filter(well_formed))
#: A class name: never a number (a CSV column of numbers is read as numbers), never holding the "," delimiter, and
#: fit for a TSV cell.
NAME = st.tuples(
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00\t\n\r,"), max_size=8),
    st.sampled_from("abcxyzéßЖ漢"),
).map("".join)


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One directory for every example of the module (and the `datasets` cache inside it); thousands of loads
    without progress bars or the loaders' data warnings."""
    progress, logger = datasets.is_progress_bar_enabled(), logging.getLogger("utils")
    level = logger.level
    datasets.disable_progress_bars()
    logger.setLevel(logging.ERROR)
    yield tmp_path_factory.mktemp("fuzz")
    logger.setLevel(level)
    if progress:
        datasets.enable_progress_bars()


def write(directory: Path, name: str, content: bytes) -> str:
    """Write a file and pin its mtime: to a cache keyed on path and mtime every rewrite of a name looks unchanged."""
    path = directory / name
    path.write_bytes(content)
    os.utime(path, ns=(PINNED_MTIME_NS, PINNED_MTIME_NS))
    return str(path)


def model_args(directory: Path) -> ModelArguments:
    return ModelArguments(cache_dir=str(directory / "cache"))


def load_classification(directory: Path, path: str, **kwargs) -> tuple[dict, ClassificationDataArguments]:
    data = load_classification_data(ClassificationDataArguments(train_file=path, **kwargs), model_args(directory))
    raw, args = data.raw, data.settled
    return raw["train"].to_dict(), args


def load_ner(directory: Path, path: str, split: str = "train", **kwargs) -> dict:
    args = NerDataArguments(**{f"{split}_file": path}, **kwargs)
    raw = load_ner_data(args, model_args(directory)).raw
    return raw[split].to_dict()


def load_or_refuse(load: Callable[[], object], path: str) -> object | None:
    """The loader's result, or None when it raised the project's error naming the file; anything else propagates."""
    try:
        return load()
    except FinetuneError as err:
        assert path in str(err), f"the error does not name the file: {err}"
        return None


def first_bad_line(raw: bytes) -> int | None:
    """The line a loader must name for bytes that are not UTF-8 text (undecodable, or a NUL from UTF-16), found with
    Python's own decoder; None for clean text."""
    body = raw[len(codecs.BOM_UTF8) :] if raw.startswith(codecs.BOM_UTF8) else raw
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as err:
        return body.count(b"\n", 0, err.start) + 1
    return body.count(b"\n", 0, body.index(b"\x00")) + 1 if b"\x00" in body else None


def check_damaged(load: Callable[[], object], path: str, raw: bytes) -> None:
    """Bytes that are not UTF-8 text are an error naming their line; anything else loads or names the file."""
    line = first_bad_line(raw)
    if line is None:
        load_or_refuse(load, path)
    else:
        with pytest.raises(DataError, match=re.escape(f"{path}:{line}: ")):
            load()


def encode(lines: list[str], newline: str, final_newline: bool, bom: bool) -> bytes:
    text = newline.join(lines) + (newline if final_newline and lines else "")
    return (codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8")


PAYLOADS = st.one_of(
    st.binary(min_size=1, max_size=16),
    st.text(st.characters(min_codepoint=0x80, max_codepoint=0xFF), min_size=1, max_size=8).map(
        lambda t: t.encode("latin-1")
    ),
    st.text(CHAR, min_size=1, max_size=8).map(lambda t: t.encode("utf-16")),
    st.text(CHAR, min_size=1, max_size=8).map(lambda t: t.encode("utf-16-le")),
    st.sampled_from(
        [
            b"\n",
            b"\r",
            b"\r\n",
            b"\t",
            b" ",
            b",",
            b'"',
            b"[",
            b"]",
            b"{",
            b"}",
            b"\\",
            b"\xef\xbb\xbf",
            b"-DOCSTART- -X- O\n",
            b"null",
            b"NaN",
        ]
    ),
    st.just(b"x" * 300_000),  # a huge line (and a CSV field over the csv module's default limit)
)
MUTATIONS = st.lists(
    st.tuples(st.sampled_from(["insert", "replace", "delete", "truncate"]), st.floats(0, 1), PAYLOADS),
    min_size=1,
    max_size=3,
)


def damage(raw: bytes, mutations: list[tuple[str, float, bytes]]) -> bytes:
    """Random bytes inserted or written over, a slice deleted, or the file cut short."""
    for kind, where, payload in mutations:
        at = int(where * len(raw))
        if kind == "truncate":
            raw = raw[:at]
        elif kind == "delete":
            raw = raw[:at] + raw[at + len(payload) :]
        elif kind == "replace":
            raw = raw[:at] + payload + raw[at + len(payload) :]
        else:
            raw = raw[:at] + payload + raw[at:]
    return raw


# ---------------------------------------------------------------- CoNLL


@st.composite
def conll_files(draw) -> dict:
    """A CoNLL file as its lines: ("docstart" | "blank" | "token", text, columns, document) entries."""
    n_columns = draw(st.integers(1, 4))
    tabs = n_columns > 1 and draw(st.booleans())
    # --tag_column may pick any column, so every column holds what can be a tag
    value = (TAB_VALUE if tabs else WORD).filter(well_formed)
    tag = TAB_VALUE.filter(well_formed) if tabs else TAG
    entries: list[tuple[str, str, list[str] | None, int]] = []
    first_token_line = True
    for document in range(draw(st.integers(1, 3))):
        has_docstart = document > 0 or draw(st.booleans())
        if has_docstart:
            marker = draw(
                st.sampled_from(
                    ["-DOCSTART-\t-X-\tO", "-DOCSTART-"]
                    if tabs
                    else ["-DOCSTART- -X- -X- O", "-DOCSTART-", "  -DOCSTART- O"]
                )
            )
            entries.append(("docstart", marker, None, document))
            entries += [("blank", "", None, document)] * draw(st.integers(0, 1))
        for _ in range(draw(st.integers(0 if has_docstart else 1, 3))):
            for _ in range(draw(st.integers(1, 5))):
                columns = [draw(value)] + [draw(value) for _ in range(n_columns - 2)] + [draw(tag)] * (n_columns > 1)
                if tabs:
                    text = "\t".join(" " * draw(st.integers(0, 1)) + c for c in columns)
                else:
                    spaces = st.sampled_from([" ", "   "] if first_token_line else [" ", "\t", " \t "])
                    pad = " " * draw(st.integers(0, 1))
                    text = pad + "".join(c + draw(spaces) for c in columns[:-1]) + columns[-1]
                first_token_line = False
                entries.append(("token", text, columns, document))
            for _ in range(draw(st.integers(1, 2))):
                entries.append(("blank", draw(st.sampled_from(["", " ", "\t", "  \t"])), None, document))
    return {
        "entries": entries,
        "n_columns": n_columns,
        "tag_column": draw(st.integers(-n_columns, n_columns - 1)) if n_columns > 1 else -1,
        "newline": draw(st.sampled_from(["\n", "\r\n"])),
        "final_newline": draw(st.booleans()),
        "bom": draw(st.booleans()),
    }


def conll_bytes(spec: dict, entries: list | None = None) -> bytes:
    entries = spec["entries"] if entries is None else entries
    return encode([text for _, text, _, _ in entries], spec["newline"], spec["final_newline"], spec["bom"])


def expected_sentences(entries: list, tag_column: int) -> list[dict]:
    """Sentences of the entries: runs of token lines, each with its first line and document."""
    sentences: list[dict] = []
    inside = False
    for number, (kind, _, columns, document) in enumerate(entries, start=1):
        if kind != "token":
            inside = False
            continue
        if not inside:
            sentences.append({"tokens": [], "tags": [], "line": number, "document": document})
            inside = True
        sentences[-1]["tokens"].append(columns[0])
        sentences[-1]["tags"].append(columns[tag_column])
    return sentences


def check_conll(directory: Path, path: str, spec: dict, sentences: list[dict]) -> None:
    """`read_conll` and `load_ner_data` give exactly the sentences (or refuse a file without any)."""
    tagged = spec["n_columns"] > 1
    if not sentences:
        with pytest.raises(DataError, match=re.escape(f"{path}: no sentences found")):
            read_conll(path, spec["tag_column"])
        return
    corpus = read_conll(path, spec["tag_column"])
    assert corpus.tokens == [s["tokens"] for s in sentences]
    assert corpus.tags == ([s["tags"] for s in sentences] if tagged else None)
    assert corpus.document_id == [s["document"] for s in sentences]
    assert corpus.line == [s["line"] for s in sentences]
    raw = load_ner(directory, path, "train" if tagged else "test", tag_column=spec["tag_column"])
    assert raw["tokens"] == corpus.tokens
    assert raw.get("ner_tags") == corpus.tags
    assert raw["document_id"] == [str(s["document"]) for s in sentences]
    assert raw["location"] == [f"{path}:{s['line']}" for s in sentences]


@FUZZ
@given(spec=conll_files())
def test_conll_valid_files_load_exactly(workdir, spec):
    path = write(workdir, "train.conll", conll_bytes(spec))
    check_conll(workdir, path, spec, expected_sentences(spec["entries"], spec["tag_column"]))


@FUZZ
@given(spec=conll_files(), cut=st.floats(0, 1))
def test_conll_cut_at_a_line_keeps_exactly_the_lines_before(workdir, spec, cut):
    entries = spec["entries"][: int(cut * len(spec["entries"]))]
    path = write(workdir, "cut.conll", conll_bytes(spec, entries))
    check_conll(workdir, path, spec, expected_sentences(entries, spec["tag_column"]))


@FUZZ
@given(
    lines=st.lists(
        st.sampled_from(["-DOCSTART- -X- -X- O", "-DOCSTART-", "-DOCSTART-\tO", "", " ", "\t", "\r"]), max_size=8
    ),
    bom=st.booleans(),
)
def test_conll_without_sentences_is_refused(workdir, lines, bom):
    path = write(workdir, "empty.conll", encode(lines, "\n", True, bom))
    with pytest.raises(DataError, match=re.escape(f"{path}: no sentences found")):
        read_conll(path)
    with pytest.raises(DataError, match=re.escape(f"{path}: no sentences found")):
        load_ner(workdir, path)


@FUZZ
@given(spec=conll_files().filter(lambda spec: any(kind == "token" for kind, *_ in spec["entries"])), data=st.data())
def test_conll_wrong_column_count_names_the_line(workdir, spec, data):
    tokens = [i for i, entry in enumerate(spec["entries"]) if entry[0] == "token"]
    bad = data.draw(st.sampled_from(tokens))
    n_columns = data.draw(st.integers(1, 6).filter(lambda n: n != spec["n_columns"]))
    separator = "\t" if "\t" in spec["entries"][tokens[0]][1] else " "
    entries = list(spec["entries"])
    entries[bad] = ("token", separator.join(["w"] * n_columns), None, 0)
    path = write(workdir, "columns.conll", conll_bytes(spec, entries))
    if bad != tokens[0]:
        error_line = bad + 1
    elif len(tokens) > 1:  # the first token line sets the column count: the next one disagrees
        error_line = tokens[1] + 1
    else:
        assert len(read_conll(path).tokens) == 1
        return
    for load in (lambda: read_conll(path), lambda: load_ner(workdir, path, "test")):
        with pytest.raises(DataError, match=re.escape(f"{path}:{error_line}: this line has")):
            load()


@FUZZ
@given(spec=conll_files(), mutations=MUTATIONS)
def test_conll_damaged_files_load_or_name_the_line(workdir, spec, mutations):
    raw = damage(conll_bytes(spec), mutations)
    path = write(workdir, "damaged.conll", raw)
    check_damaged(lambda: read_conll(path), path, raw)
    check_damaged(lambda: load_ner(workdir, path, "test"), path, raw)


# ---------------------------------------------------------------- classification tables (CSV, TSV, JSON, JSONL)


@st.composite
def classification_rows(draw, fmt: str) -> dict:
    """Rows of a classification file and what loading them must give."""
    text = TEXT.filter(lambda t: not any(c in t for c in "\t\n\r")) if fmt == "tsv" else TEXT
    kind = draw(st.sampled_from(["names", "ids", "scores", "multi"]))
    pair = draw(st.sampled_from([None, ("sentence1", "sentence2"), ("premise", "hypothesis")]))
    label_column = draw(st.sampled_from(["label", "labels", "score", "target"]))
    n = draw(st.integers(1, 6))
    texts = [[draw(text) for _ in range(2 if pair else 1)] for _ in range(n)]
    if kind == "names":
        labels = [draw(NAME) for _ in range(n)]
    elif kind == "ids":
        labels = [draw(st.integers(-1000, 10**6)) for _ in range(n)]
    elif kind == "scores":
        labels = [draw(st.floats(allow_nan=False, allow_infinity=False)) for _ in range(n)]
    else:
        labels = [draw(st.lists(NAME, min_size=0 if fmt in {"json", "jsonl"} else 1, max_size=3)) for _ in range(n)]
    # what the loader must make of the labels
    if kind == "names":
        problem, expected = "single_label_classification", [label.strip() for label in labels]
    elif kind == "ids":
        problem, expected = "single_label_classification", [str(label) for label in labels]
    elif kind == "scores" and all(label.is_integer() for label in labels) and fmt in {"csv", "tsv"}:
        # class names as written: `1.0` is not silently the class `1`; two spellings of one number (0.0, -0.0) are
        # an error of their own (tests/test_degenerate_data.py)
        assume(len({repr(label) for label in labels}) == len(set(labels)))
        problem, expected = "single_label_classification", [repr(label) for label in labels]
    elif kind == "scores" and all(label.is_integer() for label in labels):
        problem, expected = "single_label_classification", [str(int(label)) for label in labels]
    elif kind == "scores":
        problem, expected = "regression", labels
    elif fmt in {"json", "jsonl"} or any(len(label) > 1 for label in labels):
        problem, expected = "multi_label_classification", [sorted({n.strip() for n in label}) for label in labels]
    else:  # one name per row in a text cell: single-label
        problem, expected = "single_label_classification", [label[0].strip() for label in labels]
    return {
        "texts": texts,
        "labels": labels,
        "pair": pair,
        "label_column": label_column,
        "problem": problem,
        "expected": expected,
        "id_column": draw(st.booleans()),
        "bom": draw(st.booleans()),
        "newline": draw(st.sampled_from(["\n", "\r\n"])),
        "blank_lines": draw(st.lists(st.booleans(), min_size=n, max_size=n)),
    }


def text_columns(rows: dict) -> list[str]:
    return list(rows["pair"]) if rows["pair"] else ["text"]


def delimited(header: list[str], records: list[list[str]], fmt: str, rows: dict, quoting: int) -> bytes:
    """CSV through the csv module (quotes, commas and line breaks inside cells) or TSV as plain tab-joined lines;
    blank lines between records where the spec asks."""
    stream = io.StringIO(newline="")
    writer = csv.writer(stream, lineterminator=rows["newline"], quoting=quoting)
    quote_all = csv.writer(stream, lineterminator=rows["newline"], quoting=csv.QUOTE_ALL)
    for index, record in enumerate([header] + records):
        if fmt == "tsv":
            stream.write("\t".join(record) + rows["newline"])
        else:  # with "\n" line ends the csv module leaves a bare "\r" unquoted, which every reader takes as a line end
            (quote_all if any("\r" in cell for cell in record) else writer).writerow(record)
        if index and rows["blank_lines"][index - 1]:
            stream.write(rows["newline"])
    return (codecs.BOM_UTF8 if rows["bom"] else b"") + stream.getvalue().encode("utf-8")


def classification_table(rows: dict, fmt: str, quoting: int = csv.QUOTE_MINIMAL) -> bytes:
    header = text_columns(rows) + [rows["label_column"]] + (["id"] if rows["id_column"] else [])
    records = []
    for number, (texts, label) in enumerate(zip(rows["texts"], rows["labels"])):
        cell = ",".join(label) if isinstance(label, list) else repr(label) if isinstance(label, float) else str(label)
        records.append(texts + [cell] + ([str(number * 7)] if rows["id_column"] else []))
    return delimited(header, records, fmt, rows, quoting)


def classification_json(rows: dict, fmt: str, style: str, ensure_ascii: bool) -> bytes:
    records = []
    for number, (texts, label) in enumerate(zip(rows["texts"], rows["labels"])):
        record = dict(zip(text_columns(rows), texts)) | {rows["label_column"]: label}
        records.append(record | ({"id": number * 7} if rows["id_column"] else {}))
    return json_bytes(records, fmt, style, ensure_ascii, rows)


def json_bytes(records: list[dict], fmt: str, style: str, ensure_ascii: bool, rows: dict) -> bytes:
    """JSON Lines (blank lines where the spec asks), or for .json a document (list) when `style` says so."""
    if fmt == "json" and style == "document":
        text = json.dumps(records, ensure_ascii=ensure_ascii, indent=2 if rows["newline"] == "\n" else None)
    else:
        text = "".join(
            json.dumps(record, ensure_ascii=ensure_ascii) + rows["newline"] * (1 + blank)
            for record, blank in zip(records, rows["blank_lines"])
        )
    return (codecs.BOM_UTF8 if rows["bom"] else b"") + text.encode("utf-8")


def check_classification(directory: Path, path: str, rows: dict) -> None:
    names = {"text_column_names": "text"} if rows["id_column"] and not rows["pair"] else {}
    loaded, args = load_classification(directory, path, **names)
    assert loaded["text"] == [texts[0] for texts in rows["texts"]]
    if rows["pair"]:
        assert loaded["text_pair"] == [texts[1] for texts in rows["texts"]]
    assert args.problem_type == rows["problem"]
    assert loaded["label"] == rows["expected"]
    assert loaded["location"] == [f"{path} row {i}" for i in range(1, len(rows["texts"]) + 1)]


@FUZZ
@given(
    fmt=st.sampled_from(["csv", "tsv"]), data=st.data(), quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])
)
def test_classification_csv_tsv_valid_files_load_exactly(workdir, fmt, data, quoting):
    rows = data.draw(classification_rows(fmt))
    check_classification(workdir, write(workdir, f"train.{fmt}", classification_table(rows, fmt, quoting)), rows)


@FUZZ
@given(
    fmt=st.sampled_from(["json", "jsonl"]),
    data=st.data(),
    style=st.sampled_from(["lines", "document"]),
    ensure_ascii=st.booleans(),
)
def test_classification_json_valid_files_load_exactly(workdir, fmt, data, style, ensure_ascii):
    rows = data.draw(classification_rows(fmt))
    raw = classification_json(rows, fmt, style, ensure_ascii)
    check_classification(workdir, write(workdir, f"train.{fmt}", raw), rows)


# ---------------------------------------------------------------- NER tables (CSV, TSV, JSON, JSONL)


@st.composite
def ner_rows(draw, fmt: str) -> dict:
    """Sentences of a NER table, the cell style of its token and tag columns, and its document ids."""
    json_file = fmt in {"json", "jsonl"}
    styles = ["list", "spaces"] + ([] if json_file else ["python"])
    token_style, tag_style = draw(st.sampled_from(styles)), draw(st.sampled_from(styles + ["ids"] * json_file))
    listed = TEXT.filter(lambda t: t.strip(ASCII_SPACE))
    sentences = []
    for _ in range(draw(st.integers(1, 5))):
        n = draw(st.integers(1, 6))
        tokens = [draw(WORD if token_style == "spaces" else listed) for _ in range(n)]
        tags = [
            draw(
                TAG
                if tag_style == "spaces"
                else st.sampled_from(IOB_TAGS)
                if tag_style == "ids"
                else st.one_of(st.sampled_from(IOB_TAGS), TEXT.filter(well_formed))
            )
            for _ in range(n)
        ]
        sentences.append({"tokens": tokens, "tags": tags})
    document_ids = draw(
        st.one_of(
            st.none(),
            st.lists(st.integers(0, 3) if json_file else WORD, min_size=len(sentences), max_size=len(sentences)),
        )
    )
    return {
        "sentences": sentences,
        "token_style": token_style,
        "tag_style": tag_style,
        "token_column": draw(st.sampled_from(["tokens", "words"])),
        "tag_column": draw(st.sampled_from(["ner_tags", "tags", "labels", "ner"])),
        "document_ids": document_ids,
        "separator": draw(st.sampled_from([" ", "  ", "\x0c"] if fmt == "tsv" else [" ", "\t", "\n", " \r\n "])),
        "bom": draw(st.booleans()),
        "newline": draw(st.sampled_from(["\n", "\r\n"])),
        "blank_lines": draw(st.lists(st.booleans(), min_size=len(sentences), max_size=len(sentences))),
    }


def ner_cell(values: list[str], style: str, rows: dict) -> object:
    """A list (JSON list or, in a CSV/TSV cell, JSON text), tag ids, a Python list literal, or words and spaces."""
    if style == "list":
        return values
    if style == "ids":
        return [IOB_TAGS.index(value) for value in values]
    if style == "python":
        return repr(values)
    return rows["separator"] + rows["separator"].join(values)


def reads_as_list(cell: str, tags: bool) -> bool:
    """Whether a string cell is read as a list, by design: a well-formed, non-empty JSON list (or Python list
    literal) of strings, or for tags of strings and ints. Any other cell is words between ASCII whitespace."""
    text = cell.strip(ASCII_SPACE)
    if not (text.startswith("[") and text.endswith("]")):
        return False
    for parse in (json.loads, ast.literal_eval):
        try:
            items = parse(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if (
            isinstance(items, list)
            and items
            and all(
                isinstance(item, str) or (tags and isinstance(item, int) and not isinstance(item, bool))
                for item in items
            )
        ):
            return True
    return False


def list_shaped(rows: dict) -> bool:
    """Whether a words-and-spaces cell of the rows would read as a list (such a cell is one, by design)."""
    return any(
        reads_as_list(record[rows[column]], column == "tag_column")
        for record in ner_records(rows)
        for column, style in (("token_column", "token_style"), ("tag_column", "tag_style"))
        if rows[style] == "spaces"
    )


def spaced_rows(tokens: list[str], tags: list[str], separator: str = " ") -> dict:
    """One sentence as a words-and-spaces token cell and a list of tags: the shape of the explicit examples."""
    return {
        "sentences": [{"tokens": tokens, "tags": tags}],
        "token_style": "spaces",
        "tag_style": "list",
        "token_column": "tokens",
        "tag_column": "ner_tags",
        "document_ids": None,
        "separator": separator,
        "bom": False,
        "newline": "\n",
        "blank_lines": [False],
    }


def ner_records(rows: dict) -> list[dict]:
    records = []
    for index, sentence in enumerate(rows["sentences"]):
        record = {
            rows["token_column"]: ner_cell(sentence["tokens"], rows["token_style"], rows),
            rows["tag_column"]: ner_cell(sentence["tags"], rows["tag_style"], rows),
        }
        if rows["document_ids"] is not None:
            record["document_id"] = rows["document_ids"][index]
        records.append(record)
    return records


def ner_table(rows: dict, fmt: str, ensure_ascii: bool) -> bytes:
    records = ner_records(rows)
    header = list(records[0])
    cells = [
        [
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=ensure_ascii)
            for value in record.values()
        ]
        for record in records
    ]
    return delimited(header, cells, fmt, rows, csv.QUOTE_MINIMAL)


def check_ner(directory: Path, path: str, rows: dict) -> None:
    ids = {"label_list": ",".join(IOB_TAGS)} if rows["tag_style"] == "ids" else {}
    loaded = load_ner(directory, path, **ids)
    assert loaded["tokens"] == [s["tokens"] for s in rows["sentences"]]
    assert loaded["ner_tags"] == [s["tags"] for s in rows["sentences"]]
    documents = rows["document_ids"] or range(len(rows["sentences"]))
    assert loaded["document_id"] == [str(document) for document in documents]
    assert loaded["location"] == [f"{path} row {i}" for i in range(1, len(rows["sentences"]) + 1)]


@FUZZ
@given(
    table=st.sampled_from(["csv", "tsv"]).flatmap(
        lambda fmt: st.tuples(st.just(fmt), ner_rows(fmt).filter(lambda rows: not list_shaped(rows)))
    ),
    ensure_ascii=st.booleans(),
)
# list-looking words in a CSV/TSV cell (once all refused by the generator, as any `[...]` cell was read as a list)
@example(table=("csv", spaced_rows(["[0]"], ["O"])), ensure_ascii=True)
@example(table=("tsv", spaced_rows(["[A]", "[:]"], ["O", "O"], "\x0c")), ensure_ascii=True)
@example(table=("csv", spaced_rows(['["a",', "1]"], ["O", "O"])), ensure_ascii=True)
def test_ner_csv_tsv_valid_files_load_exactly(workdir, table, ensure_ascii):
    fmt, rows = table
    check_ner(workdir, write(workdir, f"train.{fmt}", ner_table(rows, fmt, ensure_ascii)), rows)


@FUZZ
@given(
    fmt=st.sampled_from(["json", "jsonl"]),
    rows=ner_rows("json").filter(lambda rows: not list_shaped(rows)),
    style=st.sampled_from(["lines", "document"]),
    ensure_ascii=st.booleans(),
)  # (the same rows for .jsonl)
# Found by this test: a token cell " [0]" was read as the list [0] (the word "0"), and " [A]" or " [:]" were refused
# as "looks like a list but does not parse"; a cell is words unless it is a list of strings.
@example(fmt="jsonl", rows=spaced_rows(["[0]"], ["O"]), style="lines", ensure_ascii=False)
@example(fmt="jsonl", rows=spaced_rows(["[A]"], ["O"]), style="lines", ensure_ascii=False)
@example(fmt="json", rows=spaced_rows(["[:]"], ["O"]), style="document", ensure_ascii=True)
@example(
    fmt="json", rows=spaced_rows(["[]", "[1.5]", "[true]"], ["O", "B-PER", "O"]), style="lines", ensure_ascii=False
)
def test_ner_json_valid_files_load_exactly(workdir, fmt, rows, style, ensure_ascii):
    raw = json_bytes(ner_records(rows), fmt, style, ensure_ascii, rows)
    check_ner(workdir, write(workdir, f"train.{fmt}", raw), rows)


# ---------------------------------------------------------------- damaged tables, wrong field counts, missing labels

TABLE_FORMATS = ["csv", "tsv", "json", "jsonl"]


@st.composite
def table_files(draw) -> tuple[str, str, bytes]:
    """A valid classification or NER file in any table format: (task, format, bytes)."""
    task, fmt = draw(st.sampled_from(["classification", "ner"])), draw(st.sampled_from(TABLE_FORMATS))
    if task == "classification":
        rows = draw(classification_rows(fmt))
        raw = (
            classification_table(rows, fmt)
            if fmt in {"csv", "tsv"}
            else classification_json(rows, fmt, "lines", draw(st.booleans()))
        )
    else:
        rows = draw(ner_rows(fmt))
        raw = (
            ner_table(rows, fmt, True)
            if fmt in {"csv", "tsv"}
            else json_bytes(ner_records(rows), fmt, "lines", False, rows)
        )
    return task, fmt, raw


def table_loader(directory: Path, task: str, path: str) -> Callable[[], object]:
    if task == "classification":
        return lambda: load_classification(directory, path)
    return lambda: load_ner(directory, path, label_list=",".join(IOB_TAGS))


@FUZZ
@given(file=table_files(), mutations=MUTATIONS)
def test_damaged_tables_load_or_name_the_line(workdir, file, mutations):
    task, fmt, raw = file
    raw = damage(raw, mutations)
    path = write(workdir, f"damaged.{fmt}", raw)
    check_damaged(table_loader(workdir, task, path), path, raw)


@FUZZ
@given(
    task=st.sampled_from(["classification", "ner"]),
    fmt=st.sampled_from(TABLE_FORMATS + ["conll"]),
    raw=st.one_of(st.binary(max_size=300), st.text(CHAR, max_size=200).map(str.encode)),
)
def test_random_bytes_load_or_name_the_file(workdir, task, fmt, raw):
    path = write(workdir, f"random.{fmt}", raw)
    if fmt == "conll":
        check_damaged(lambda: read_conll(path), path, raw)
        task = "ner"
    check_damaged(table_loader(workdir, task, path), path, raw)


@FUZZ
@given(fmt=st.sampled_from(["csv", "tsv"]), data=st.data(), extra=st.booleans())
def test_wrong_field_count_names_the_line(workdir, fmt, data, extra):
    rows = data.draw(classification_rows(fmt).filter(lambda rows: not rows["pair"]))
    rows["texts"] = [[text.replace("\r", " ").replace("\n", " ")] for (text,) in rows["texts"]]  # one line a record
    rows["blank_lines"] = [False] * len(rows["texts"])
    lines = classification_table(rows, fmt, csv.QUOTE_ALL).decode("utf-8-sig").split(rows["newline"])[:-1]
    bad = data.draw(st.integers(1, len(lines) - 1))
    lines[bad] = lines[bad] + ("\t" if fmt == "tsv" else ",") + '"extra"' if extra else '"only one"'
    path = write(workdir, f"fields.{fmt}", rows["newline"].join(lines).encode("utf-8"))
    with pytest.raises(DataError, match=re.escape(f"{path}:{bad + 1}: ") + r"\d+ field\(s\) but the header has"):
        load_classification(workdir, path, text_column_names="text")


MISSING = {"csv": ["", " ", "  \t "], "tsv": ["", " "], "json": [None, "", " ", math.nan], "jsonl": [None, ""]}


@FUZZ
@given(fmt=st.sampled_from(TABLE_FORMATS), data=st.data())
def test_missing_labels_and_tags_name_the_row(workdir, fmt, data):
    rows = data.draw(
        classification_rows(fmt).filter(
            lambda rows: rows["problem"] != "multi_label_classification" or fmt in {"csv", "tsv"}
        )
    )
    row = data.draw(st.integers(0, len(rows["texts"]) - 1))
    rows["labels"][row] = data.draw(st.sampled_from(MISSING[fmt]))
    raw = classification_table(rows, fmt) if fmt in {"csv", "tsv"} else classification_json(rows, fmt, "lines", True)
    path = write(workdir, f"missing.{fmt}", raw)
    names = {"text_column_names": "text"} if rows["id_column"] and not rows["pair"] else {}
    with pytest.raises(DataError) as refused:
        load_classification(workdir, path, **names)
    # an empty string among numbers (or NaN among names) in JSON is refused first, as a type change naming its line
    type_change = rf"{re.escape(path)}:\d+: '{rows['label_column']}' changed from"
    assert f"{path} row {row + 1}: empty or missing label" in str(refused.value) or (
        fmt in {"json", "jsonl"} and re.match(type_change, str(refused.value))
    ), str(refused.value)

    ner = data.draw(ner_rows(fmt).filter(lambda rows: rows["tag_style"] == "list"))
    row = data.draw(st.integers(0, len(ner["sentences"]) - 1))
    tags = ner["sentences"][row]["tags"]
    tags[data.draw(st.integers(0, len(tags) - 1))] = data.draw(st.sampled_from(["", " "]))
    raw = ner_table(ner, fmt, True) if fmt in {"csv", "tsv"} else json_bytes(ner_records(ner), fmt, "lines", True, ner)
    path = write(workdir, f"missing.{fmt}", raw)
    with pytest.raises(DataError, match=re.escape(f"{path} row {row + 1}: every tag")):
        load_ner(workdir, path)


# ---------------------------------------------------------------- fixed cases the properties rely on


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "conll"])
def test_huge_lines_load_whole(tmp_path, fmt):
    word = "é" * 400_000  # over the csv module's default field limit (131072) and pyarrow's JSON block size
    if fmt == "conll":
        path = tmp_path / "t.conll"
        path.write_text(f"{word} O\nend O\n", encoding="utf-8")
        assert read_conll(path).tokens == [[word, "end"]]
        return
    path = tmp_path / f"t.{fmt}"
    if fmt in {"csv", "tsv"}:
        sep = "\t" if fmt == "tsv" else ","
        path.write_text(f"text{sep}label\n{word}{sep}a\nshort{sep}b\n", encoding="utf-8")
    else:
        path.write_text(
            json.dumps({"text": word, "label": "a"}) + "\n" + json.dumps({"text": "short", "label": "b"}) + "\n",
            encoding="utf-8",
        )
    loaded, _ = load_classification(tmp_path, str(path))
    assert loaded["text"] == [word, "short"] and loaded["label"] == ["a", "b"]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet"])
def test_a_rewritten_file_with_its_old_mtime_is_not_served_stale(tmp_path, fmt):
    path = tmp_path / f"t.{fmt}"
    for rows in ([{"text": "first", "label": "a"}], [{"text": "second", "label": "b"}, {"text": "c", "label": "c"}]):
        if fmt == "parquet":
            datasets.Dataset.from_list(rows).to_parquet(path)
        else:
            path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        os.utime(path, ns=(PINNED_MTIME_NS, PINNED_MTIME_NS))  # as cp -p, rsync -t or tar leave it
        loaded, _ = load_classification(tmp_path, str(path))
        assert loaded["text"] == [row["text"] for row in rows]


def test_csv_cells_stay_text_and_a_number_column_is_not_the_text(write_file, tmp_path):
    loaded, args = load_classification(tmp_path, write_file("t.csv", "id,text,label\n1,007,1.50\n2,a b,2\n"))
    assert loaded["text"] == ["007", "a b"] and loaded["label"] == [1.5, 2.0] and args.problem_type == "regression"
    loaded, _ = load_classification(tmp_path, write_file("u.csv", "id,text,label\n1,hello,TRUE\n2,42,FALSE\n"))
    assert loaded["text"] == ["hello", "42"] and loaded["label"] == ["TRUE", "FALSE"]
    ner = load_ner(tmp_path, write_file("n.csv", 'tokens,ner_tags\n1999,O\n[1] Smith,O B-PER\n"[""a b""]",O\n'))
    assert ner["tokens"] == [["1999"], ["[1]", "Smith"], ["a b"]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "a", "text": "b", "label": "x"}\n', r"t.jsonl:1: .*the key 'text' appears twice"),
        ('{"text": "\\ud83d", "label": "x"}\n', r"t.jsonl:1: the escape '\\ud83d' is half of a UTF-16 surrogate pair"),
        ('{"text": "a", "label": 123456789012345678901234}\n', r"t.jsonl:1: .*does not fit in 64 bits"),
        ('{"text": "a", "label": ' + "[" * 5000 + "]" * 5000 + "}\n", r"t.jsonl:1: not usable JSON"),
        ('{"text": "a", "label": ["x", null]}\n', r"t.jsonl row 1: a label list must hold names"),
        ('{"text": "a", "label": {"k": 1}}\n', r"t.jsonl row 1: a label must be a name"),
        ('{"text": "a", "label": Infinity}\n{"text": "b", "label": 0.5}\n', r"t.jsonl row 1: .*finite number"),
    ],
)
def test_json_values_the_loader_would_mangle_are_refused(write_file, tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        load_classification(tmp_path, write_file("t.jsonl", content))


def test_negative_tag_ids_do_not_wrap_around(write_file, tmp_path):
    with pytest.raises(DataError, match=r"t.jsonl row 1: tag id out of range"):
        load_ner(tmp_path, write_file("t.jsonl", '{"tokens": ["a"], "ner_tags": [-1]}\n'), label_list="O,B-PER")
