"""Load raw splits from the Hub or from files (CSV, TSV, JSON, JSONL, parquet, CoNLL) into a `DatasetDict`.

Every split is loaded on its own, so files of different splits may name their columns differently; every failure
becomes a `DataError` that names the file (and the line where the format allows).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict

from utils.core.annotations.loading import ANNOTATION_FORMATS, load_annotation_file
from utils.core.arguments import DataArguments, split_names
from utils.core.bounds import check_cell_sizes
from utils.core.errors import DataError
from utils.core.files import read_utf8, read_utf8_lines
from utils.core.format_detection import detected_format
from utils.core.json_text import parse_json
from utils.core.splits import ROW_COLUMN, SPLIT_FILES, choose_splits, drop_columns, shuffled, split_source

__all__ = ["SPLIT_FILES", "split_source"]  # where the pipeline and the checks have always found them

logger = logging.getLogger(__name__)

FORMAT_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
    ".conll": "conll",
    ".txt": "conll",
    ".iob": "conll",
    ".bio": "conll",
    ".ann": "brat",  # brat standoff: the .ann file beside its .txt
}


#: A reader for token-per-line files: path -> Dataset (only the NER task has one).
ConllReader = Callable[[str], Dataset]


def file_format(path: str, forced: str | None = None) -> str:
    """The format of a data file: `--data_format` if given, else from its extension; a folder is brat standoff.
    Label Studio (.json) and doccano (.jsonl) exports, and a JSON document in a .jsonl file, are told from their
    content (utils/core/format_detection.py)."""
    if forced:
        return forced
    if os.path.isdir(path):
        return "brat"
    suffix = Path(path).suffix.lower()
    if suffix not in FORMAT_BY_SUFFIX:
        raise DataError(
            f"cannot tell the format from the extension '{suffix}'. Use one of {sorted(FORMAT_BY_SUFFIX)} "
            "or pass --data_format.",
            source=path,
        )
    return detected_format(path, FORMAT_BY_SUFFIX[suffix])


def root_message(err: BaseException) -> str:
    """The innermost cause's message: `datasets` wraps the parser's useful one in generic errors."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    return f"{type(err).__name__}: {err}"


#: How a CSV/TSV cell that is a number looks (pandas' reading without its NaN/inf/thousands spellings).
INTEGER = re.compile(r"[+-]?[0-9]+")

NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def json_kind(value: object) -> str | None:
    """The JSON type of a value as an arrow column sees it (ints and floats are both numbers); None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string" if isinstance(value, str) else "a list" if isinstance(value, list) else "an object"


def check_same_types(record: dict, first: dict[str, tuple[str, str]], source: str) -> None:
    """Every key keeps the JSON type it first had (null aside): an arrow column has one type, and arrow's own error
    names neither the file nor the line."""
    for key, value in record.items():
        kind = json_kind(value)
        if kind is not None:
            seen, where = first.setdefault(key, (kind, source))
            if seen != kind:
                raise DataError(
                    f"{key!r} changed from {seen} (at {where}) to {kind}; give each key one type in every "
                    "row (null for a missing value).",
                    source=source,
                )


def check_json_lines(path: str) -> None:
    """JSON Lines: every non-blank line must be one JSON object, each key of one type; name the first bad line."""
    first: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(read_utf8_lines(path), start=1):
        if not line.strip():
            continue
        record = parse_json(line, f"{path}:{number}")
        if not isinstance(record, dict):
            raise DataError("each line must be a JSON object {...}.", source=f"{path}:{number}")
        check_same_types(record, first, f"{path}:{number}")


def read_json_document(text: str, path: str) -> Dataset:
    """A JSON document: a list of objects (one per row) or one object (one row). Built from Python's exact parse:
    the `datasets` loader round-trips documents through ujson, which keeps only 10 significant digits of a float."""
    document = parse_json(text, path)
    records = [document] if isinstance(document, dict) else document
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise DataError(
            "a JSON document must be a list of objects [{...}, ...] (or JSON Lines: one object per line).", source=path
        )
    first: dict[str, tuple[str, str]] = {}
    for row, record in enumerate(records, start=1):
        check_same_types(record, first, f"{path} row {row}")
    names = list(dict.fromkeys(name for record in records for name in record))  # every row's keys, in order
    if not names:
        raise DataError("holds no rows.", source=path)
    try:
        return Dataset.from_dict({name: [record.get(name) for record in records] for name in names})
    except Exception as err:  # pyarrow: a column whose values have different types
        raise DataError(f"could not be read as json: {root_message(err)}", source=path) from None


def is_json_lines(text: str) -> bool:
    """A `.json` file may hold one object per line (as the transformers examples write it) or one document."""
    text = text.lstrip()
    if not text.startswith("{"):
        return False
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return True
    return False


def read_delimited(path: str, fmt: str) -> Dataset:
    """A CSV or TSV file as text columns, every cell exactly as written (never a number, NaN or bool: a text "007"
    stays "007"); a row whose field count differs from the header's is an error naming its line. TSV has no
    quoting: quotes are text."""
    text = read_utf8(path)
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {"delimiter": ","}
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))  # one huge cell is still a cell
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, **dialect)
    header: list[str] | None = None
    columns: list[list[str]] = []
    line = 0
    try:
        for fields in reader:
            start, line = line + 1, reader.line_num
            if not fields:
                continue
            if header is None:
                header = fields
                duplicates = sorted({name for name in header if header.count(name) > 1})
                if duplicates:
                    raise DataError(
                        f"the header names column(s) {duplicates} twice; give each column its own name.",
                        source=f"{path}:{start}",
                    )
                columns = [[] for _ in header]
            elif len(fields) != len(header):
                raise DataError(
                    f"{len(fields)} field(s) but the header has {len(header)} ({', '.join(header)}); "
                    + field_count_hint(fmt, len(fields) > len(header)),
                    source=f"{path}:{start}",
                )
            else:
                for column, value in zip(columns, fields):
                    column.append(value)
    except csv.Error as err:
        raise DataError(
            f"not valid {fmt.upper()} ({err}); check the quotes of the row that starts here.",
            source=f"{path}:{line + 1}",
        ) from None
    if header is None:
        raise DataError("is empty; the first line must name the columns.", source=path)
    if not columns[0]:
        raise DataError("holds no rows, only the header.", source=path)
    return Dataset.from_dict(dict(zip(header, columns)))


def field_count_hint(fmt: str, too_many: bool) -> str:
    """What usually makes a CSV/TSV row one field too long, or too short."""
    separator = "tab" if fmt == "tsv" else "comma"
    if not too_many:
        return f"a field is missing: give every column a value (an empty value still needs its {separator})."
    if fmt == "tsv":
        return "a tab inside a text splits it (TSV has no quoting)."
    return 'quote a field that holds a comma, a quote or a line break ("a, b").'


def number_type(values: Sequence) -> type | None:
    """`int` (or `float`) when every non-empty cell of a CSV/TSV column is an integer (a number); else None."""
    cells = [value for value in values if value != ""]
    if not cells or not all(isinstance(value, str) for value in cells):
        return None
    if all(INTEGER.fullmatch(value) for value in cells):  # ids too long for int64 stay names, exactly as written
        return int if max(map(len, cells)) <= 18 else None
    return float if all(NUMBER.fullmatch(value) for value in cells) else None


def numbers_from_text(values: Sequence) -> list:
    """A CSV/TSV column of numbers as ints or floats (as pandas would read it); any other column unchanged. Empty
    cells stay empty strings, for the caller to refuse."""
    kind = number_type(values)
    return [kind(value) if kind and value != "" else value for value in values]


def content_fingerprint(path: str) -> str:
    """A hash of a file's bytes. `datasets` keys its cache on path and mtime alone, so a file rewritten with its old
    mtime (cp -p, rsync -t, tar, or twice within the clock's tick) would be served stale without it."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def load_table(path: str, fmt: str, cache_dir: str | None = None) -> Dataset:
    """Read one CSV/TSV (as text cells), JSON, JSONL or parquet file, strictly: empty cells stay empty strings
    (never NaN), `NA`/`None` stay text, TSV has no quoting."""
    if fmt in {"csv", "tsv"}:
        return read_delimited(path, fmt)
    if fmt in {"json", "jsonl"}:
        text = read_utf8(path)
        if not text.strip():
            raise DataError("is empty.", source=path)
        if fmt == "json" and not is_json_lines(text):
            return read_json_document(text, path)
        check_json_lines(path)
    builder = "json" if fmt == "jsonl" else fmt
    try:
        loader = datasets.load_dataset_builder(
            builder, name=f"content-{content_fingerprint(path)}", data_files=os.path.abspath(path), cache_dir=cache_dir
        )
        loader.download_and_prepare()
        splits = loader.info.splits or {}
        dataset = loader.as_dataset(split="train") if "train" in splits and splits["train"].num_examples else None
    except Exception as err:  # the library raises many types; the user needs the file and the cause
        raise DataError(f"could not be read as {fmt}: {root_message(err)}", source=path) from None
    if dataset is None or len(dataset) == 0 or not dataset.column_names:
        raise DataError("holds no rows.", source=path)
    return dataset


def load_split_file(path: str, fmt: str, conll_reader: ConllReader | None, cache_dir: str | None) -> Dataset:
    """One split from one file (brat: a folder)."""
    if fmt in ANNOTATION_FORMATS:
        if not os.path.exists(path):
            raise DataError("file or folder not found.", source=path)
        return load_annotation_file(path, fmt)
    if not os.path.isfile(path):
        raise DataError("file not found.", source=path)
    if fmt == "conll":
        if conll_reader is None:
            raise DataError(
                "CoNLL (token-per-line) files are for NER; give a CSV, TSV, JSON or parquet file.", source=path
            )
        return conll_reader(path)
    return load_table(path, fmt, cache_dir)


def load_hub_dataset(data_args: DataArguments, cache_dir: str | None, token: str | None) -> DatasetDict:
    """A dataset from the Hub (or the local `datasets` cache when offline), every split under its own name."""
    config = f" (configuration '{data_args.dataset_config_name}')" if data_args.dataset_config_name else ""
    try:
        loaded = datasets.load_dataset(
            data_args.dataset_name, data_args.dataset_config_name, cache_dir=cache_dir, token=token
        )
    except Exception as err:
        raise DataError(
            f"could not load dataset '{data_args.dataset_name}'{config}: {root_message(err)}. Offline "
            "(HF_DATASETS_OFFLINE=1) only datasets already in the cache load; otherwise pass local files with "
            "--train_file etc.",
        ) from None
    if not isinstance(loaded, DatasetDict):
        raise DataError(f"dataset '{data_args.dataset_name}'{config} did not load as named splits: {type(loaded)}")
    return loaded


def load_raw_datasets(
    data_args: DataArguments,
    conll_reader: ConllReader | None = None,
    cache_dir: str | None = None,
    token: str | None = None,
) -> DatasetDict:
    """All splits the arguments name (chosen by `choose_splits`, less --remove_columns), the training split shuffled
    on request, each capped by its `--max_*_samples`."""
    if data_args.dataset_name:
        raw = choose_splits(
            load_hub_dataset(data_args, cache_dir, token), data_args, f"dataset '{data_args.dataset_name}'"
        )
    else:
        raw = DatasetDict()
        for split, arg in SPLIT_FILES.items():
            path = getattr(data_args, arg)
            if path:
                raw[split] = load_split_file(path, file_format(path, data_args.data_format), conll_reader, cache_dir)
        if raw:
            raw = choose_splits(raw, data_args, "the data files")
    if not raw:
        raise DataError("no data given: pass --train_file/--validation_file/--test_file or --dataset_name.")
    raw = drop_columns(raw, split_names(data_args.remove_columns))
    if data_args.shuffle_train_dataset and "train" in raw:
        raw["train"] = shuffled(raw["train"], data_args.shuffle_seed)
    limits = {
        "train": data_args.max_train_samples,
        "validation": data_args.max_eval_samples,
        "test": data_args.max_predict_samples,
    }
    for split, limit in limits.items():
        if split in raw and limit is not None and limit < len(raw[split]):
            raw[split] = raw[split].select(range(limit))
    if "train" in raw and ROW_COLUMN in raw["train"].column_names:
        raw["train"] = raw["train"].sort(ROW_COLUMN)  # a random sample, in source order (documents stay whole)
    for split, dataset in raw.items():  # the rows used, before anything tokenizes them
        check_cell_sizes(dataset, split_source(data_args, split), data_args.max_cell_chars)
    for split, dataset in raw.items():
        logger.info("Loaded %s: %d examples from %s", split, len(dataset), split_source(data_args, split))
    return raw


def require_columns(dataset: Dataset, names: Sequence[str], source: str, flag: str) -> None:
    """Missing columns are an error that lists what the split does have."""
    missing = [name for name in names if name not in dataset.column_names]
    if missing:
        raise DataError(
            f"no column {', '.join(repr(m) for m in missing)}; it has {dataset.column_names}. Name the right one "
            f"with {flag}.",
            source=source,
        )


def pick_column(dataset: Dataset, wanted: str | None, candidates: Sequence[str], source: str, flag: str) -> str:
    """The column named by the user, else the first of the usual names that exists, else an error listing columns."""
    if wanted:
        require_columns(dataset, [wanted], source, flag)
        return wanted
    for name in candidates:
        if name in dataset.column_names:
            return name
    raise DataError(
        f"none of the usual columns {list(candidates)} exists; it has {dataset.column_names}. Name one with {flag}.",
        source=source,
    )
