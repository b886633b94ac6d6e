"""NER loaders (CoNLL, JSON, JSONL, CSV, TSV, parquet) and their validation errors."""

import json

import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value

from utils.core.arguments import ModelArguments
from utils.core.errors import DataError
from utils.core.task import LoadedData
from utils.tasks.ner.arguments import NerDataArguments
from utils.tasks.ner.data import load_ner_data, parse_word_list
from utils.tasks.ner.labels import build_ner_labels, check_ner_labels

ROWS = [
    {"tokens": ["Ada", "Lovelace", "wrote"], "ner_tags": ["B-PER", "I-PER", "O"]},
    {"tokens": ["Paris", "is", "big"], "ner_tags": ["B-LOC", "O", "O"]},
]


def load(**kwargs):
    return load_ner_data(NerDataArguments(**kwargs), ModelArguments()).raw


def jsonl(rows):
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.mark.parametrize("name", ["train.json", "train.jsonl"])
def test_json_lines(write_file, name):
    path = write_file(name, jsonl(ROWS))
    raw = load(train_file=path)
    assert raw["train"].to_dict() == {
        "tokens": [r["tokens"] for r in ROWS],
        "document_id": ["0", "1"],
        "location": [f"{path} row 1", f"{path} row 2"],
        "ner_tags": [r["ner_tags"] for r in ROWS],
    }


def test_json_document_with_a_list(write_file):
    raw = load(train_file=write_file("train.json", json.dumps(ROWS)))
    assert raw["train"]["tokens"] == [r["tokens"] for r in ROWS]
    assert raw["train"]["ner_tags"] == [r["ner_tags"] for r in ROWS]


def test_csv_and_tsv_with_space_separated_or_list_cells(write_file):
    csv_path = write_file(
        "t.csv", 'tokens,ner_tags\nAda Lovelace wrote,B-PER I-PER O\n"[""Paris"", ""is""]","[""B-LOC"", ""O""]"\n'
    )
    tsv_path = write_file("t.tsv", "words\ttags\nAda Lovelace\tB-PER I-PER\n")
    assert load(train_file=csv_path)["train"]["tokens"] == [["Ada", "Lovelace", "wrote"], ["Paris", "is"]]
    assert load(train_file=tsv_path)["train"]["ner_tags"] == [["B-PER", "I-PER"]]


@pytest.mark.parametrize(
    ("cell", "words"),
    [
        ("[0]", ["[0]"]),  # once the list [0]: the word "0"
        ("[A]", ["[A]"]),  # once refused: "looks like a list but does not parse"
        ("[:]", ["[:]"]),
        ('["a", "b"]', ["a", "b"]),  # a JSON list of strings is a list
        ("['a', 'b c']", ["a", "b c"]),  # and so is a Python list literal of strings (pandas writes lists so)
        ("  [0]\t[A] ", ["[0]", "[A]"]),
        ("[]", ["[]"]),  # an empty list is never a sentence: a word
        ("[1.5]", ["[1.5]"]),
        ("[true]", ["[true]"]),
        ("[null]", ["[null]"]),
        ('[["a"]]', ['[["a"]]']),
        ('[1, "a"]', ["[1,", '"a"]']),  # a list of other things is words
        ("[1] Smith", ["[1]", "Smith"]),
    ],
)
def test_a_string_cell_is_words_unless_it_is_a_list_of_strings(cell, words):
    assert parse_word_list(cell, "t.csv row 1", "tokens") == words


def test_a_tag_cell_may_list_tag_ids_but_never_bools_or_floats():
    assert parse_word_list("[0, 2]", "t.csv row 1", "tags") == [0, 2]
    assert parse_word_list('["B-PER", 0]', "t.csv row 1", "tags") == ["B-PER", 0]
    assert parse_word_list("[true]", "t.csv row 1", "tags") == ["[true]"]
    assert parse_word_list("[0.5]", "t.csv row 1", "tags") == ["[0.5]"]
    assert parse_word_list("[0]", "t.csv row 1", "tokens") == ["[0]"]  # for tokens an id list is a word


def test_list_looking_words_load_as_words(write_file):
    path = write_file(
        "t.jsonl",
        jsonl(
            [
                {"tokens": "[0] [A] [:]", "ner_tags": ["O", "B-PER", "O"]},
                {"tokens": '["a", "b"]', "ner_tags": ["O", "O"]},
            ]
        ),
    )
    raw = load(train_file=path)
    assert raw["train"]["tokens"] == [["[0]", "[A]", "[:]"], ["a", "b"]]
    assert raw["train"]["ner_tags"] == [["O", "B-PER", "O"], ["O", "O"]]
    csv_path = write_file("t.csv", 'tokens,ner_tags\n[0],O\n"[""a""]",[1]\n')  # a tag cell [1] is an id
    raw = load(train_file=csv_path, label_list="O,B-PER")
    assert raw["train"]["tokens"] == [["[0]"], ["a"]] and raw["train"]["ner_tags"] == [["O"], ["B-PER"]]


def test_parquet_with_integer_tags_and_class_label(tmp_path):
    features = Features(
        {"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=["O", "B-PER", "I-PER"]))}
    )
    Dataset.from_dict(
        {"tokens": [["Ada", "Lovelace", "wrote"]], "ner_tags": [[1, 2, 0]]}, features=features
    ).to_parquet(tmp_path / "t.parquet")
    raw = load(train_file=str(tmp_path / "t.parquet"))
    assert raw["train"]["ner_tags"] == [["B-PER", "I-PER", "O"]]


def test_integer_tags_need_names(write_file):
    path = write_file("t.jsonl", jsonl([{"tokens": ["Ada"], "ner_tags": [1]}]))
    with pytest.raises(DataError, match=r"t.jsonl row 1: tags are integers \[1\] with no names; give --label_list"):
        load(train_file=path)
    assert load(train_file=path, label_list="O,B-PER")["train"]["ner_tags"] == [["B-PER"]]


def test_length_mismatch_names_the_row(write_file):
    path = write_file("t.jsonl", jsonl([ROWS[0], {"tokens": ["a", "b"], "ner_tags": ["O"]}]))
    with pytest.raises(DataError, match=r"t.jsonl row 2: 2 tokens but 1 tags"):
        load(train_file=path)


def test_missing_columns_list_what_the_file_has(write_file):
    path = write_file("t.jsonl", jsonl([{"words_here": ["a"], "ner_tags": ["O"]}]))
    columns = r"none of the usual columns \['tokens', 'words'\].*\['words_here', 'ner_tags'\]"
    with pytest.raises(DataError, match=columns):
        load(train_file=path)
    with pytest.raises(DataError, match=r"no column 'toks'"):
        load(train_file=path, text_column_name="toks")


def test_empty_and_broken_files(write_file):
    with pytest.raises(DataError, match="no sentences found"):
        load(train_file=write_file("e.conll", ""))
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        load(train_file=write_file("bad.jsonl", jsonl(ROWS[:1]) + '{"tokens": [\n'))
    with pytest.raises(DataError, match=r"l.csv:2: byte 0xe9"):
        load(train_file=write_file("l.csv", "tokens,ner_tags\ncaf\xe9 x,O O\n".encode("latin-1")))
    with pytest.raises(DataError, match="file not found"):
        load(train_file="/nonexistent/train.conll")
    with pytest.raises(DataError, match="cannot tell the format"):
        load(train_file=write_file("t.xml", "<a/>"))


def test_empty_token_list_is_refused(write_file):
    with pytest.raises(DataError, match="row 1: empty token list"):
        load(train_file=write_file("t.jsonl", jsonl([{"tokens": [], "ner_tags": []}])))


def test_validation_needs_tags_but_test_may_lack_them(write_file):
    train = write_file("train.conll", "Ada B-PER\n")
    with pytest.raises(DataError, match="no tag column"):
        load(train_file=train, validation_file=write_file("v.conll", "Ada\n"))
    raw = load(train_file=train, test_file=write_file("t.conll", "Ada\nLovelace\n"))
    assert "ner_tags" not in raw["test"].column_names and raw["test"]["tokens"] == [["Ada", "Lovelace"]]


def test_unknown_labels_error_or_map_to_o(write_file):
    args = {
        "train_file": write_file("train.conll", "Ada B-PER\nwrote O\n"),
        "validation_file": write_file("valid.conll", "Bonn B-LOC\nis O\n\nUlm B-LOC\n\nAda B-PER\n"),
    }
    raw = load(**args)
    labels = build_ner_labels(LoadedData(raw, NerDataArguments(**args)), config=None)
    assert labels.names == ("O", "B-PER")
    with pytest.raises(DataError, match=r"B-LOC \(2x, first at .*valid.conll:1\).*--unknown_labels O"):
        check_ner_labels(LoadedData(raw, NerDataArguments(**args)), labels)
    mapped = check_ner_labels(LoadedData(raw, NerDataArguments(**args, unknown_labels="O")), labels)
    assert mapped["validation"]["ner_tags"] == [["O", "O"], ["O"], ["B-PER"]]


def test_label_order_is_o_then_type_then_prefix(write_file):
    raw = load(train_file=write_file("t.conll", "a I-PER\nb B-PER\nc O\nd B-LOC\ne I-LOC\n"))
    labels = build_ner_labels(LoadedData(raw, NerDataArguments()), None)
    assert labels.names == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
