"""Labels that are not what they seem are errors naming the row or line, never a silent new class or problem type."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import run_ner
from utils.core.arguments import ModelArguments
from utils.core.errors import DataError
from utils.tasks.classification.arguments import ClassificationDataArguments
from utils.tasks.classification.data import load_classification_data
from utils.tasks.ner.iob import malformed_tag_fix, split_tag


def load(path, **kwargs):
    """(canonical splits, what loading settled: problem type and label order)."""
    data = load_classification_data(ClassificationDataArguments(train_file=path, **kwargs), ModelArguments())
    return data.raw, data.settled


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "good,0\nbad,1\nfine,positive\nawful,negative\n",
            "mixes numbers (first at row 1: '0') and names (first at row 3: 'positive')",
        ),
        ("good,positive\nbad,1\n", "mixes numbers (first at row 2: '1') and names (first at row 1: 'positive')"),
    ],
)
def test_numbers_and_names_in_one_label_column(write_file, rows, message):
    with pytest.raises(DataError) as raised:
        load(write_file("mixed.csv", "text,label\n" + rows))
    assert message in str(raised.value) and "mixed.csv" in str(raised.value)


@pytest.mark.parametrize("value", ["NaN", "nan", "inf", "-Infinity"])
def test_non_finite_regression_target_names_its_row(write_file, value):
    with pytest.raises(DataError, match=rf"scores.csv row 3: label '{value}' in column 'score' is not a finite"):
        load(write_file("scores.csv", f"text,score\na,0.5\nb,1.25\nc,{value}\nd,2.5\n"))


def test_nan_among_names_is_a_missing_value_not_a_class(write_file):
    with pytest.raises(DataError, match=r"labels.csv row 2: label 'NaN' in column 'label' is a missing value"):
        load(write_file("labels.csv", "text,label\na,pos\nb,NaN\nc,neg\n"))


def test_integer_ids_and_delimited_multi_label_ids_still_load(write_file):
    raw, args = load(write_file("ids.csv", "text,label\na,0\nb,1\nc,1\n"))
    assert raw["train"]["label"] == ["0", "1", "1"] and args.problem_type == "single_label_classification"
    raw, args = load(write_file("multi.csv", 'text,label\na,"0,2"\nb,1\n'))
    assert raw["train"]["label"] == [["0", "2"], ["1"]] and args.problem_type == "multi_label_classification"


@pytest.mark.parametrize(
    ("tag", "fix", "line"),
    [("B_PER", "B-PER", 3), ("b-loc", "B-loc", 3), ("o", "O", 3), ("I_MISC", "I-MISC", 3), ("B-", "B-TYPE", 3)],
)
def test_misspelt_conll_tags_are_errors_at_their_own_line(tmp_path, write_file, tag, fix, line):
    path = write_file("train.conll", f"-DOCSTART- O\n\nEU B-ORG\nrejects O\nGerman {tag}\n")
    with pytest.raises(DataError) as raised:
        run_ner.main(["--train_file", path, "--output_dir", str(tmp_path / "out")])
    assert str(raised.value).startswith(f"{path}:{line + 2}: tag {tag!r} is not an IOB tag")
    assert f"did you mean {fix!r}?" in str(raised.value)


def test_unseen_validation_tag_is_reported_at_its_own_line(tmp_path, write_file):
    train = write_file("train.conll", "EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn I-PER\n")
    dev = write_file("dev.conll", "EU B-ORG\nrejects O\n\nPeter B-PER\nin O\nParis B-LOC\n")
    with pytest.raises(DataError, match=rf"B-LOC \(1x, first at {dev}:6\)"):
        run_ner.main(["--train_file", train, "--validation_file", dev, "--output_dir", str(tmp_path / "out")])


@given(st.sampled_from("BIESLU"), st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_abc", min_size=1, max_size=8))
def test_well_formed_tags_are_never_flagged(prefix, entity_type):
    assert malformed_tag_fix(f"{prefix}-{entity_type}") is None
    assert malformed_tag_fix("O") is None
    fixed = malformed_tag_fix(f"{prefix.lower()}_{entity_type}")
    assert fixed == f"{prefix}-{entity_type}" and split_tag(fixed)[1] == entity_type
