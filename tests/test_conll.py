"""The CoNLL reader and writer."""

import pytest

from utils.core.conll import read_conll, write_conll
from utils.core.errors import DataError

CONLL_2003 = """-DOCSTART- -X- -X- O

Rome NNP B-NP B-LOC
wins VBZ B-VP O

Ada NNP B-NP B-PER
Lovelace NNP I-NP I-PER
spoke VBD B-VP O

-DOCSTART- -X- -X- O

Kiel NNP B-NP B-LOC
"""


def test_reads_four_columns_documents_and_lines(write_file):
    corpus = read_conll(write_file("a.txt", CONLL_2003))
    assert corpus.tokens == [["Rome", "wins"], ["Ada", "Lovelace", "spoke"], ["Kiel"]]
    assert corpus.tags == [["B-LOC", "O"], ["B-PER", "I-PER", "O"], ["B-LOC"]]
    assert corpus.document_id == [0, 0, 1]
    assert corpus.line == [3, 6, 12]


def test_tag_column_is_selectable(write_file):
    corpus = read_conll(write_file("a.txt", CONLL_2003), tag_column=1)
    assert corpus.tags[0] == ["NNP", "VBZ"]


def test_two_columns_tabs_and_words_with_spaces(write_file):
    corpus = read_conll(write_file("a.tsv", "New York\tB-LOC\nis\tO\n\nhi\tO\n"))
    assert corpus.tokens == [["New York", "is"], ["hi"]]
    assert corpus.tags == [["B-LOC", "O"], ["O"]]


def test_one_column_file_has_no_tags(write_file):
    corpus = read_conll(write_file("a.txt", "Hello\nworld\n\nagain\n"))
    assert corpus.tags is None and corpus.tokens == [["Hello", "world"], ["again"]]


def test_crlf_and_several_blank_lines(write_file):
    corpus = read_conll(write_file("a.txt", "a O\r\nb O\r\n\r\n\r\n\r\nc O\r\n"))
    assert corpus.tokens == [["a", "b"], ["c"]]


def test_column_count_mismatch_names_the_line(write_file):
    path = write_file("bad.txt", "a NN O\nb NN O\nc O\n")
    with pytest.raises(DataError, match=r"bad.txt:3: this line has 2 column"):
        read_conll(path)


def test_non_utf8_names_the_line(write_file):
    path = write_file("latin.txt", "a O\nM\xfcller B-PER\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.txt:2: byte 0xfc at column 2 is not valid UTF-8"):
        read_conll(path)


@pytest.mark.parametrize("content", ["", "\n\n", "-DOCSTART- -X- -X- O\n\n-DOCSTART- -X- -X- O\n"])
def test_empty_files_are_refused(write_file, content):
    with pytest.raises(DataError, match="no sentences found"):
        read_conll(write_file("empty.txt", content))


def test_missing_tag_column_is_refused(write_file):
    with pytest.raises(DataError, match="--tag_column 5 does not exist"):
        read_conll(write_file("a.txt", "a NN O\n"), tag_column=5)


def test_writer_round_trips(write_file, tmp_path):
    path = tmp_path / "out.conll"
    write_conll(path, [[("Rome", "B-LOC", "B-LOC"), ("wins", "O", "O")], [("Ada", "B-PER", "O")]])
    assert path.read_text() == "Rome B-LOC B-LOC\nwins O O\n\nAda B-PER O\n\n"
    corpus = read_conll(path)
    assert corpus.tokens == [["Rome", "wins"], ["Ada"]] and corpus.tags == [["B-LOC", "O"], ["O"]]


def test_writer_uses_tabs_when_a_word_has_a_space(tmp_path):
    path = tmp_path / "out.conll"
    write_conll(path, [[("New York", "B-LOC")]])
    assert path.read_text() == "New York\tB-LOC\n\n"
