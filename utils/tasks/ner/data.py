"""NER data from any source (CoNLL, tables, the Hub) in one canonical shape: tokens, ner_tags, document_id,
location, checked row by row."""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Sequence
from functools import partial
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict
from datasets import Sequence as SequenceFeature

from utils.core.annotations.loading import ANNOTATION_FORMATS
from utils.core.conll import ASCII_SPACE, read_conll, split_words
from utils.core.data import file_format, load_raw_datasets, pick_column, split_source
from utils.core.errors import ConfigError, DataError
from utils.core.splits import ROW_COLUMN, source_rows
from utils.core.task import LoadedData
from utils.tasks.ner.arguments import NerDataArguments
from utils.tasks.ner.iob import count_invalid_transitions, malformed_tag_fix
from utils.tasks.ner.span_data import spans_from_annotations
from utils.tasks.ner.spans import ner_from_annotations

logger = logging.getLogger(__name__)

TOKEN_COLUMNS = ("tokens", "words")

TAG_COLUMNS = ("ner_tags", "tags", "labels", "ner")

LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # what a JSON or Python escape can make, and arrow refuses


def read_conll_dataset(path: str, tag_column: int = -1) -> Dataset:
    """A CoNLL file as a canonical dataset (locations are file:line)."""
    corpus = read_conll(path, tag_column)
    columns: dict[str, list] = {
        "tokens": corpus.tokens,
        "document_id": [str(doc) for doc in corpus.document_id],
        "location": [f"{path}:{line}" for line in corpus.line],
    }
    if corpus.tags is not None:
        columns["ner_tags"] = corpus.tags
    return Dataset.from_dict(columns)


def parse_word_list(value: Any, location: str, what: str) -> list:
    """A list cell, or a CSV/TSV/JSON string cell: items separated by ASCII whitespace (so `[1] Smith` is two words
    and `[0]`, `[A]` or `[:]` is one), unless the whole cell is a well-formed, non-empty JSON list (or Python list
    literal, as pandas writes lists) whose items are all strings, or for tags strings and ints (not bools). Nothing
    else is read as a list, so no word is ever changed."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if not isinstance(value, str):
        raise DataError(
            f"the {what} cell must be a list of strings, got {type(value).__name__}: {value!r}", source=location
        )
    text = value.strip(ASCII_SPACE)
    if not (text.startswith("[") and text.endswith("]")):
        return split_words(text)
    for parse in (json.loads, ast.literal_eval):
        try:
            items = parse(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if (
            isinstance(items, list)
            and items
            and all(
                isinstance(item, str) or (what == "tags" and isinstance(item, int) and not isinstance(item, bool))
                for item in items
            )
        ):
            if any(isinstance(item, str) and LONE_SURROGATE.search(item) for item in items):
                raise DataError(
                    f"the {what} cell holds half of a UTF-16 surrogate pair (an escape \\ud800-\\udfff "
                    "without its other half), which is not text; remove it.",
                    source=location,
                )
            return items
    return split_words(text)


def tag_names(dataset: Dataset, column: str) -> list[str] | None:
    """Names of integer tags stored as a `ClassLabel` sequence (Hub datasets such as conll2003)."""
    feature = dataset.features[column]
    inner = getattr(feature, "feature", None)
    if isinstance(feature, SequenceFeature) and isinstance(inner, ClassLabel):
        return list(inner.names)
    if isinstance(feature, list) and feature and isinstance(feature[0], ClassLabel):
        return list(feature[0].names)
    return None


def canonical_table(dataset: Dataset, data_args: NerDataArguments, source: str, need_tags: bool) -> Dataset:
    """A table (Hub, JSON, CSV, parquet) as tokens/ner_tags/document_id/location, checked row by row."""
    token_column = pick_column(dataset, data_args.text_column_name, TOKEN_COLUMNS, source, "--text_column_name")
    task_tags = f"{data_args.task_name}_tags"
    if data_args.task_name != "ner" and not data_args.label_column_name and task_tags not in dataset.column_names:
        raise DataError(
            f"--task_name {data_args.task_name}: no {task_tags} column; it has {dataset.column_names}. "
            "Name the tag column with --label_column_name.",
            source=source,
        )
    candidates = (task_tags, *TAG_COLUMNS)
    try:
        tag_column = pick_column(dataset, data_args.label_column_name, candidates, source, "--label_column_name")
    except DataError:
        if need_tags or data_args.label_column_name:
            raise
        tag_column = None
    if tag_column and tag_column != "ner_tags" and not data_args.label_column_name:
        logger.info("%s: tags from column %s", source, tag_column)
    names = tag_names(dataset, tag_column) if tag_column else None
    if names is None and data_args.label_names:
        names = data_args.label_names
    has_docs = data_args.document_column_name in dataset.column_names
    columns: dict[str, list] = {"tokens": [], "document_id": [], "location": []}
    if tag_column:
        columns["ner_tags"] = []
    for row, (record, source_row) in enumerate(zip(dataset, source_rows(dataset))):
        location = f"{source} row {source_row}"
        tokens = [
            str(t) if isinstance(t, (int, float)) else t
            for t in parse_word_list(record[token_column], location, "tokens")
        ]
        if not tokens:
            raise DataError("empty token list; every row needs at least one word.", source=location)
        if any(not isinstance(t, str) or not t.strip(ASCII_SPACE) for t in tokens):  # as a CoNLL word may be
            raise DataError(f"every token must be a non-empty string, got {tokens[:20]}", source=location)
        columns["tokens"].append(tokens)
        columns["document_id"].append(str(record[data_args.document_column_name]) if has_docs else str(row))
        columns["location"].append(location)
        if not tag_column:
            continue
        tags = parse_word_list(record[tag_column], location, "tags")
        if len(tags) != len(tokens):
            raise DataError(
                f"{len(tokens)} tokens but {len(tags)} tags; every word needs exactly one tag.", source=location
            )
        if any(isinstance(tag, int) and not isinstance(tag, bool) for tag in tags):
            if names is None:
                raise DataError(
                    f"tags are integers {tags[:10]} with no names; give --label_list (names in id order) or write "
                    "the tags as strings.",
                    source=location,
                )
            if any(isinstance(tag, int) and not 0 <= tag < len(names) for tag in tags):
                raise DataError(f"tag id out of range for --label_list {names}: {tags}", source=location)
            tags = [names[tag] if isinstance(tag, int) and not isinstance(tag, bool) else tag for tag in tags]
        if any(not isinstance(tag, str) or not tag.strip() for tag in tags):
            raise DataError(f"every tag must be a non-empty string, got {tags[:20]}", source=location)
        columns["ner_tags"].append(tags)
    return Dataset.from_dict(columns)


def word_location(location: str, index: int) -> str:
    """Where word `index` of a sentence stands: its own line in a CoNLL file (`file:line` locations; a sentence's
    words are on consecutive lines), else the sentence's row and the word's number."""
    path, colon, line = location.rpartition(":")
    if colon and line.isdigit():
        return f"{path}:{int(line) + index}"
    return f"{location}, word {index + 1}"


def check_tag_format(tags: Sequence[Sequence[str]], locations: Sequence[str]) -> None:
    """A misspelt IOB tag (`B_PER`, `b-loc`, a lowercase `o`) would become an entity type of its own: an error at
    its line, with the tag it was surely meant to be."""
    for sentence, location in zip(tags, locations):
        for index, tag in enumerate(sentence):
            fix = malformed_tag_fix(tag)
            if fix is not None:
                raise DataError(
                    f"tag {tag!r} is not an IOB tag (O, or B-/I-/E-/S- and a type); did you mean "
                    f"{fix!r}? Fix the tags of the file.",
                    source=word_location(location, index),
                )


def load_ner_data(data_args: NerDataArguments, model_args) -> LoadedData:
    """All splits in the canonical NER shape (gold tags required for train and validation); NER settles nothing
    while loading."""
    if not model_args.use_fast_tokenizer:
        raise ConfigError(
            "--use_fast_tokenizer false: NER needs a fast tokenizer, whose word ids map each subword "
            "to its word (the transformers example refuses slow tokenizers too); drop the flag."
        )
    conll_files = not data_args.dataset_name and any(
        file_format(path, data_args.data_format) == "conll"
        for path in (data_args.train_file, data_args.validation_file, data_args.test_file)
        if path
    )
    if conll_files and data_args.task_name != "ner" and data_args.tag_column == -1:
        raise ConfigError(
            f"--task_name {data_args.task_name} chooses a {data_args.task_name}_tags column of a table; "
            "CoNLL files have no column names: choose the tag column with --tag_column (CoNLL-2003: "
            "1 POS, 2 chunk, 3 NER)."
        )
    raw = load_raw_datasets(
        data_args,
        conll_reader=partial(read_conll_dataset, tag_column=data_args.tag_column),
        cache_dir=model_args.cache_dir,
        token=model_args.token,
    )
    result = DatasetDict()
    for split, dataset in raw.items():
        source = split_source(data_args, split)
        fmt = None if data_args.dataset_name else file_format(source, data_args.data_format)
        if fmt in ("conll", *ANNOTATION_FORMATS) and ROW_COLUMN in dataset.column_names:  # rows carry locations
            dataset = dataset.remove_columns(ROW_COLUMN)
        if fmt in ANNOTATION_FORMATS and data_args.head == "span":
            result[split] = spans_from_annotations(dataset, data_args.span_alignment, source)
            continue
        if fmt in ANNOTATION_FORMATS:
            result[split] = ner_from_annotations(dataset, data_args.span_alignment, source)
        else:
            result[split] = dataset if fmt == "conll" else canonical_table(dataset, data_args, source, split != "test")
        if split != "test" and "ner_tags" not in result[split].column_names:
            raise DataError("has no tag column; training and validation data need gold tags.", source=source)
        if "ner_tags" in result[split].column_names:
            check_tag_format(result[split]["ner_tags"], result[split]["location"])
            invalid = sum(count_invalid_transitions(tags) for tags in result[split]["ner_tags"])
            if invalid:
                logger.warning(
                    "%s: %d I-X tags follow O or another type (invalid IOB2); they are scored as "
                    "conlleval does, as entity starts.",
                    source,
                    invalid,
                )
    return LoadedData(result, data_args)
