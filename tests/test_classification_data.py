"""Classification loading: column inference per split, problem types, label checks and their errors."""

import json

import pytest
import torch
from transformers import TrainingArguments

from utils.core.arguments import ModelArguments
from utils.core.errors import ConfigError, DataError
from utils.core.losses import MULTI, REGRESSION, SINGLE
from utils.core.modeling import load_tokenizer
from utils.tasks.classification.arguments import ClassificationDataArguments
from utils.tasks.classification.data import load_classification_data
from utils.tasks.classification.encoding import encode_classification
from utils.tasks.classification.labels import build_classification_labels, check_classification_labels
from utils.tasks.classification.model import classification_loss, resolve_class_weights
from utils.tasks.classification.task import CLASSIFICATION_TASK


def load(**kwargs):
    """(canonical splits, the loaded data: arguments as given and what loading settled)."""
    data = load_classification_data(ClassificationDataArguments(**kwargs), ModelArguments())
    return data.raw, data


def jsonl(rows):
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_text_column_is_inferred_per_split(write_file):
    raw, args = load(
        train_file=write_file("train.tsv", "label\tsentence\n0\tgood film\n1\tbad film\n"),
        validation_file=write_file("dev.tsv", "label\tcontent\n1\tawful\n"),
    )
    assert raw["train"]["text"] == ["good film", "bad film"] and raw["validation"]["text"] == ["awful"]
    assert raw["train"]["label"] == ["0", "1"] and args.settled.problem_type == SINGLE


def test_tsv_quotes_and_na_stay_text(write_file):
    raw, _ = load(train_file=write_file("t.tsv", 'label\ttext\nNA\t"quoted" start\nNone\tNA\n'))
    assert raw["train"]["text"] == ['"quoted" start', "NA"] and raw["train"]["label"] == ["NA", "None"]


def test_ambiguous_text_columns_need_a_flag(write_file):
    path = write_file("t.csv", "label,title,body\npos,a,b\n")
    with pytest.raises(DataError, match=r"several: \['title', 'body'\].*--text_column_names"):
        load(train_file=path)
    raw, _ = load(train_file=path, text_column_names="title,body")
    assert raw["train"]["text"] == ["a"] and raw["train"]["text_pair"] == ["b"]


def test_known_pair_columns_are_a_pair(write_file):
    raw, args = load(train_file=write_file("t.csv", "sentence1,sentence2,score\na b,a c,3.5\nx,y,0.2\n"))
    assert raw["train"]["text_pair"] == ["a c", "y"] and args.settled.problem_type == REGRESSION
    assert raw["train"]["label"] == [3.5, 0.2]


def test_multi_label_from_lists_and_delimited_strings(write_file):
    raw, args = load(
        train_file=write_file("t.jsonl", jsonl([{"text": "a", "labels": ["x", "y"]}, {"text": "b", "labels": ["y"]}]))
    )
    assert args.settled.problem_type == MULTI and raw["train"]["label"] == [["x", "y"], ["y"]]
    raw, args = load(train_file=write_file("t.csv", 'text,label\na,"x,y"\nb,y\n'))
    assert args.settled.problem_type == MULTI and raw["train"]["label"] == [["x", "y"], ["y"]]
    labels = build_classification_labels(args, None)
    assert labels.names == ("x", "y")


def test_problem_type_override(write_file):
    raw, args = load(train_file=write_file("t.csv", "text,label\na,1\nb,2\n"), problem_type="regression")
    assert args.settled.problem_type == REGRESSION and raw["train"]["label"] == [1.0, 2.0]


def test_integer_labels_keep_numeric_order_and_label_list_fixes_order(write_file):
    path = write_file("t.csv", "text,label\na,10\nb,2\nc,1\n")
    raw, args = load(train_file=path)
    assert build_classification_labels(args, None).names == ("1", "2", "10")
    raw, args = load(train_file=path, label_list="10,2,1")
    assert build_classification_labels(args, None).names == ("10", "2", "1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("label,text\npos,\n", r"row 1: empty or missing text in column 'text'"),
        ("label,text\n,good\n", r"row 1: empty or missing label"),
        ("label\npos\n", r"no text columns among \['label'\]"),
    ],
)
def test_bad_rows_are_named(write_file, content, message):
    with pytest.raises(DataError, match=message):
        load(train_file=write_file("t.csv", content))


def test_missing_label_column_lists_columns(write_file):
    with pytest.raises(DataError, match=r"no column 'stars'; it has \['label', 'text'\]"):
        load(train_file=write_file("t.csv", "label,text\npos,good\n"), label_column_name="stars")
    with pytest.raises(DataError, match=r"no label column: .* it has \['text'\]. Name the label column with --label_"):
        load(train_file=write_file("t2.csv", "text\ngood\n"))


def test_mixed_label_types_and_nan_in_json(write_file):
    with pytest.raises(DataError, match=r"t.jsonl.*(mixed label types|row 2|changed from)"):
        load(train_file=write_file("t.jsonl", jsonl([{"text": "a", "label": 1}, {"text": "b", "label": "pos"}])))
    with pytest.raises(DataError, match=r"row 2: empty or missing label"):
        load(train_file=write_file("n.jsonl", jsonl([{"text": "a", "label": "x"}, {"text": "b", "label": None}])))


def test_unseen_labels_in_validation_are_an_error(write_file):
    raw, args = load(
        train_file=write_file("t.csv", "text,label\na,pos\nb,neg\n"),
        validation_file=write_file("v.csv", "text,label\nc,neutral\nd,pos\n"),
    )
    labels = build_classification_labels(args, None)
    with pytest.raises(DataError, match=r"'neutral' \(1x, first at .*v.csv row 1\)"):
        check_classification_labels(args, labels)


def test_unknown_name_in_a_multi_label_list(write_file):
    raw, args = load(
        train_file=write_file("t.jsonl", jsonl([{"text": "a", "labels": ["x"]}, {"text": "c", "labels": ["y"]}])),
        validation_file=write_file("v.jsonl", jsonl([{"text": "b", "labels": ["x", "zz"]}])),
    )
    with pytest.raises(DataError, match=r"'zz' \(1x"):
        check_classification_labels(args, build_classification_labels(args, None))


def test_pairs_get_token_types_and_truncation_side_is_honoured(write_file):
    tokenizer = load_tokenizer(ModelArguments())
    raw, args = load(train_file=write_file("t.csv", "sentence1,sentence2,label\nhello there,general kenobi,a\n"))
    labels = build_classification_labels(args, None)
    features = encode_classification(raw["train"], tokenizer, labels, args)
    pair = tokenizer("hello there", "general kenobi")  # the tokenizer's own pair encoding: [CLS] a [SEP] b [SEP]
    assert features[0]["input_ids"] == pair["input_ids"]
    assert features[0]["token_type_ids"] == pair["token_type_ids"] == [0] * 4 + [1] * (len(pair["input_ids"]) - 4)
    long_text = " ".join(f"w{i}" for i in range(40)) + " final"
    raw, args = load(
        train_file=write_file("l.csv", f"text,label\n{long_text},a\nshort,b\n"),
        max_seq_length=8,
        truncation_side="left",
    )
    # the side is the tokenizer's setting, given when the task loads it (and saved with it for predict.py)
    left = load_tokenizer(ModelArguments(), **CLASSIFICATION_TASK.data.tokenizer_kwargs(None, args.args))
    features = encode_classification(raw["train"], left, build_classification_labels(args, None), args)
    assert features["truncated"] == [True, False] and left.truncation_side == "left"
    assert len(features[0]["input_ids"]) == 8
    assert tokenizer.decode(features[0]["input_ids"], skip_special_tokens=True).endswith("final")
    assert tokenizer.truncation_side == "right"  # encoding changed nothing on the tokenizer it was given


def test_class_weights_auto_manual_and_loss(write_file):
    raw, args = load(train_file=write_file("t.csv", "text,label\na,x\nb,x\nc,x\nd,y\n"), class_weights="auto")
    labels = build_classification_labels(args, None)
    assert resolve_class_weights(args, labels) == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])
    args.args.class_weights = "1,3"
    loss = classification_loss(args, labels, TrainingArguments(output_dir="x"))
    logits, targets = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    per_example = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    expected = (1 * per_example[0] + 3 * per_example[1]) / 2  # each example's loss scaled by its class weight
    assert loss({"logits": logits}, targets).item() == pytest.approx(expected.item())
    assert loss({"logits": logits}, targets).item() != pytest.approx(per_example.mean().item())
    args.args.class_weights = "1,2,3"
    with pytest.raises(ConfigError, match="needs 2 positive weights"):
        resolve_class_weights(args, labels)
    args.args.class_weights = "none"
    assert resolve_class_weights(args, labels) is None
