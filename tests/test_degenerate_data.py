"""Data that would train a useless or altered model with exit 0 is an error before the model loads (or, where a user
could mean it, a warning with the count): one class, label texts merged by a number conversion, no entity, a
validation split with none of the trained types."""

import json

import pytest

import run_classification
import run_ner
from utils.core.arguments import ModelArguments
from utils.core.errors import DataError
from utils.tasks.classification.arguments import ClassificationDataArguments
from utils.tasks.classification.data import load_classification_data


@pytest.fixture(scope="module")
def config_only(tmp_path_factory) -> list[str]:
    """--model pointing at a directory with a config and no weights or tokenizer: a run that gets past the data
    checks fails loading them, so a DataError proves the check came before any model loading."""
    from transformers import BertConfig

    directory = tmp_path_factory.mktemp("config-only")
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(
        directory
    )
    return ["--model", str(directory)]


def classify(tmp_path, *flags):
    return run_classification.main(["--output_dir", str(tmp_path / "out"), "--report_to", "none", *flags])


def load(path, **kwargs):
    """(canonical splits, what loading settled: problem type and label order)."""
    data = load_classification_data(ClassificationDataArguments(train_file=path, **kwargs), ModelArguments())
    return data.raw, data.settled


def test_one_class_in_training_is_an_error(tmp_path, write_file):
    train = write_file("train.csv", "text,label\ngood film,positive\nnice one,positive\ngreat,positive\n")
    with pytest.raises(DataError) as raised:
        classify(tmp_path, "--train_file", train)
    assert str(raised.value) == (
        f"{train}: every one of its 3 training rows has the label 'positive', so the model "
        "could only learn to answer that for every text (training loss 0 from the start). "
        "Add rows of the other classes, or check --label_column_name."
    )
    assert not (tmp_path / "out").exists()


def test_one_class_with_other_labels_declared_is_a_warning_with_the_count(tmp_path, write_file, capsys, tiny_model):
    train = write_file("train.csv", "text,label\ngood film,positive\nnice one,positive\n")
    classify(
        tmp_path, "--train_file", train, "--label_list", "negative,positive", "--model", tiny_model, "--max_steps", "1"
    )
    assert "WARNING" in capsys.readouterr().out.split("every one of its 2 training rows has the label 'positive'")[0]


def test_one_regression_target_is_an_error(tmp_path, write_file):
    train = write_file("train.csv", "text,score\na,0.5\nb,0.5\n")
    with pytest.raises(DataError, match=r"every one of its 2 training rows has the target 0.5"):
        classify(tmp_path, "--train_file", train, "--problem_type", "regression")


@pytest.mark.parametrize(
    ("cells", "first", "second"),
    [
        (["01", "1", "2"], "'01' (row 1)", "'1' (row 2)"),
        (["1", "2", "1.0"], "'1' (row 1)", "'1.0' (row 3)"),
        (["+1", "1", "0"], "'+1' (row 1)", "'1' (row 2)"),
    ],
)
def test_two_spellings_of_one_number_are_not_merged(write_file, cells, first, second):
    path = write_file("labels.csv", "text,label\n" + "".join(f"t{i},{cell}\n" for i, cell in enumerate(cells)))
    with pytest.raises(DataError) as raised:
        load(path)
    assert str(raised.value) == (
        f"{path}: labels {first} and {second} in column 'label' are the same number "
        "written two ways, so they would become one class; write each class one way (or, if "
        "they are different classes, give them names)."
    )


def test_number_like_labels_keep_their_text(write_file):
    raw, _ = load(write_file("codes.csv", "text,label\na,007\nb,012\nc,007\n"))
    assert raw["train"]["label"] == ["007", "012", "007"]
    raw, _ = load(write_file("floats.tsv", "text\tlabel\na\t1.0\nb\t2.0\n"))
    assert raw["train"]["label"] == ["1.0", "2.0"]
    raw, _ = load(write_file("ids.csv", "text,label\na,0\nb,1\n"))
    assert raw["train"]["label"] == ["0", "1"]  # plain integer ids, as before
    raw, args = load(write_file("scores.csv", "text,score\na,1\nb,1.0\nc,2.5\n"))
    assert raw["train"]["label"] == [1.0, 1.0, 2.5] and args.problem_type == "regression"


def test_a_validation_label_spelt_otherwise_than_in_training(tmp_path, write_file, config_only):
    train = write_file("train.csv", "text,label\na,1\nb,2\n")
    dev = write_file("dev.csv", "text,label\na,1\nb,2.0\n")
    with pytest.raises(DataError) as raised:
        classify(tmp_path, "--train_file", train, "--validation_file", dev, *config_only)
    assert str(raised.value) == (
        f"{dev} row 2: validation label '2.0' is written '2' in training; write each class "
        f"the same way in every split ({dev})."
    )


def test_missing_label_column_lists_the_columns_and_names_the_flag(tmp_path, write_file):
    train = write_file("train.csv", "text,stars\ngood,5\nbad,1\n")
    with pytest.raises(DataError) as raised:
        classify(tmp_path, "--train_file", train)
    assert str(raised.value) == (
        f"{train}: no label column: none of ['label', 'labels', 'score', 'target'] "
        "exists; it has ['text', 'stars']. Name the label column with --label_column_name "
        "(train data needs labels)."
    )


def test_ner_training_without_an_entity_is_an_error(tmp_path, write_file, config_only):
    train = write_file("train.conll", "EU O\nrejects O\n\nPeter O\n")
    with pytest.raises(DataError) as raised:
        run_ner.main(["--train_file", train, "--output_dir", str(tmp_path / "out"), *config_only])
    assert str(raised.value) == (
        f"{train}: none of its 2 sentences (3 words) has an entity: every tag is O, so the "
        "model would learn to tag nothing. Check the tag column (--label_column_name, "
        "--tag_column) or add annotated sentences."
    )


def label_studio_task(text, result):
    return {"id": 1, "data": {"text": text}, "annotations": [{"result": result, "was_cancelled": False}]}


def test_an_export_without_a_usable_annotation_is_an_error(tmp_path, write_file, config_only):
    tasks = [
        label_studio_task("Angela Merkel visited Paris", []),
        label_studio_task("Nothing here", [{"type": "relation", "from_id": "a", "to_id": "b"}]),
    ]
    export = write_file("export.json", json.dumps(tasks))
    with pytest.raises(DataError) as raised:
        run_ner.main(
            [
                "--train_file",
                export,
                "--data_format",
                "label-studio",
                "--output_dir",
                str(tmp_path / "out"),
                *config_only,
            ]
        )
    assert str(raised.value) == (
        f"{export}: none of its 2 annotated texts has a usable entity span (every one of its "
        "6 words would be O, and the model would learn to tag nothing): the annotations are "
        "empty, cancelled, or hold no `labels` spans. Label some entities in the tool, then "
        "export again."
    )


def test_a_validation_split_with_none_of_the_trained_types(tmp_path, write_file, config_only):
    train = write_file("train.conll", "EU B-ORG\nrejects O\n\nPeter B-PER\n")
    dev = write_file("dev.conll", "Paris B-LOC\nis O\n\nnice O\n")
    with pytest.raises(DataError) as raised:
        run_ner.main(
            [
                "--train_file",
                train,
                "--validation_file",
                dev,
                "--unknown_labels",
                "O",
                "--output_dir",
                str(tmp_path / "out"),
                *config_only,
            ]
        )
    assert str(raised.value).startswith(
        f"{dev}: validation split: none of its 2 sentences has an entity of a type "
        "the model learns (ORG, PER), so its entity F1 is 0 whatever the model does"
    )
