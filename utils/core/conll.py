"""Pure CoNLL reader and writer: one token per line, columns separated by whitespace or tabs, blank lines between
sentences, `-DOCSTART-` lines between documents (CoNLL-2003 has 4 columns; 2-column files work the same way)."""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from utils.core.errors import DataError
from utils.core.files import atomic_write, read_utf8_lines

DOCSTART = "-DOCSTART-"

#: Columns are separated by ASCII whitespace only: a no-break or ideographic space (U+00A0, U+3000) is part of a word.
ASCII_SPACE = string.whitespace

ASCII_SPACES = re.compile(f"[{re.escape(ASCII_SPACE)}]+")


@dataclass
class ConllCorpus:
    """Sentences of a CoNLL file as parallel lists (the shape `datasets.Dataset.from_dict` takes)."""

    tokens: list[list[str]] = field(default_factory=list)
    tags: list[list[str]] | None = None
    document_id: list[int] = field(default_factory=list)
    line: list[int] = field(default_factory=list)  # 1-based line of each sentence's first token

    def __len__(self) -> int:
        return len(self.tokens)


def split_words(text: str) -> list[str]:
    """`text.split()` on ASCII whitespace only."""
    return [word for word in ASCII_SPACES.split(text) if word]


def split_columns(line: str, tab_separated: bool) -> list[str]:
    """Columns of one token line: tab-separated files may hold words with spaces, others split on ASCII whitespace."""
    return [column.strip(ASCII_SPACE) for column in line.split("\t")] if tab_separated else split_words(line)


def read_conll(path: str | os.PathLike, tag_column: int = -1) -> ConllCorpus:
    """Read a CoNLL file; tags come from `tag_column` (default: the last column; none for 1-column files)."""
    lines = read_utf8_lines(path)
    corpus = ConllCorpus()
    tags: list[list[str]] = []
    words: list[str] = []
    word_tags: list[str] = []
    document, seen_docstart, start_line = 0, False, 0
    n_columns, tab_separated = None, False

    def close_sentence() -> None:
        if words:
            corpus.tokens.append(list(words))
            tags.append(list(word_tags))
            corpus.document_id.append(document)
            corpus.line.append(start_line)
            words.clear()
            word_tags.clear()

    for number, line in enumerate(lines, start=1):
        if not line.strip(ASCII_SPACE):
            close_sentence()
            continue
        if n_columns is None:
            tab_separated = "\t" in line
        columns = split_columns(line, tab_separated)
        if columns[0] == DOCSTART:
            close_sentence()
            if seen_docstart or corpus.tokens:
                document += 1
            seen_docstart = True
            continue
        if n_columns is None:
            n_columns = len(columns)
            if n_columns > 1 and not -n_columns <= tag_column < n_columns:
                raise DataError(
                    f"--tag_column {tag_column} does not exist: this file has {n_columns} columns.",
                    source=f"{path}:{number}",
                )
        if len(columns) != n_columns:
            raise DataError(
                f"this line has {len(columns)} column(s) but the file's first token line has {n_columns}; every "
                "token line needs the same columns (word ... tag). Check for a missing tag or a stray space.",
                source=f"{path}:{number}",
            )
        if not columns[0]:
            raise DataError("empty word in the first column.", source=f"{path}:{number}")
        if not words:
            start_line = number
        words.append(columns[0])
        if n_columns > 1:
            tag = columns[tag_column]
            if not tag:
                raise DataError("empty tag.", source=f"{path}:{number}")
            word_tags.append(tag)
    close_sentence()
    if not corpus.tokens:
        raise DataError("no sentences found (the file is empty or holds only -DOCSTART- lines).", source=str(path))
    if n_columns and n_columns > 1:
        corpus.tags = tags
    return corpus


def write_conll(path: str | os.PathLike, sentences: Iterable[Sequence[Sequence[str]]]) -> None:
    """Write sentences of token rows (word, gold, predicted, ...): one row per line, a blank line after each
    sentence. Rows are space-separated as conlleval expects, unless a value holds whitespace: then tabs."""
    sentences = [list(sentence) for sentence in sentences]
    has_space = any(any(" " in value or "\t" in value for value in row) for s in sentences for row in s)
    separator = "\t" if has_space else " "
    with atomic_write(path) as stream:
        for sentence in sentences:
            if not sentence:
                continue
            for row in sentence:
                stream.write(separator.join(row) + "\n")
            stream.write("\n")
