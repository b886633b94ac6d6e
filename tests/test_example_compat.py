"""Drop-in for the transformers example scripts: their own tests (argument lists and assertions of
examples/pytorch/test_pytorch_examples.py) run against our scripts with the embedded MiniLM, and one test per example
flag we took over, showing what it does here. Fixtures in tests/fixtures/examples/ are ours, in the examples'
formats (conll/sample.json: JSON lines of `words`/`ner`; MRPC/*.csv: label,sentence1,sentence2)."""

import csv
import json
import sys
from pathlib import Path
from unittest.mock import patch

import datasets
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import TrainerCallback, TrainerState

import run_classification
import run_ner
from tests.conftest import ROOT
from utils.core.errors import ConfigError, DataError
from utils.core.labels import LabelSpace
from utils.core.task import LoadedData
from utils.tasks.classification.metrics import score_classification
from utils.tasks.classification.settled import ClassificationSettled
from utils.tasks.classification.task import CLASSIFICATION_TASK
from utils.tasks.ner.metrics import entity_metrics
from utils.tasks.ner.task import NER_TASK
from utils.training.pipeline import parse_job, run_job
from utils.training.stages import kept_checkpoint

EXAMPLES = ROOT / "tests" / "fixtures" / "examples"
CONLL = EXAMPLES / "conll" / "sample.json"
MRPC = EXAMPLES / "MRPC"
TINY = ["--report_to", "none", "--per_device_train_batch_size", "4", "--num_train_epochs", "1", "--logging_steps", "1"]


def get_results(output_dir) -> dict:
    """As the examples' test file reads a run: all_results.json."""
    return json.loads((Path(output_dir) / "all_results.json").read_text())


def evaluations(output_dir) -> list[dict]:
    state = json.loads((Path(output_dir) / "trainer_state.json").read_text())
    return [entry for entry in state["log_history"] if "eval_loss" in entry]


def load(task, *argv):
    """Parse flags as the script does, then load the data: (canonical splits, the loaded data, job)."""
    job = parse_job(task, [*argv, "--output_dir", "unused"])
    data = task.data.load(job.data_args, job.model_args)
    return data.raw, data, job


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def mrpc_rows() -> list[dict]:
    with open(MRPC / "train.csv", newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def kept_by_our_rule(history: list[dict], metric: str) -> dict:
    """The evaluation our tie rule keeps: the best metric; among equals the lowest loss; among those the latest."""
    best = max(entry[metric] for entry in history)
    tied = [entry for entry in history if entry[metric] == best]
    lowest = min(entry["eval_loss"] for entry in tied)
    return [entry for entry in tied if entry["eval_loss"] == lowest][-1]


# ---- transformers' tests, ported ---------------------------------------------------------------------------------


def test_run_ner(tmp_path):
    """test_run_ner: its argument list with --model_name_or_path google-bert/bert-base-uncased left out (the embedded
    MiniLM), and --use_cpu as it adds on a CPU (epochs: 2, as with fewer than two GPUs)."""
    testargs = f"""
        run_ner.py
        --train_file {CONLL}
        --validation_file {CONLL}
        --output_dir {tmp_path}
        --overwrite_output_dir
        --do_train
        --do_eval
        --warmup_steps=2
        --learning_rate=2e-4
        --per_device_train_batch_size=2
        --per_device_eval_batch_size=2
        --num_train_epochs=2
        --seed 7
        --use_cpu
    """.split()
    with patch.object(sys, "argv", testargs):
        run_ner.main()
    result = get_results(tmp_path)
    assert result["eval_accuracy"] >= 0.75
    # Upstream asserts eval_loss < 0.5 for bert-base-uncased (110M parameters). With the embedded 22M-parameter
    # MiniLM the example's own run_ner.py ends at 0.548 on its fixture, failing its own bound; ours ends at 0.58 on
    # this fixture (its sentences are not the example's). The bound here is the model's, not a regression.
    assert result["eval_loss"] < 0.65
    # F1 is 0.0 after both epochs (10 sentences teach no entity yet): a tie. Upstream keeps the first checkpoint
    # (eval loss 0.84 here, 0.953 on the example's fixture); ours keeps the lower-loss, later one.
    history = evaluations(tmp_path)
    assert [entry["step"] for entry in history] == [5, 10]
    kept = kept_by_our_rule(history, "eval_f1")
    assert result["eval_loss"] == pytest.approx(kept["eval_loss"], rel=1e-6)
    assert result["eval_loss"] <= min(entry["eval_loss"] for entry in history if entry["eval_f1"] == kept["eval_f1"])


def test_run_glue(tmp_path):
    """test_run_glue, run with our run_classification.py (run_glue.py's job: its flags are ours), the embedded
    MiniLM instead of distilbert-base-uncased; no --fp16 (there is no GPU here)."""
    testargs = f"""
        run_glue.py
        --output_dir {tmp_path}
        --overwrite_output_dir
        --train_file {MRPC}/train.csv
        --validation_file {MRPC}/dev.csv
        --do_train
        --do_eval
        --per_device_train_batch_size=2
        --per_device_eval_batch_size=1
        --learning_rate=1e-4
        --max_steps=10
        --warmup_steps=2
        --seed=42
        --max_seq_length=128
        """.split()
    with patch.object(sys, "argv", testargs):
        run_classification.main()
    result = get_results(tmp_path)
    assert result["eval_accuracy"] >= 0.75
    # accuracy ties at 1.0 from the first evaluation (step 3) on; the kept model is the lowest-loss, latest one
    # (upstream keeps step 3), so the reported loss is the last evaluation's
    history = evaluations(tmp_path)
    assert result["eval_loss"] == pytest.approx(kept_by_our_rule(history, "eval_accuracy")["eval_loss"], rel=1e-6)
    assert "eval_f1" in result  # MRPC's GLUE metric; ours for any single-label run


def test_run_classification(tmp_path):
    """transformers has no test of run_classification.py; this one gives its documented flags (README: shuffle,
    --metric_name, several text columns joined by --text_column_delimiter, --label_column_name) with test_run_glue's
    training arguments and assertion, on the MRPC fixture."""
    testargs = f"""
        run_classification.py
        --output_dir {tmp_path}
        --overwrite_output_dir
        --train_file {MRPC}/train.csv
        --validation_file {MRPC}/dev.csv
        --shuffle_train_dataset
        --metric_name accuracy
        --text_column_names sentence1,sentence2
        --text_column_delimiter \\n
        --label_column_name label
        --do_train
        --do_eval
        --per_device_train_batch_size=2
        --per_device_eval_batch_size=1
        --learning_rate=1e-4
        --max_steps=10
        --warmup_steps=2
        --seed=42
        --max_seq_length=128
        """.split()
    with patch.object(sys, "argv", testargs):
        run_classification.main()
    result = get_results(tmp_path)
    assert result["eval_accuracy"] >= 0.75


# ---- each example flag: what it does here (tiny random BERT, or no training at all) --------------------------------


def ner_table(tmp_path) -> str:
    rows = [
        {"tokens": ["Ada", "met", "Bob"], "ner_tags": ["B-PER", "O", "B-PER"], "pos_tags": ["NNP", "VBD", "NNP"]},
        {"tokens": ["Rome", "is", "old"], "ner_tags": ["B-LOC", "O", "O"], "pos_tags": ["NNP", "VBZ", "JJ"]},
    ]
    path = tmp_path / "tags.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_ner_task_name_chooses_the_tag_column(tmp_path, write_file):
    path = ner_table(tmp_path)
    raw, _, _ = load(NER_TASK, "--train_file", path)
    assert raw["train"]["ner_tags"] == [["B-PER", "O", "B-PER"], ["B-LOC", "O", "O"]]
    raw, _, _ = load(NER_TASK, "--train_file", path, "--task_name", "POS")
    assert raw["train"]["ner_tags"] == [["NNP", "VBD", "NNP"], ["NNP", "VBZ", "JJ"]]
    with pytest.raises(DataError, match="--task_name chunk: no chunk_tags column"):
        load(NER_TASK, "--train_file", path, "--task_name", "chunk")
    conll = write_file("train.conll", "Ada NNP B-PER\nmet VBD O\n")
    with pytest.raises(ConfigError, match="--tag_column"):
        load(NER_TASK, "--train_file", conll, "--task_name", "pos")
    raw, _, _ = load(NER_TASK, "--train_file", conll, "--task_name", "pos", "--tag_column", "1")
    assert raw["train"]["ner_tags"] == [["NNP", "VBD"]]


def test_ner_pad_to_max_length_pads_every_batch(tiny_model, tmp_path, capsys):
    args = ["--model", tiny_model, "--train_file", str(CONLL), "--max_seq_length", "64", *TINY]
    packed = run_ner.main([*args, "--output_dir", str(tmp_path / "packed")])
    capsys.readouterr()
    padded = run_ner.main([*args, "--output_dir", str(tmp_path / "padded"), "--pad_to_max_length"])
    assert packed["train_padding_fraction"] < 0.1  # packed rows: little padding
    assert padded["train_padding_fraction"] > 0.4  # 10 sentences of 3-36 words, each padded to 64 tokens
    assert "--pad_to_max_length: every batch is padded to 64 tokens; --pack_sequences turned off" in (
        capsys.readouterr().out
    )


def test_classification_pad_to_max_length_pads_every_batch(tiny_model, tmp_path, capsys):
    args = ["--model", tiny_model, "--train_file", str(MRPC / "train.csv"), "--max_seq_length", "96", *TINY]
    dynamic = run_classification.main([*args, "--output_dir", str(tmp_path / "dynamic")])
    capsys.readouterr()
    padded = run_classification.main([*args, "--output_dir", str(tmp_path / "padded"), "--pad_to_max_length"])
    assert padded["train_padding_fraction"] > dynamic["train_padding_fraction"] + 0.2
    assert "every batch is padded to 96 tokens; --bucket_by_length turned off" in capsys.readouterr().out


def test_use_fast_tokenizer_false(tiny_model, tmp_path):
    from utils.core.modeling import embedded_model_path

    out = tmp_path / "slow"  # the embedded model's tokenizer files: the Python tokenizer reads vocab.txt
    run_classification.main(
        [
            "--model",
            tiny_model,
            "--tokenizer_name",
            embedded_model_path(),
            "--train_file",
            str(MRPC / "train.csv"),
            "--output_dir",
            str(out),
            "--use_fast_tokenizer",
            "false",
            *TINY,
        ]
    )
    saved = json.loads((out / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "BertTokenizerLegacy"  # transformers 5's Python (slow) BERT tokenizer
    assert not (out / "tokenizer.json").exists()
    with pytest.raises(ConfigError, match="NER needs a fast tokenizer"):
        run_ner.main(
            [
                "--model",
                tiny_model,
                "--train_file",
                str(CONLL),
                "--output_dir",
                str(tmp_path / "ner"),
                "--use_fast_tokenizer",
                "false",
                *TINY,
            ]
        )


def test_ignore_mismatched_sizes(tiny_model, tmp_path):
    """A checkpoint whose head was trained for 3 classes without naming them (LABEL_0..2, so not a fine-tuned label
    set we could grow): our 2 labels do not fit it."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    from utils.core.arguments import ModelArguments
    from utils.core.modeling import load_model

    headed = tmp_path / "three-way"
    AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3).save_pretrained(headed)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(headed)
    args = ["--model", str(headed), "--train_file", str(MRPC / "train.csv"), *TINY]
    with pytest.raises(ConfigError, match="--ignore_mismatched_sizes"):
        run_classification.main([*args, "--output_dir", str(tmp_path / "refused")])
    run_classification.main([*args, "--output_dir", str(tmp_path / "run"), "--ignore_mismatched_sizes"])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["id2label"] == {
        "0": "equivalent",
        "1": "not_equivalent",
    }
    tagger = tmp_path / "tagger"
    AutoModelForTokenClassification.from_pretrained(tiny_model, num_labels=5).save_pretrained(tagger)
    labels = LabelSpace(("O", "B-PER", "I-PER"))
    with pytest.raises(ConfigError, match="--ignore_mismatched_sizes"):
        load_model(ModelArguments(model_name_or_path=str(tagger)), AutoModelForTokenClassification, labels)
    model = load_model(
        ModelArguments(model_name_or_path=str(tagger), ignore_mismatched_sizes=True),
        AutoModelForTokenClassification,
        labels,
    )
    assert model.classifier.out_features == 3


def test_do_regression(tmp_path):
    stars = write_csv(tmp_path / "stars.csv", ["text", "label"], [("bad", 1), ("fine", 3), ("great", 5)])
    _, data, _ = load(CLASSIFICATION_TASK, "--train_file", stars)
    assert data.settled.problem_type == "single_label_classification"  # integers: classes, unless told
    raw, data, _ = load(CLASSIFICATION_TASK, "--train_file", stars, "--do_regression")
    assert data.settled.problem_type == "regression" and raw["train"]["label"] == [1.0, 3.0, 5.0]
    assert CLASSIFICATION_TASK.training.best_metric(data) == ("mse", False)
    halves = write_csv(tmp_path / "halves.csv", ["text", "label"], [("a", 0.5), ("b", 1.5)])
    _, data, _ = load(CLASSIFICATION_TASK, "--train_file", halves)
    assert data.settled.problem_type == "regression"
    raw, data, _ = load(CLASSIFICATION_TASK, "--train_file", halves, "--do_regression", "false")
    assert data.settled.problem_type == "single_label_classification" and raw["train"]["label"] == ["0.5", "1.5"]
    with pytest.raises(ConfigError, match="contradicts"):
        load(CLASSIFICATION_TASK, "--train_file", halves, "--do_regression", "true", "--problem_type", "multi_label")


def test_text_column_delimiter_joins_columns(tmp_path):
    path = write_csv(
        tmp_path / "three.csv",
        ["title", "body", "tag", "label"],
        [("Nice", "It works.", "tools", "a"), ("Bad", "It broke.", "toys", "b")],
    )
    raw, _, _ = load(CLASSIFICATION_TASK, "--train_file", path, "--text_column_names", "title,body,tag")
    assert raw["train"]["text"] == ["Nice It works. tools", "Bad It broke. toys"]  # the example's default: a space
    raw, _, _ = load(CLASSIFICATION_TASK, "--train_file", path, "--text_column_names", "title,body")
    assert raw["train"]["text"] == ["Nice", "Bad"] and raw["train"]["text_pair"] == ["It works.", "It broke."]
    raw, _, _ = load(
        CLASSIFICATION_TASK,
        "--train_file",
        path,
        "--text_column_names",
        "title,body",
        "--text_column_delimiter",
        "\\n",
    )
    assert raw["train"]["text"] == ["Nice\nIt works.", "Bad\nIt broke."]
    assert "text_pair" not in raw["train"].column_names


def fake_hub(splits: dict[str, Dataset], expected: tuple[str, str | None]):
    def load_dataset(name, config=None, **kwargs):
        assert (name, config) == expected
        return DatasetDict(splits)

    return load_dataset


def texts(n: int, start: int = 0) -> Dataset:
    return Dataset.from_dict(
        {
            "text": [f"text number {i}" for i in range(start, start + n)],
            "label": ["a" if i % 2 else "b" for i in range(start, start + n)],
        }
    )


def test_split_names_and_remove_splits(monkeypatch):
    splits = {
        "train": texts(4),
        "unused": texts(2, 100),
        "dev_a": texts(2, 200),
        "dev_b": texts(3, 300),
        "holdout": texts(2, 400),
    }
    monkeypatch.setattr(datasets, "load_dataset", fake_hub(splits, ("org/data", None)))
    raw, _, _ = load(
        CLASSIFICATION_TASK,
        "--dataset_name",
        "org/data",
        "--remove_splits",
        "unused,dev_a",
        "--validation_split_name",
        "dev_b",
        "--test_split_name",
        "holdout",
    )
    assert list(raw) == ["train", "validation", "test"]
    assert raw["validation"]["text"][0] == "text number 300" and raw["test"]["text"][0] == "text number 400"
    assert raw["validation"]["location"][0] == "org/data[dev_b] row 1"
    raw, _, _ = load(CLASSIFICATION_TASK, "--dataset_name", "org/data", "--train_split_name", "dev_b")
    assert raw["train"]["text"][0] == "text number 300" and list(raw) == ["train"]
    with pytest.raises(DataError, match=r"--remove_splits nope: .* has no such split"):
        load(CLASSIFICATION_TASK, "--dataset_name", "org/data", "--remove_splits", "nope")
    with pytest.raises(DataError, match="--validation_split_name nope"):
        load(CLASSIFICATION_TASK, "--dataset_name", "org/data", "--validation_split_name", "nope")


def test_remove_columns(tmp_path):
    path = write_csv(tmp_path / "two_texts.csv", ["text", "note", "label"], [("good", "x", "a"), ("bad", "y", "b")])
    with pytest.raises(DataError, match="cannot tell which column holds the text"):
        load(CLASSIFICATION_TASK, "--train_file", path)
    raw, _, _ = load(CLASSIFICATION_TASK, "--train_file", path, "--remove_columns", "note")
    assert raw["train"]["text"] == ["good", "bad"]
    with pytest.raises(DataError, match="--remove_columns missing: no split has such a column"):
        load(CLASSIFICATION_TASK, "--train_file", path, "--remove_columns", "missing")


def test_shuffle_train_dataset(tmp_path):
    rows = [(f"sentence {i}", "ab"[i % 2]) for i in range(30)]
    path = write_csv(tmp_path / "rows.csv", ["text", "label"], rows)
    first = ["--train_file", path, "--max_train_samples", "6"]
    raw, _, _ = load(CLASSIFICATION_TASK, *first)
    assert raw["train"]["text"] == [f"sentence {i}" for i in range(6)]
    sample, _, _ = load(CLASSIFICATION_TASK, *first, "--shuffle_train_dataset")
    other, _, _ = load(CLASSIFICATION_TASK, *first, "--shuffle_train_dataset", "--shuffle_seed", "7")
    assert sample["train"]["text"] != raw["train"]["text"] and other["train"]["text"] != sample["train"]["text"]
    for split in (sample["train"], other["train"]):  # a random sample, in file order, each at its own row
        numbers = [int(text.split()[1]) for text in split["text"]]
        assert numbers == sorted(numbers) and len(numbers) == 6
        assert split["location"] == [f"{path} row {n + 1}" for n in numbers]
    again, _, _ = load(CLASSIFICATION_TASK, *first, "--shuffle_train_dataset")
    assert again["train"]["text"] == sample["train"]["text"]  # seeded (--shuffle_seed 42)


def test_metric_name_keys_and_best_model(tiny_model, tmp_path):
    argv = [
        "--model",
        tiny_model,
        "--train_file",
        str(MRPC / "train.csv"),
        "--validation_file",
        str(MRPC / "dev.csv"),
        "--output_dir",
        str(tmp_path),
        "--metric_name",
        "f1,accuracy",
        *TINY,
    ]
    outcome = run_job(CLASSIFICATION_TASK, argv)
    results = outcome.results
    assert outcome.args.metric_for_best_model == "f1" and outcome.args.greater_is_better
    assert {"eval_f1", "eval_accuracy", "eval_combined_score"} <= set(results)
    assert results["eval_combined_score"] == pytest.approx((results["eval_f1"] + results["eval_accuracy"]) / 2)
    with pytest.raises(ConfigError, match="--metric_name mse does not apply to single_label_classification"):
        load(CLASSIFICATION_TASK, "--train_file", str(MRPC / "train.csv"), "--metric_name", "mse")
    with pytest.raises(ConfigError, match="--metric_name bleu: not a metric we compute"):
        load(CLASSIFICATION_TASK, "--train_file", str(MRPC / "train.csv"), "--metric_name", "bleu")


def scored(problem: str, names: tuple[str, ...], gold: list, decoded: list[dict], metric_name: str) -> dict:
    job = parse_job(
        CLASSIFICATION_TASK, ["--dataset_name", "x", "--output_dir", "unused", "--metric_name", metric_name]
    )
    data = LoadedData(DatasetDict(), job.data_args, ClassificationSettled(problem))
    metrics, _ = score_classification(decoded, Dataset.from_dict({"label": gold}), LabelSpace(names), data)
    return metrics


def test_metric_name_values_match_the_evaluate_metrics():
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score, matthews_corrcoef, precision_score, recall_score

    gold, predicted = ["b", "a", "b", "b", "a", "a"], ["b", "b", "b", "a", "a", "a"]
    metrics = scored(
        "single_label_classification",
        ("a", "b"),
        gold,
        [{"label": p} for p in predicted],
        "accuracy,f1,precision,recall,matthews_correlation",
    )
    ids = {"a": 0, "b": 1}
    g, p = [ids[x] for x in gold], [ids[x] for x in predicted]
    assert metrics["f1"] == pytest.approx(f1_score(g, p))  # binary, of label id 1, as evaluate's f1
    assert metrics["precision"] == pytest.approx(precision_score(g, p))
    assert metrics["recall"] == pytest.approx(recall_score(g, p))
    assert metrics["matthews_correlation"] == pytest.approx(matthews_corrcoef(g, p))
    assert metrics["combined_score"] == pytest.approx(
        sum(metrics[k] for k in ("accuracy", "f1", "precision", "recall", "matthews_correlation")) / 5
    )
    three = scored("single_label_classification", ("a", "b", "c"), ["a", "b", "c"], [{"label": "a"}] * 3, "f1")
    assert three["f1"] == pytest.approx(f1_score([0, 1, 2], [0, 0, 0], average="macro", zero_division=0))
    values, truth = [0.1, 0.9, 0.4, 0.7], [0.0, 1.0, 0.5, 0.5]
    regression = scored("regression", ("score",), truth, [{"value": v} for v in values], "mse,pearsonr,spearmanr")
    assert regression["pearsonr"] == pytest.approx(pearsonr(truth, values)[0])
    assert regression["spearmanr"] == pytest.approx(spearmanr(truth, values)[0])
    assert regression["mse"] == pytest.approx(sum((v - t) ** 2 for v, t in zip(values, truth)) / 4)
    multi = scored(
        "multi_label_classification", ("x", "y"), [["x"], ["x", "y"]], [{"labels": ["x"]}] * 2, "f1,accuracy"
    )
    assert multi["f1"] == pytest.approx(f1_score([[1, 0], [1, 1]], [[1, 0], [1, 0]], average="micro"))
    assert multi["accuracy"] == 0.5  # subset accuracy


def glue_mrpc() -> dict[str, Dataset]:
    features = Features(
        {
            "sentence1": Value("string"),
            "sentence2": Value("string"),
            "label": ClassLabel(names=["not_equivalent", "equivalent"]),
            "idx": Value("int32"),
        }
    )
    rows = mrpc_rows()
    columns = {
        "sentence1": [r["sentence1"] for r in rows],
        "sentence2": [r["sentence2"] for r in rows],
        "label": [int(r["label"] == "equivalent") for r in rows],
        "idx": list(range(len(rows))),
    }
    unlabelled = {**columns, "label": [-1] * len(rows)}  # GLUE's test splits have no labels
    return {
        "train": Dataset.from_dict(columns, features=features),
        "validation": Dataset.from_dict(columns, features=features),
        "test": Dataset.from_dict(unlabelled, features=features),
    }


def test_glue_task_name(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", fake_hub(glue_mrpc(), ("nyu-mll/glue", "mrpc")))
    out = tmp_path / "mrpc"
    results = run_classification.main(["--model", tiny_model, "--task_name", "mrpc", "--output_dir", str(out), *TINY])
    assert {"eval_accuracy", "eval_f1", "eval_combined_score"} <= set(results)  # run_glue.py's keys for MRPC
    assert "predict_accuracy" not in results  # the test split is unlabelled: predicted, not scored
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "not_equivalent", "1": "equivalent"}  # GLUE's ids: F1 is of "equivalent"
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == len(mrpc_rows()) and records[0]["text_pair"] == mrpc_rows()[0]["sentence2"]
    stsb = {
        split: Dataset.from_dict(
            {"sentence1": ["a b", "c d"], "sentence2": ["a b", "e f"], "label": [5.0, 0.4], "idx": [0, 1]}
        )
        for split in ("train", "validation")
    }
    monkeypatch.setattr(datasets, "load_dataset", fake_hub(stsb, ("nyu-mll/glue", "stsb")))
    raw, data, _ = load(CLASSIFICATION_TASK, "--task_name", "stsb")
    assert data.settled.problem_type == "regression" and raw["train"]["text_pair"] == ["a b", "e f"]
    assert CLASSIFICATION_TASK.training.best_metric(data) == ("pearson", True)
    with pytest.raises(ConfigError, match="not a GLUE task"):
        load(CLASSIFICATION_TASK, "--task_name", "squad")


def test_glue_task_name_offline_is_a_clear_error():
    with pytest.raises(
        DataError,
        match=r"--task_name cola loads the GLUE dataset nyu-mll/glue from the Hub .*"
        r"Offline .* --train_file/--validation_file",
    ):
        load(CLASSIFICATION_TASK, "--task_name", "cola")


def test_entity_level_metrics_have_the_example_keys():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]
    predicted = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "O"]]
    metrics, _ = entity_metrics(gold, predicted, per_type=True)
    assert metrics["overall_f1"] == metrics["f1"] and metrics["overall_accuracy"] == metrics["accuracy"]
    assert {"overall_precision", "overall_recall"} <= set(metrics)
    assert (metrics["LOC_number"], metrics["PER_number"]) == (2, 1) == (metrics["LOC_support"], metrics["PER_support"])
    assert metrics["LOC_recall"] == 0.5
    plain, _ = entity_metrics(gold, predicted)
    assert not [key for key in plain if key.startswith("overall_") or key.endswith("_number")]


# ---- ties and the checkpoint kept; checkpoint cost ----------------------------------------------------------------


def test_a_tie_goes_to_the_lower_loss_then_to_the_later_checkpoint(tiny_model, tmp_path):
    from transformers import AutoModelForTokenClassification

    from utils.training.arguments import FinetuneTrainingArguments
    from utils.training.trainer import FinetuneTrainer

    args = FinetuneTrainingArguments(
        output_dir=str(tmp_path),
        metric_for_best_model="f1",
        greater_is_better=True,
        eval_strategy="epoch",
        save_strategy="epoch",
        report_to="none",
    )
    trainer = FinetuneTrainer(
        model=AutoModelForTokenClassification.from_pretrained(tiny_model, num_labels=3),
        args=args,
        eval_dataset=Dataset.from_dict({"input_ids": [[101, 102]]}),
    )

    def evaluate(step, f1, loss):
        trainer.state.global_step = step
        trainer.state.log_history.append({"step": step, "eval_f1": f1, "eval_loss": loss})
        return trainer._determine_best_metric({"eval_f1": f1, "eval_loss": loss}, trial=None)

    assert evaluate(1, 0.5, 0.9) and trainer.state.best_global_step == 1
    assert evaluate(2, 0.5, 0.7) and trainer.state.best_global_step == 2  # tie, lower loss
    assert not evaluate(3, 0.5, 0.8) and trainer.state.best_global_step == 2  # tie, higher loss: kept
    assert evaluate(4, 0.5, 0.7) and trainer.state.best_global_step == 4  # tie, same loss: the later
    assert not evaluate(5, 0.4, 0.1) and trainer.state.best_global_step == 4  # worse metric: loss does not count
    assert evaluate(6, 0.6, 2.0) and trainer.state.best_global_step == 6  # better metric, whatever the loss


def test_a_restored_earlier_checkpoint_says_which_and_why():
    from utils.training.arguments import FinetuneTrainingArguments

    args = FinetuneTrainingArguments(
        output_dir="unused",
        load_best_model_at_end=True,
        eval_strategy="epoch",
        save_strategy="epoch",
        metric_for_best_model="f1",
        report_to="none",
    )
    state = TrainerState(
        global_step=10,
        best_global_step=5,
        best_model_checkpoint="out/checkpoint-5",
        log_history=[{"step": 5, "eval_f1": 0.8, "eval_loss": 0.5}, {"step": 10, "eval_f1": 0.7, "eval_loss": 0.4}],
    )
    assert kept_checkpoint(state, args) == {
        "kept_step": 5,
        "kept_reason": "f1 0.8000 against 0.7000 at the last evaluation (step 10; higher is better)",
    }
    state.log_history[1]["eval_f1"] = 0.8
    state.log_history[1]["eval_loss"] = 0.6
    assert (
        "f1 tied at 0.8000 with the last evaluation (step 10); lower loss 0.5000 against 0.6000"
        in kept_checkpoint(state, args)["kept_reason"]
    )
    state.best_global_step, state.best_model_checkpoint = 10, "out/checkpoint-10"
    assert kept_checkpoint(state, args) == {}  # the last step's: nothing to say


class CheckpointFiles(TrainerCallback):
    """The files of every checkpoint directory as each epoch begins."""

    def __init__(self) -> None:
        self.seen: list[dict[str, set[str]]] = []

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.seen.append(
            {path.name: {f.name for f in path.iterdir()} for path in Path(args.output_dir).glob("checkpoint-*")}
        )


def test_only_the_newest_checkpoint_keeps_resume_state(tiny_model, tmp_path):
    files = CheckpointFiles()
    out = tmp_path / "run"
    run_ner.main(
        [
            "--model",
            tiny_model,
            "--train_file",
            str(CONLL),
            "--validation_file",
            str(CONLL),
            "--output_dir",
            str(out),
            *TINY,
            "--num_train_epochs",
            "3",
            "--per_device_train_batch_size",
            "5",
        ],
        callbacks=[files],
    )
    resume_state = {"optimizer.pt", "scheduler.pt", "rng_state.pth"}
    assert files.seen[1]["checkpoint-2"] >= resume_state  # while training: the newest can be resumed from
    assert not files.seen[2]["checkpoint-2"] & resume_state  # superseded: weights only (a best-model candidate)
    assert files.seen[2]["checkpoint-4"] >= resume_state
    kept = {path.name: {f.name for f in path.iterdir()} for path in out.glob("checkpoint-*")}
    assert kept["checkpoint-6"] >= resume_state  # a finished run can still be resumed to train longer
    assert all(not names & resume_state for name, names in kept.items() if name != "checkpoint-6")
