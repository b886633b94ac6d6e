"""Zero-shot and few-shot classification: K-per-label sampling, contrastive pairs, the head, end-to-end runs."""

import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from transformers import pipeline

import predict
import run_classification
from tests.conftest import ROOT
from utils.core.errors import ConfigError, DataError
from utils.serving.predictor import Predictor
from utils.tasks.classification.few_shot import (
    CONTRASTIVE_DIR,
    contrastive_pairs,
    contrastive_steps,
    contrastive_training_args,
    head_from_logistic_regression,
    sample_k_per_label,
)

SENTIMENT = ROOT / "data" / "classification" / "sentiment"
FAST = ["--report_to", "none", "--logging_steps", "5", "--per_device_train_batch_size", "8"]

label_lists = st.lists(st.sampled_from("abcd"), min_size=2, max_size=60)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- sampling


@settings(max_examples=100, deadline=None)
@given(labels=label_lists, k=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_sampling_takes_exactly_k_of_each_label_and_is_seeded(labels, k, seed):
    counts = Counter(labels)
    if min(counts.values()) < k:
        with pytest.raises(DataError, match=f"--few_shot_k {k}"):
            sample_k_per_label(labels, k, seed)
        return
    rows = sample_k_per_label(labels, k, seed)
    assert rows == sorted(set(rows)) and all(0 <= i < len(labels) for i in rows)
    assert Counter(labels[i] for i in rows) == {label: k for label in counts}
    assert sample_k_per_label(labels, k, seed) == rows


def test_sampling_error_names_each_short_label_and_its_count():
    with pytest.raises(DataError, match=r"'neg' has 2.*Lower --few_shot_k"):
        sample_k_per_label(["pos"] * 5 + ["neg"] * 2, 3, 0)
    with pytest.raises(DataError, match="'other' has 0"):
        sample_k_per_label(["pos"] * 5, 3, 0, wanted=["pos", "other"])


def test_different_seeds_draw_different_samples():
    labels = ["a"] * 50 + ["b"] * 50
    assert len({tuple(sample_k_per_label(labels, 5, seed)) for seed in range(5)}) > 1


# ---------------------------------------------------------------- pairs and head


@settings(max_examples=100, deadline=None)
@given(
    labels=st.lists(st.integers(0, 3), min_size=2, max_size=40).filter(lambda ls: len(set(ls)) > 1),
    iterations=st.integers(1, 5),
    max_pairs=st.none() | st.integers(2, 200),
    seed=st.integers(0, 1000),
)
def test_contrastive_pairs_are_balanced_and_labelled_right(labels, iterations, max_pairs, seed):
    pairs = contrastive_pairs(labels, iterations, seed, max_pairs)
    targets = Counter(target for *_, target in pairs)
    assert targets[1.0] == targets[0.0]
    full = 2 * iterations * len(labels)
    assert len(pairs) == (full if max_pairs is None or max_pairs >= full else max_pairs // 2 * 2)
    singletons = {label for label, n in Counter(labels).items() if n == 1}
    for i, j, target in pairs:
        assert (labels[i] == labels[j]) == (target == 1.0)
        assert i != j or (target == 1.0 and labels[i] in singletons)
    assert contrastive_pairs(labels, iterations, seed, max_pairs) == pairs


def test_contrastive_pairs_need_two_labels():
    with pytest.raises(DataError, match="two labels"):
        contrastive_pairs([0, 0, 0], 2, 0)


def test_binary_head_gives_the_logistic_regressions_probabilities():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    weight, bias = head_from_logistic_regression(x, y, 2, seed=0)
    logits = x @ weight.T + bias
    ours = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = LogisticRegression(max_iter=1000, random_state=0).fit(x, y).predict_proba(x)
    assert weight.shape == (2, 8) and np.allclose(ours, expected, atol=1e-5)


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--zero_shot", "--few_shot_k", "4"], "exclude each other"),
        (["--few_shot_k", "0"], "positive number"),
        (["--few_shot_k", "1"], "no same-label pairs"),
        (["--label_descriptions", "labels.yaml"], "add --zero_shot"),
    ],
)
def test_argument_errors(flags, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        run_classification.main(["--train_file", str(SENTIMENT / "train.tsv"), "--output_dir", str(tmp_path), *flags])


def test_k_larger_than_a_label_says_which(tiny_model, write_file, tmp_path):
    train = write_file("train.tsv", "label\ttext\n" + "a\tx y\n" * 5 + "b\tz w\n" * 2)
    with pytest.raises(DataError, match="'b' has 2"):
        run_classification.main(
            [
                "--model",
                tiny_model,
                "--train_file",
                train,
                "--few_shot_k",
                "3",
                "--output_dir",
                str(tmp_path / "out"),
                *FAST,
            ]
        )


# ---------------------------------------------------------------- end to end


def test_zero_shot_beats_chance_without_training_and_reloads(write_file, tmp_path):
    """The real embedded model: topics any sentence embedding tells apart; no train split at all."""
    rows = [
        ("sports", "The striker scored twice and the team won the cup final."),
        ("sports", "She won the tennis match in straight sets."),
        ("sports", "The marathon runner crossed the finish line first."),
        ("food", "Add the garlic to the pan and simmer the tomato sauce."),
        ("food", "This bakery sells the best chocolate cake and fresh bread."),
        ("food", "The soup needs more salt and pepper."),
        ("weather", "Heavy rain and strong winds are expected tomorrow."),
        ("weather", "It will be sunny and warm all weekend."),
        ("weather", "Snow is falling and temperatures drop below freezing tonight."),
    ]
    test = write_file("test.tsv", "label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in rows))
    labels = write_file("labels.yaml", "sports: sports and games\nfood: food and cooking\nweather: the weather\n")
    out = tmp_path / "zero"
    results = run_classification.main(
        [
            "--test_file",
            test,
            "--zero_shot",
            "--label_descriptions",
            labels,
            "--output_dir",
            str(out),
            "--report_to",
            "none",
        ]
    )
    assert results["predict_accuracy"] > 2 / 3  # chance is 1/3
    assert "train_loss" not in results and not (out / "train_results.json").exists()
    config = json.loads((out / "config.json").read_text())
    assert list(config["id2label"].values()) == ["sports", "food", "weather"]  # the descriptions' order
    assert config["label_descriptions"]["food"] == ["food and cooking"]
    assert "Zero-shot, no training" in (out / "README.md").read_text()
    for name in (
        "predictions.jsonl",
        "predictions.tsv",
        "confusion_matrix.json",
        "classification_report.txt",
        "all_results.json",
    ):
        assert (out / name).is_file(), name
    written = read_jsonl(out / "predictions.jsonl")
    reloaded = Predictor.from_pretrained(str(out), device="cpu").predict([text for _, text in rows])
    assert [r["label"] for r in reloaded] == [r["label"] for r in written]


def test_zero_shot_label_names_as_descriptions(tmp_path):
    results = run_classification.main(
        [
            "--validation_file",
            str(SENTIMENT / "validation.tsv"),
            "--zero_shot",
            "--max_eval_samples",
            "40",
            "--output_dir",
            str(tmp_path),
            "--report_to",
            "none",
        ]
    )
    assert results["eval_accuracy"] > 0.5
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["label_descriptions"] == {"negative": ["negative"], "positive": ["positive"]}


def few_shot_run(tiny_model, out, *flags):
    return run_classification.main(
        [
            "--model",
            tiny_model,
            "--train_file",
            str(SENTIMENT / "train.tsv"),
            "--validation_file",
            str(SENTIMENT / "validation.tsv"),
            "--test_file",
            str(SENTIMENT / "test.tsv"),
            "--output_dir",
            str(out),
            "--num_train_epochs",
            "1",
            *FAST,
            *flags,
        ]
    )


def test_contrastive_few_shot_run_saves_reloads_and_predicts(tiny_model, tmp_path, write_file):
    out = tmp_path / "contrastive"
    results = few_shot_run(tiny_model, out, "--few_shot_k", "4", "--few_shot_iterations", "2", "--few_shot_seed", "7")
    assert results["train_samples"] == 8 and "eval_accuracy" in results and "predict_accuracy" in results
    sample = json.loads((out / "few_shot_sample.json").read_text())
    assert sample["per_label"] == {"negative": 4, "positive": 4} and sample["seed"] == 7
    assert sample["contrastive_pairs"] == 2 * 2 * 8 and len(sample["rows"]) == 8
    train_rows = (SENTIMENT / "train.tsv").read_text().splitlines()[1:]
    assert [train_rows[i].split("\t")[1] for i in sample["rows"]] == sample["texts"]
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["MeanPoolingForSequenceClassification"] and config["sentence_pooling"] == "mean"
    assert "Contrastive (SetFit-style)" in (out / "README.md").read_text()

    written = read_jsonl(out / "predictions.jsonl")
    predictor = Predictor.from_pretrained(str(out), device="cpu")
    reloaded = predictor.predict([r["text"] for r in written])
    assert [r["label"] for r in reloaded] == [r["label"] for r in written]
    # the run's predictions.jsonl is written before the calibration stage: its probabilities are the model's own,
    # predict.py's the temperature-scaled ones (docs/calibration.md)
    temperature = config["calibration"]["temperature"]
    for ours, theirs in zip(reloaded, written):
        scaled = np.exp(np.log(list(theirs["probabilities"].values())) / temperature)
        assert list(ours["probabilities"].values()) == pytest.approx((scaled / scaled.sum()).tolist(), abs=1e-4)
    classifier = pipeline("text-classification", model=str(out), trust_remote_code=True)  # the saved code
    assert [r["label"] for r in classifier([r["text"] for r in written[:5]])] == [r["label"] for r in written[:5]]
    cli_out = tmp_path / "cli.jsonl"
    texts = write_file("in.txt", "".join(r["text"] + "\n" for r in written[:5]))
    predict.main(["--model", str(out), "--input", texts, "--output", str(cli_out), "--device", "cpu"])
    assert [r["label"] for r in read_jsonl(cli_out)] == [r["label"] for r in written[:5]]

    # a saved few-shot model is a starting point like any other: it fine-tunes further with the ordinary recipe
    again = few_shot_run(str(out), tmp_path / "further", "--max_train_samples", "16")
    assert "predict_accuracy" in again


def scalar_events(runs) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of every scalar in the TensorBoard event files under `runs`, by tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(runs.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            found.setdefault(tag, []).extend((event.step, event.value) for event in accumulator.Scalars(tag))
    return {tag: sorted(values) for tag, values in found.items()}


def test_contrastive_phase_trains_through_trainer_and_logs_to_tensorboard(tiny_model, tmp_path):
    """K=4 of 2 labels, 3 rounds: 48 pairs; batches of 10 make 5 steps an epoch, 2 epochs 10 steps (warmup 1)."""
    out = tmp_path / "tb"
    few_shot_run(
        tiny_model,
        out,
        "--few_shot_k",
        "4",
        "--few_shot_iterations",
        "3",
        "--few_shot_batch_size",
        "10",
        "--few_shot_epochs",
        "2",
        "--few_shot_learning_rate",
        "1e-3",
        "--few_shot_seed",
        "3",
        "--report_to",
        "tensorboard",
        "--logging_steps",
        "1",
    )
    sample = json.loads((out / "few_shot_sample.json").read_text())
    assert sample["contrastive_pairs"] == 48 and sample["contrastive_steps"] == math.ceil(48 / 10) * 2 == 10
    phase = out / CONTRASTIVE_DIR
    assert [path.name for path in phase.iterdir()] == ["runs"]  # logs only: no checkpoints, no results
    scalars = scalar_events(phase / "runs")
    steps = list(range(1, 11))
    assert [step for step, _ in scalars["train/loss"]] == steps  # one loss per optimizer step: Trainer's logging
    # one warmup step (int(0.1 * 10)) at rate 0, then linear decay: step s takes 1e-3 * (11 - s) / 9
    rates = [rate for _, rate in scalars["train/learning_rate"]]
    assert rates == pytest.approx([0.0] + [1e-3 * (11 - s) / 9 for s in steps[1:]], rel=1e-6)
    losses = [loss for _, loss in scalars["train/loss"]]
    assert sample["contrastive_final_loss"] == pytest.approx(losses[-1], rel=1e-5)  # the last 10% is one step
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert scalars["train/loss"] != scalar_events(out / "runs").get("train/loss")  # the train stage logs apart


def test_contrastive_training_args_keep_the_runs_setup_and_set_the_phases_own(tmp_path):
    from utils.tasks.classification.arguments import ClassificationDataArguments
    from utils.training.arguments import FinetuneTrainingArguments

    run = FinetuneTrainingArguments(
        output_dir=str(tmp_path),
        report_to=["tensorboard"],
        logging_steps=7,
        logging_first_step=True,
        seed=1,
        learning_rate=5e-5,
        weight_decay=0.3,
        max_grad_norm=1.0,
        gradient_accumulation_steps=4,
        warmup_steps=0.5,
        per_device_train_batch_size=32,
        num_train_epochs=3,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        early_stopping_patience=2,
        label_smoothing_factor=0.1,
        optim="adafactor",
        lr_scheduler_type="cosine",
        dataloader_drop_last=True,
    )
    data = ClassificationDataArguments(
        few_shot_k=8, few_shot_batch_size=12, few_shot_epochs=2, few_shot_learning_rate=3e-5
    )
    args = contrastive_training_args(run, data, steps=contrastive_steps(100, 12, 2), seed=9)
    assert contrastive_steps(100, 12, 2) == 18 and contrastive_steps(100, 12, 2, world_size=2) == 10
    assert args.output_dir == os.path.join(str(tmp_path), CONTRASTIVE_DIR)
    kept = (
        "report_to",
        "logging_steps",
        "logging_first_step",
        "use_cpu",
        "bf16",
        "fp16",
        "world_size",
        "local_rank",
        "disable_tqdm",
    )
    assert {name: getattr(args, name) for name in kept} == {name: getattr(run, name) for name in kept}
    assert (args.per_device_train_batch_size, args.num_train_epochs, args.learning_rate, args.seed) == (12, 2, 3e-5, 9)
    assert (args.optim, args.weight_decay, args.lr_scheduler_type, args.warmup_steps, args.max_grad_norm) == (
        "adamw_torch",
        0.01,
        "linear",
        1,
        0.0,
    )
    assert (args.adam_beta1, args.adam_beta2, args.adam_epsilon) == (0.9, 0.999, 1e-8)  # torch AdamW's own
    assert (args.gradient_accumulation_steps, args.label_smoothing_factor, args.dataloader_drop_last) == (
        1,
        0.0,
        False,
    )
    assert (args.save_strategy, args.eval_strategy, args.load_best_model_at_end) == ("no", "no", False)
    assert args.early_stopping_patience is None and args.data_seed is None and not args.remove_unused_columns


DDP_ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
}


def test_contrastive_phase_in_two_processes_equals_one_with_the_same_global_batch(tiny_model, tmp_path):
    """Real DDP (gloo, configs/accelerate/cpu_ddp.yaml): 32 pairs, 4 per process and step, are the steps of 8 pairs
    one process takes: half the steps of 4, the same losses and the same tuned encoder."""
    common = [
        "--bf16",  # the equalities hold in fp32 (bf16 autocast, the default on some CPUs, rounds per process)
        "false",
        "--model",
        tiny_model,
        "--train_file",
        str(SENTIMENT / "train.tsv"),
        "--validation_file",
        str(SENTIMENT / "validation.tsv"),
        "--few_shot_k",
        "4",
        "--few_shot_iterations",
        "2",
        "--few_shot_learning_rate",
        "1e-3",
        "--num_train_epochs",
        "1",
        "--report_to",
        "none",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
    ]
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    launches = {
        "ddp": [
            accelerate,
            "launch",
            "--config_file",
            str(ROOT / "configs" / "accelerate" / "cpu_ddp.yaml"),
            str(ROOT / "run_classification.py"),
            *common,
            "--few_shot_batch_size",
            "4",
        ],
        "one": [sys.executable, str(ROOT / "run_classification.py"), *common, "--few_shot_batch_size", "8"],
    }
    logs, samples, encoders = {}, {}, {}
    for name, command in launches.items():
        proc = subprocess.run(
            [*command, "--output_dir", str(tmp_path / name)],
            cwd=ROOT,
            env=DDP_ENV,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        logs[name] = proc.stdout + proc.stderr
        samples[name] = json.loads((tmp_path / name / "few_shot_sample.json").read_text())
        weights = load_file(tmp_path / name / "model.safetensors")
        encoders[name] = {key: value for key, value in weights.items() if key.startswith("encoder.")}
    assert "World size 2 (distributed)" in logs["ddp"] and "World size 1" in logs["one"]
    ddp, one = samples["ddp"], samples["one"]
    assert ddp["contrastive_pairs"] == one["contrastive_pairs"] == 32
    assert ddp["contrastive_steps"] == one["contrastive_steps"] == contrastive_steps(32, 4, 1, world_size=2) == 4
    assert ddp["contrastive_final_loss"] == pytest.approx(one["contrastive_final_loss"], rel=1e-4)
    assert encoders["ddp"].keys() == encoders["one"].keys() and len(encoders["one"]) > 20  # frozen after the phase
    for key, value in encoders["one"].items():
        assert torch.allclose(encoders["ddp"][key], value, atol=1e-5), key


def test_finetune_few_shot_trains_the_ordinary_model_on_exactly_k_per_label(tiny_model, tmp_path):
    out = tmp_path / "finetune"
    results = few_shot_run(tiny_model, out, "--few_shot_k", "3", "--few_shot_method", "finetune")
    assert results["train_samples"] == 6
    assert json.loads((out / "few_shot_sample.json").read_text())["per_label"] == {"negative": 3, "positive": 3}
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]


# ---------------------------------------------------------------- zero-shot labels (no model)


def zero_shot_args(**kwargs):
    from utils.tasks.classification.arguments import ClassificationDataArguments

    return ClassificationDataArguments(zero_shot=True, **kwargs)


def select(raw, args):
    """Zero-shot's selection on single-label data: (splits kept, label order settled)."""
    from utils.core.task import LoadedData
    from utils.tasks.classification.data import select_training_data
    from utils.tasks.classification.settled import ClassificationSettled, settled_label_names

    data = select_training_data(LoadedData(raw, args, ClassificationSettled("single_label_classification")))
    return data.raw, settled_label_names(data)


def test_zero_shot_labels_come_from_descriptions_then_train_labels_and_train_is_dropped(write_file):
    from datasets import Dataset, DatasetDict

    def raw():
        return DatasetDict(
            train=Dataset.from_dict({"text": ["a", "b"], "label": ["2", "10"], "location": ["", ""]}),
            test=Dataset.from_dict({"text": ["c"], "label": ["2"], "location": [""]}),
        )

    given = zero_shot_args()
    selected, names = select(raw(), given)
    assert set(selected) == {"test"} and names == ["2", "10"] and given.label_names is None
    described = zero_shot_args(label_descriptions=write_file("d.yaml", "10: ten\n2: [two, a pair]\n"))
    assert select(raw(), described)[1] == ["10", "2"]


def test_label_description_errors(write_file):
    from utils.core.labels import LabelSpace
    from utils.tasks.classification.zero_shot import descriptions_for, read_label_descriptions

    with pytest.raises(ConfigError, match="non-empty description"):
        read_label_descriptions(write_file("bad.yaml", "pos: ''\n"))
    with pytest.raises(ConfigError, match="must map each label"):
        read_label_descriptions(write_file("list.yaml", "- pos\n- neg\n"))
    with pytest.raises(ConfigError, match=r"\['nuetral'\] that are not among"):
        descriptions_for(LabelSpace(("neg", "pos")), {"nuetral": ["x"]})
    assert descriptions_for(LabelSpace(("not_spam", "spam")), {"spam": ["junk mail"]}) == {
        "not_spam": ["not spam"],
        "spam": ["junk mail"],
    }


def test_zero_shot_refuses_training_and_protects_a_finished_run(tmp_path):
    base = [
        "--validation_file",
        str(SENTIMENT / "validation.tsv"),
        "--zero_shot",
        "--max_eval_samples",
        "8",
        "--output_dir",
        str(tmp_path),
        "--report_to",
        "none",
    ]
    with pytest.raises(ConfigError, match="--zero_shot does not train: drop --do_train"):
        run_classification.main([*base, "--do_train"])
    run_classification.main(base)
    with pytest.raises(ConfigError, match="already holds a finished run"):
        run_classification.main(base)
    run_classification.main([*base, "--overwrite_output_dir"])
