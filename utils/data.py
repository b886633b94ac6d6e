"""Load raw splits from the Hub or from files (CSV, TSV, JSON, JSONL, parquet, CoNLL) into a `DatasetDict`.

Every split is loaded on its own, so files of different splits may name their columns differently; every failure
becomes a `DataError` that names the file (and the line where the format allows).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict

from utils.arguments import DataArguments
from utils.errors import DataError
from utils.files import check_utf8, read_utf8_lines

logger = logging.getLogger(__name__)

SPLIT_FILES = {"train": "train_file", "validation": "validation_file", "test": "test_file"}
SPLIT_ALIASES = {"validation": ("validation", "valid", "dev", "val"), "test": ("test",), "train": ("train",)}
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
}
#: A reader for token-per-line files: path -> Dataset (only the NER task has one).
ConllReader = Callable[[str], Dataset]


def file_format(path: str, forced: str | None = None) -> str:
    """The format of a data file: `--data_format` if given, else from its extension."""
    if forced:
        return forced
    suffix = Path(path).suffix.lower()
    if suffix not in FORMAT_BY_SUFFIX:
        raise DataError(
            f"cannot tell the format from the extension '{suffix}'. Use one of {sorted(FORMAT_BY_SUFFIX)} "
            "or pass --data_format.",
            source=path,
        )
    return FORMAT_BY_SUFFIX[suffix]


def root_message(err: BaseException) -> str:
    """The innermost cause's message: `datasets` wraps the parser's useful one in generic errors."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    return f"{type(err).__name__}: {err}"


def check_json_lines(path: str) -> None:
    """JSON Lines: every non-blank line must be one JSON object; name the first bad line."""
    for number, line in enumerate(read_utf8_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON ({err.msg} at column {err.colno}).", source=f"{path}:{number}") from None
        if not isinstance(record, dict):
            raise DataError("each line must be a JSON object {...}.", source=f"{path}:{number}")


def is_json_lines(path: str) -> bool:
    """A `.json` file may hold one object per line (as the transformers examples write it) or one document."""
    with open(path, encoding="utf-8") as stream:
        head = stream.read(1 << 16).lstrip()
    if not head.startswith("{"):
        return False
    try:
        json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return True
    return False


def load_table(path: str, fmt: str, cache_dir: str | None = None) -> Dataset:
    """Read one CSV/TSV/JSON/JSONL/parquet file with `datasets`, strictly: empty cells stay empty strings (never
    NaN), `NA`/`None` stay text, TSV has no quoting."""
    kwargs: dict = {}
    builder = fmt
    if fmt in {"csv", "tsv"}:
        check_utf8(path)
        builder = "csv"
        kwargs = {"keep_default_na": False, "na_values": []}
        if fmt == "tsv":
            kwargs.update(sep="\t", quoting=3)  # csv.QUOTE_NONE: quotes in TSV text are text
    elif fmt in {"json", "jsonl"}:
        check_utf8(path)
        builder = "json"
        if fmt == "jsonl" or is_json_lines(path):
            check_json_lines(path)
    try:
        dataset = datasets.load_dataset(builder, data_files=os.path.abspath(path), split="train", cache_dir=cache_dir,
                                        **kwargs)
    except Exception as err:  # the library raises many types; the user needs the file and the cause
        raise DataError(f"could not be read as {fmt}: {root_message(err)}", source=path) from None
    if len(dataset) == 0:
        raise DataError("holds no rows.", source=path)
    return dataset


def load_split_file(path: str, fmt: str, conll_reader: ConllReader | None, cache_dir: str | None) -> Dataset:
    """One split from one file."""
    if not os.path.isfile(path):
        raise DataError("file not found.", source=path)
    if fmt == "conll":
        if conll_reader is None:
            raise DataError("CoNLL (token-per-line) files are for NER; give a CSV, TSV, JSON or parquet file.",
                            source=path)
        return conll_reader(path)
    return load_table(path, fmt, cache_dir)


def find_split(dataset: DatasetDict, split: str) -> str | None:
    """The name under which a Hub dataset keeps a split (`validation` may be called `dev` or `valid`)."""
    return next((name for name in SPLIT_ALIASES[split] if name in dataset), None)


def load_hub_dataset(data_args: DataArguments, cache_dir: str | None, token: str | None) -> DatasetDict:
    """A dataset from the Hub (or the local `datasets` cache when offline), splits renamed to train/validation/test."""
    try:
        loaded = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name, cache_dir=cache_dir,
                                       token=token)
    except Exception as err:
        raise DataError(
            f"could not load dataset '{data_args.dataset_name}': {root_message(err)}. Offline (HF_DATASETS_OFFLINE=1) "
            "only datasets already in the cache load; otherwise pass local files with --train_file etc.",
        ) from None
    result = DatasetDict()
    for split in SPLIT_FILES:
        name = find_split(loaded, split)
        if name is not None:
            result[split] = loaded[name]
    if not result:
        raise DataError(f"dataset '{data_args.dataset_name}' has none of the splits train/validation/test: "
                        f"{list(loaded)}")
    return result


def split_source(data_args: DataArguments, split: str) -> str:
    """How error messages name a split's origin."""
    return getattr(data_args, SPLIT_FILES[split]) or f"{data_args.dataset_name}[{split}]"


def load_raw_datasets(
    data_args: DataArguments,
    conll_reader: ConllReader | None = None,
    cache_dir: str | None = None,
    token: str | None = None,
) -> DatasetDict:
    """All splits the arguments name, each capped by its `--max_*_samples`."""
    if data_args.dataset_name:
        raw = load_hub_dataset(data_args, cache_dir, token)
    else:
        raw = DatasetDict()
        for split, arg in SPLIT_FILES.items():
            path = getattr(data_args, arg)
            if path:
                raw[split] = load_split_file(path, file_format(path, data_args.data_format), conll_reader, cache_dir)
    if not raw:
        raise DataError("no data given: pass --train_file/--validation_file/--test_file or --dataset_name.")
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples,
              "test": data_args.max_predict_samples}
    for split, limit in limits.items():
        if split in raw and limit is not None and limit < len(raw[split]):
            raw[split] = raw[split].select(range(limit))
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
