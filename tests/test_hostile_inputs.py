"""Inputs a hostile new user tries: a huge cell (bounded by --max_cell_chars, its row named before anything is
tokenized), a UTF-16 file, a binary config; each is one clear line, never a library traceback."""

import codecs
import json
import time

import pytest

import run_classification
import run_ner
from utils.core.arguments import ModelArguments
from utils.core.errors import ConfigError, DataError
from utils.tasks.classification.arguments import ClassificationDataArguments
from utils.tasks.classification.data import load_classification_data

HUGE = "word " * 200_001  # 1,000,005 characters


def csv_with_a_huge_cell(row: int, rows: int = 60) -> str:
    lines = [f"text {i},{'pos' if i % 2 else 'neg'}" for i in range(1, rows + 1)]
    lines[row - 1] = f"{HUGE},pos"
    return "text,label\n" + "\n".join(lines) + "\n"


def test_a_huge_cell_is_refused_with_its_row_before_the_model_loads(tmp_path, write_file):
    train = write_file("train.csv", csv_with_a_huge_cell(37))
    started = time.monotonic()
    with pytest.raises(DataError) as raised:
        run_classification.main(["--train_file", train, "--output_dir", str(tmp_path / "out")])
    assert str(raised.value) == (
        f"{train} row 37: the cell in column 'text' holds 1,000,005 characters, more than "
        "--max_cell_chars 1,000,000 (1 cell(s) are over). A model reads at most a few "
        "thousand characters of it; split the text, fix the row, or raise --max_cell_chars "
        "if it is meant."
    )
    assert time.monotonic() - started < 30 and not (tmp_path / "out").exists()


def test_the_limit_can_be_raised_and_counts_only_the_rows_used(write_file):
    path = write_file("train.csv", csv_with_a_huge_cell(37))
    raw = load_classification_data(
        ClassificationDataArguments(train_file=path, max_cell_chars=2_000_000), ModelArguments()
    ).raw
    assert raw["train"]["text"][36] == HUGE
    raw = load_classification_data(
        ClassificationDataArguments(train_file=path, max_train_samples=30), ModelArguments()
    ).raw
    assert len(raw["train"]) == 30


def test_a_huge_sentence_is_named_at_its_conll_line(tmp_path, write_file):
    words = "".join(f"w{i % 10}{'x' * 20} O\n" for i in range(1, 50_000))  # 1.1 M characters in one sentence
    train = write_file("train.conll", "EU B-ORG\nrejects O\n\n" + words)
    with pytest.raises(
        DataError,
        match=rf"^{train}:4: the cell in column 'tokens' holds 1,099,978 characters, more "
        r"than --max_cell_chars 1,000,000",
    ):
        run_ner.main(["--train_file", train, "--output_dir", str(tmp_path / "out")])


def test_a_huge_json_cell_is_named(tmp_path, write_file):
    rows = [{"text": "short", "label": "a"}, {"text": "b" * 1_000_001, "label": "b"}]
    train = write_file("train.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError, match=rf"^{train} row 2: the cell in column 'text' holds 1,000,001 characters"):
        run_classification.main(["--train_file", train, "--output_dir", str(tmp_path / "out")])


def test_max_cell_chars_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match=r"--max_cell_chars must be a positive number of characters, got 0"):
        run_ner.main(["--max_cell_chars", "0", "--output_dir", str(tmp_path / "out")])


@pytest.mark.parametrize(
    ("codec", "bom", "name"),
    [
        ("utf-16-le", codecs.BOM_UTF16_LE, "utf-16"),
        ("utf-16-be", codecs.BOM_UTF16_BE, "utf-16"),
        ("utf-32-le", codecs.BOM_UTF32_LE, "utf-32"),
    ],
)
def test_a_utf16_file_is_told_to_convert_from_utf16(tmp_path, write_file, codec, bom, name):
    train = write_file("train.csv", bom + "text,label\ngood,pos\nbad,neg\n".encode(codec))
    with pytest.raises(DataError) as raised:
        run_classification.main(["--train_file", train, "--output_dir", str(tmp_path / "out")])
    shown = name.upper()
    assert str(raised.value) == (
        f"{train}:1: the file is {shown} (it starts with a {shown} byte-order mark), not "
        f"UTF-8; re-save it as UTF-8 (e.g. `iconv -f {name} -t utf-8`)."
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "byte 0x89 on line 1 is not UTF-8 text; a config is a YAML or JSON text file",
        ),
        ("learning_rate: 1e-4\n".encode("utf-16-le"), "holds NUL bytes: it is binary (or UTF-16), not a YAML or JSON"),
    ],
)
def test_a_binary_config_file_is_one_line(tmp_path, write_file, content, message):
    config = write_file("run.yaml", content)
    with pytest.raises(ConfigError) as raised:
        run_ner.main([config, "--output_dir", str(tmp_path / "out")])
    assert str(raised.value).startswith(f"Config file {config}") and message in str(raised.value)
