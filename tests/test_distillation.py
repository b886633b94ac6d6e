"""Distillation (utils/training/distillation.py, teacher.py, student.py and the tasks' distillation modules): the
loss through `Trainer` equals the hand-computed KL, word-level soft targets across two different tokenizers, students
built by layer selection, and end-to-end runs of both scripts whose students reload and predict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoConfig, AutoModelForTokenClassification, BertConfig, BertForTokenClassification

import export
import predict
import run_classification
import run_ner
from tests.conftest import ROOT
from tests.tiny_architectures import ARCHITECTURES, build, conll_texts
from utils.core.arguments import ModelArguments
from utils.core.conll import read_conll
from utils.core.errors import ConfigError, DataError
from utils.core.labels import LabelSpace
from utils.core.modeling import load_tokenizer
from utils.core.task import LoadedData
from utils.tasks.ner.arguments import NerDataArguments
from utils.tasks.ner.distillation import ner_soft_labels, ner_word_logits, read_ner_unlabelled
from utils.tasks.ner.encoding import encode_ner
from utils.training.arguments import FinetuneTrainingArguments
from utils.training.distillation import DistillationLoss, SoftLabelCollator, distillation_sums
from utils.training.student import evenly_spaced, keep_layers, layer_list
from utils.training.trainer import build_trainer

NER_DATA = ROOT / "data" / "ner"
SENTIMENT = ROOT / "data" / "classification" / "sentiment"
FAST = ["--per_device_train_batch_size", "16", "--report_to", "none", "--num_train_epochs", "1"]
TAGS = ("O", "B-PER", "I-PER")


# ---------------------------------------------------------------- the loss


def test_kl_of_a_uniform_teacher_against_a_three_to_one_student_is_half_ln_four_thirds():
    # teacher [0, 0] is uniform; student [ln 3, 0] is (3/4, 1/4): KL = 1/2 ln(1/2 / 3/4) + 1/2 ln(1/2 / 1/4)
    soft = torch.tensor([[1.0, -100.0, 0.0, 0.0]])
    total, items = distillation_sums(torch.tensor([[math.log(3), 0.0]]), soft, 1.0, 1.0, 0.0)
    assert items.item() == 1 and total.item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-6)


def hand_loss(logits, soft, temperature, distill_weight, gold_weight) -> float:
    """The loss item by item in plain Python: sum over items with a target, divided by their number."""
    total, items = 0.0, 0
    for student, item in zip(logits.reshape(-1, logits.shape[-1]).tolist(), soft.reshape(-1, soft.shape[-1]).tolist()):
        if item[0] != 1:
            continue
        items += 1
        teacher = item[2:]
        p = [math.exp(t / temperature) for t in teacher]
        p = [v / sum(p) for v in p]
        q = [math.exp(s / temperature) for s in student]
        q = [v / sum(q) for v in q]
        total += distill_weight * temperature**2 * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
        if item[1] != -100:
            total -= gold_weight * math.log(math.exp(student[int(item[1])]) / sum(math.exp(s) for s in student))
    return total / items


def test_the_loss_through_trainer_equals_the_hand_computed_kl_on_a_tiny_batch(tiny_model, tmp_path):
    """A batch of two sentences as the collator makes it: one with gold and teacher targets, one teacher-only
    (--distill_file), padding and a token without a target; `Trainer` counts the items and computes the loss."""
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(tiny_model, num_labels=3)
    tokenizer = load_tokenizer(ModelArguments(model_name_or_path=tiny_model))
    rows = [
        {
            "input_ids": [101, 2198, 2003, 102],
            "attention_mask": [1] * 4,
            "labels": [[0, -100, 0, 0, 0], [1, 1, 2.0, -1.0, 0.5], [1, 0, 0.1, 0.2, 3.0], [0, -100, 0, 0, 0]],
        },
        {
            "input_ids": [101, 3000, 102],
            "attention_mask": [1] * 3,
            "labels": [[0, -100, 0, 0, 0], [1, -100, -2.0, 1.0, 1.0], [0, -100, 0, 0, 0]],
        },
    ]
    args = FinetuneTrainingArguments(output_dir=str(tmp_path), report_to=[], distill_temperature=2.0)
    collator = SoftLabelCollator(lambda features: tokenizer.pad(features, return_tensors="pt"), per_token=True)
    loss_func = DistillationLoss(None, temperature=2.0, distill_weight=0.7, gold_weight=0.3)
    trainer = build_trainer(model, tokenizer, args, {}, collator, None, loss_func)
    batch = collator(rows)
    assert batch["labels"].shape == (2, 4, 5) and batch["labels"][1, 3, 0] == 0  # padded item: no target
    items = trainer._get_num_items_in_batch([batch], torch.device("cpu"))
    assert int(items) == 3
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=items)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert loss.item() == pytest.approx(hand_loss(logits, batch["labels"], 2.0, 0.7, 0.3), rel=1e-5)


def test_evaluation_batches_with_gold_labels_get_the_tasks_own_loss():
    gold_loss = lambda outputs, labels, num_items_in_batch=None: torch.tensor(7.0)  # noqa: E731
    loss = DistillationLoss(gold_loss, 2.0, 0.5, 0.5)
    assert loss({"logits": torch.zeros(2, 3, 4)}, torch.zeros(2, 3, dtype=torch.long)).item() == 7.0


# ---------------------------------------------------------------- word-level targets across tokenizers


def ner_data(**overrides) -> LoadedData:
    return LoadedData(raw=None, args=NerDataArguments(**overrides))


def test_word_targets_map_between_two_different_tokenizers(tiny_model, tmp_path):
    """Teacher: the embedded uncased WordPiece; student: a cased byte-level BPE. Each student word's first subword
    gets exactly the logits the teacher gave that word, on long sentences split into overlapping windows too."""
    from datasets import Dataset

    roberta = build("roberta", tmp_path / "roberta", conll_texts(NER_DATA / "train.conll"), vocab_size=300)
    teacher_tokenizer = load_tokenizer(ModelArguments(model_name_or_path=tiny_model), word_split=True)
    student_tokenizer = load_tokenizer(
        ModelArguments(model_name_or_path=roberta), word_split=True, add_prefix_space=True
    )
    sentences = read_conll(NER_DATA / "train.conll").tokens[:40]
    sentences.append([w for s in sentences[:6] for w in s])  # longer than one window of 24 tokens
    split = Dataset.from_dict({"tokens": sentences})
    data = ner_data(max_seq_length=24)
    labels = LabelSpace(TAGS)
    teacher_features = encode_ner(split, teacher_tokenizer, labels, data)
    student_features = encode_ner(split, student_tokenizer, labels, data)
    assert len(student_features) > len(split) and teacher_features["input_ids"] != student_features["input_ids"]
    # the teacher's logits say which word they belong to: [example, word, 0]
    row_logits = [
        np.array([[example, word, 0.0] for word in words], dtype=np.float32)
        for words, example in zip(teacher_features["word_index"], teacher_features["example_index"])
    ]
    words = ner_word_logits(teacher_features, row_logits, len(split))
    assert [len(w) for w in words] == [len(s) for s in sentences]
    assert all((w[:, 0] == example).all() and (w[:, 1] == np.arange(len(w))).all() for example, w in enumerate(words))
    soft = ner_soft_labels(student_features, words, len(labels))
    targets: dict[int, list[int]] = {}
    for row, (items, example) in enumerate(zip(soft, student_features["example_index"])):
        assert items.shape == (len(student_features["input_ids"][row]), 2 + len(labels))
        for item, word in zip(items, student_features["word_index"][row]):
            assert item[0] == (word != -1)
            if word != -1:
                assert list(item[2:]) == [example, word, 0.0]
                targets.setdefault(example, []).append(word)
    assert targets == {example: list(range(len(s))) for example, s in enumerate(sentences)}  # every word once


# ---------------------------------------------------------------- students by layer selection


@settings(max_examples=200)
@given(st.integers(1, 48), st.data())
def test_evenly_spaced_layers_are_distinct_in_range_and_end_on_the_last(total, data):
    keep = data.draw(st.integers(1, total))
    kept = evenly_spaced(total, keep)
    assert len(kept) == keep and kept == sorted(set(kept)) and kept[-1] == total - 1
    assert keep == 1 or kept[0] == 0


def test_evenly_spaced_examples():
    assert evenly_spaced(6, 3) == [0, 3, 5] and evenly_spaced(6, 2) == [0, 5] and evenly_spaced(6, 6) == list(range(6))


def test_a_student_by_layer_selection_keeps_those_layers_and_reloads_to_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=6, num_attention_heads=2, intermediate_size=32, num_labels=3
    )
    teacher = BertForTokenClassification(config).eval()
    originals = [layer.state_dict() for layer in teacher.bert.encoder.layer]
    student = keep_layers(BertForTokenClassification.from_pretrained(save(teacher, tmp_path / "t")), 3).eval()
    assert student.config.num_hidden_layers == 3 and len(student.bert.encoder.layer) == 3
    for layer, index in zip(student.bert.encoder.layer, [0, 3, 5]):
        assert all(torch.equal(value, originals[index][name]) for name, value in layer.state_dict().items())
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    ids = torch.tensor([[1, 5, 9, 2]])
    reloaded = BertForTokenClassification.from_pretrained(save(student, tmp_path / "s")).eval()
    assert reloaded.config.num_hidden_layers == 3
    assert torch.equal(reloaded(input_ids=ids).logits, student(input_ids=ids).logits)
    with pytest.raises(ConfigError, match="only 6 layers"):
        keep_layers(teacher, 7)


@pytest.mark.parametrize("model_type", [name for name in ARCHITECTURES if name != "albert"])
def test_layer_selection_keeps_the_teachers_layers_for_every_architecture(model_type, tmp_path):
    """4 -> 2 layers keeps layers 0 and 3 with their weights (ModernBERT: and their attention kinds, global or local);
    the saved student reloads to the same outputs on a padded batch."""
    spec = ARCHITECTURES[model_type]
    size = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 64}
    if model_type == "distilbert":
        size = {"dim": 32, "n_layers": 4, "n_heads": 2, "hidden_dim": 64}
    config = AutoConfig.for_model(
        model_type, vocab_size=100, num_labels=3, pad_token_id=0, **size, **spec.get("config", {})
    )
    torch.manual_seed(0)
    teacher = AutoModelForTokenClassification.from_config(config).eval()
    _, teacher_layers = layer_list(teacher)
    originals = [layer.state_dict() for layer in teacher_layers]
    kinds = getattr(teacher.config, "layer_types", None)
    student = keep_layers(AutoModelForTokenClassification.from_pretrained(save(teacher, tmp_path / "t")), 2).eval()
    _, layers = layer_list(student)
    for layer, index in zip(layers, [0, 3], strict=True):
        assert all(torch.equal(value, originals[index][name]) for name, value in layer.state_dict().items())
    if kinds is not None:
        assert student.config.layer_types == [kinds[0], kinds[3]]
    ids = torch.randint(5, 100, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    reloaded = AutoModelForTokenClassification.from_pretrained(save(student, tmp_path / "s")).eval()
    assert reloaded.config.num_hidden_layers == 2
    with torch.no_grad():
        assert torch.allclose(
            reloaded(input_ids=ids, attention_mask=mask).logits,
            student(input_ids=ids, attention_mask=mask).logits,
            atol=1e-6,
        )


def test_layer_selection_refuses_albert_whose_layers_are_shared_in_one_line():
    config = AutoConfig.for_model(
        "albert", vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64
    )
    with pytest.raises(ConfigError, match=r"shared across depth.*--model"):
        keep_layers(AutoModelForTokenClassification.from_config(config), 2)


def save(model, directory) -> str:
    model.save_pretrained(directory)
    return str(directory)


# ---------------------------------------------------------------- bad input


def test_distill_flags_are_checked_before_anything_loads(tmp_path, write_file):
    with pytest.raises(ConfigError, match="--distill_file is text only a teacher can label"):
        FinetuneTrainingArguments(output_dir=str(tmp_path), distill_file=write_file("raw.txt", "a b\n"))
    with pytest.raises(ConfigError, match=r"--teacher_model .*no such directory"):
        FinetuneTrainingArguments(output_dir=str(tmp_path), teacher_model=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"give a \.txt or \.jsonl file"):
        FinetuneTrainingArguments(
            output_dir=str(tmp_path), teacher_model=str(tmp_path), distill_file=write_file("raw.csv", "a\n")
        )
    with pytest.raises(ConfigError, match="--student_layers must be 1 or more"):
        FinetuneTrainingArguments(output_dir=str(tmp_path), student_layers=0)


def test_a_bad_distill_line_is_one_error_naming_its_line(write_file):
    path = write_file("raw.jsonl", '{"tokens": ["EU", "rejects"]}\n\n{"tokens": "EU rejects"}\n')
    with pytest.raises(DataError, match=r"raw.jsonl:3: `tokens` must be a non-empty list"):
        read_ner_unlabelled(path, None)
    rows = read_ner_unlabelled(write_file("raw.txt", "EU  rejects German\n\nPeter .\n"), None)
    assert rows["tokens"] == [["EU", "rejects", "German"], ["Peter", "."]] and rows["location"][1].endswith(":3")


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def ner_teacher(tiny_model, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("ner-teacher")
    run_ner.main(["--model", tiny_model, "--output_dir", str(out), "--max_train_samples", "48", *FAST, *EVAL])
    return str(out)


EVAL = ["--max_eval_samples", "16", "--max_predict_samples", "16"]


def test_ner_student_of_two_layers_from_the_teacher_with_unlabelled_text_reloads_and_predicts(
    ner_teacher, tmp_path, write_file
):
    raw = write_file(
        "raw.txt", "Peter Blackburn went to Paris .\n\nEU rejects German call to boycott British lamb .\n"
    )
    out = tmp_path / "student"
    argv = ["--teacher_model", ner_teacher, "--student_layers", "1", "--distill_file", raw, "--output_dir", str(out)]
    results = run_ner.main([*argv, "--max_train_samples", "48", *FAST, *EVAL])
    assert results["train_features"] == 48 + 2
    teacher = json.loads((Path(ner_teacher) / "all_results.json").read_text())
    # the teacher scored again in this run, on the same test split: the figures of its own run
    assert results["teacher_predict_accuracy"] == pytest.approx(teacher["predict_accuracy"])
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1
    card = (out / "README.md").read_text()
    assert "## Distillation" in card and "- data the teacher labelled: 48 train rows, 2 distill_file rows" in card
    sentences = len(read_conll(NER_DATA / "test.conll").tokens)
    summary = predict.main(["--model", str(out), "--input", str(NER_DATA / "test.conll"), "--output", str(out / "p")])
    assert summary["task"] == "ner" and summary["records"] == sentences
    exported = [*("--model", str(out), "--quantize", "int8", "--validation_file", str(NER_DATA / "test.conll"))]
    report = export.main([*exported, "--min_agreement", "0", "--min_quantized_agreement", "0"])  # a random student
    assert report["passed"] and report["validation"]["examples"] == sentences and "int8" in report["validation"]
    int8 = [*("--model", str(out), "--input", str(NER_DATA / "test.conll")), "--backend", "onnx-int8"]
    assert predict.main([*int8, "--output", str(out / "q")])["records"] == sentences


def test_a_teacher_of_the_other_task_is_refused(ner_teacher, tiny_model, tmp_path):
    data = ["--train_file", str(SENTIMENT / "train.tsv"), "--output_dir", str(tmp_path)]
    with pytest.raises(ConfigError, match=r"is not a fine-tuned model of run_classification\.py"):
        run_classification.main(["--model", tiny_model, "--teacher_model", ner_teacher, *data])


def test_the_span_head_is_refused_for_distillation(ner_teacher, tmp_path):
    data = ["--train_file", str(ROOT / "data" / "ner_nested" / "train.jsonl"), "--output_dir", str(tmp_path)]
    with pytest.raises(ConfigError, match="distillation trains the token head; drop --head span"):
        run_ner.main(["--teacher_model", ner_teacher, "--head", "span", *data])


def test_ner_student_with_another_tokenizer_trains_on_the_teachers_word_targets(ner_teacher, tmp_path):
    roberta = build("roberta", tmp_path / "roberta", conll_texts(NER_DATA / "train.conll"), vocab_size=300)
    out = tmp_path / "student"
    argv = ["--teacher_model", ner_teacher, "--model", roberta, "--output_dir", str(out), "--gold_weight", "0"]
    results = run_ner.main([*argv, "--max_train_samples", "48", *FAST, *EVAL])
    assert math.isfinite(results["train_loss"]) and results["train_loss"] > 0
    assert "distill_retention" in results or results["teacher_predict_f1"] == 0


def test_classification_student_from_the_teacher_with_unlabelled_jsonl(tiny_model, tmp_path, write_file):
    teacher = tmp_path / "teacher"
    data = ["--train_file", str(SENTIMENT / "train.tsv"), "--validation_file", str(SENTIMENT / "validation.tsv")]
    data += ["--test_file", str(SENTIMENT / "test.tsv")]
    run_classification.main(["--model", tiny_model, "--output_dir", str(teacher), *data, *FAST])
    raw = write_file("raw.jsonl", '{"text": "a calm and lovely stay ."}\n{"text": "it broke on day one ."}\n')
    out = tmp_path / "student"
    argv = ["--teacher_model", str(teacher), "--student_layers", "1", "--distill_file", raw, "--output_dir", str(out)]
    results = run_classification.main([*argv, *data, *FAST])
    train_rows = len((SENTIMENT / "train.tsv").read_text().splitlines()) - 1
    assert results["train_features"] == train_rows + 2
    assert results["teacher_predict_accuracy"] == pytest.approx(
        json.loads((teacher / "all_results.json").read_text())["predict_accuracy"]
    )
    assert results["distill_retention"] == pytest.approx(
        results["predict_accuracy"] / results["teacher_predict_accuracy"]
    )
    assert "- retention: " in (out / "README.md").read_text()
    summary = predict.main(["--model", str(out), "--input", str(SENTIMENT / "test.tsv"), "--output", str(out / "p")])
    assert summary["task"] == "classification"


def test_multi_label_data_is_refused_for_distillation(tiny_model, tmp_path, write_file):
    train = write_file("train.jsonl", '{"text": "a", "label": ["x", "y"]}\n{"text": "b", "label": ["x"]}\n')
    with pytest.raises(ConfigError, match="single-label classification"):
        run_classification.main(
            [
                "--model",
                tiny_model,
                "--teacher_model",
                tiny_model,
                "--train_file",
                train,
                "--output_dir",
                str(tmp_path),
            ]
        )


def test_soft_labels_are_cached_by_teacher_and_data_and_made_anew_when_either_changes(tiny_model, tmp_path):
    from datasets import Dataset, DatasetDict

    from utils.tasks.ner.task import NER_TASK
    from utils.training.teacher import Distiller

    labels = LabelSpace(TAGS)
    teacher = AutoModelForTokenClassification.from_pretrained(
        tiny_model, num_labels=3, id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)}
    )
    teacher.config.finetune_task = "ner"
    save(teacher, tmp_path / "teacher")
    load_tokenizer(ModelArguments(model_name_or_path=tiny_model)).save_pretrained(tmp_path / "teacher")
    sentences = {"tokens": [["Peter", "went", "home"], ["Anna"]], "ner_tags": [["B-PER", "O", "O"], ["B-PER"]]}
    data = LoadedData(raw=DatasetDict(train=Dataset.from_dict(sentences)), args=NerDataArguments())
    args = FinetuneTrainingArguments(
        output_dir=str(tmp_path / "out"), report_to=[], teacher_model=str(tmp_path / "teacher")
    )
    model_args = ModelArguments(model_name_or_path=tiny_model)
    distiller = Distiller.plan(NER_TASK, model_args, args, data, labels)
    tokenizer = load_tokenizer(model_args, word_split=True)
    made = []
    original = distiller.soft_rows
    distiller.soft_rows = lambda *a: made.append(1) or original(*a)
    first = distiller.train_features(data, tokenizer, labels)
    again = distiller.train_features(data, tokenizer, labels)
    assert len(made) == 1 and first["labels"] == again["labels"] and len(first) == 2
    assert [row[:, 0].tolist() for row in map(np.asarray, first["labels"])] == [[0, 1, 1, 1, 0], [0, 1, 0]]
    with torch.no_grad():
        teacher.classifier.bias += 1.0  # another teacher: the same data is labelled anew
    save(teacher, tmp_path / "teacher")
    distiller.train_features(data, tokenizer, labels)
    assert len(made) == 2


# ---------------------------------------------------------------- the static student


def test_static_token_vectors_are_the_encoders_mean_pooled_tokens_projected_on_principal_components(tiny_model):
    from transformers import AutoModel

    from utils.tasks.classification.static_student import token_vectors

    encoder = AutoModel.from_pretrained(tiny_model).eval()
    tokenizer = load_tokenizer(ModelArguments(model_name_or_path=tiny_model))
    vectors = token_vectors(encoder, tokenizer, dims=8, batch_size=4096)
    assert vectors.shape == (len(tokenizer), 8)
    with torch.no_grad():  # token 2198 alone between [CLS] and [SEP], mean-pooled
        one = encoder(input_ids=torch.tensor([[101, 2198, 102]])).last_hidden_state.mean(1)[0]
        full = torch.cat(
            [
                encoder(
                    input_ids=torch.tensor([[101, t, 102] for t in range(s, min(s + 4096, len(tokenizer)))])
                ).last_hidden_state.mean(1)
                for s in range(0, len(tokenizer), 4096)
            ]
        )
    centred = full - full.mean(0)
    components = torch.linalg.svd(centred, full_matrices=False)[2][:8]
    assert torch.allclose(full[2198], one, atol=1e-5)
    assert torch.allclose(vectors, centred @ components.T, atol=1e-4)
    assert vectors.var(0)[0] >= vectors.var(0)[-1]  # the first component carries the most variance


@settings(max_examples=25)
@given(st.lists(st.lists(st.integers(0, 99), min_size=1, max_size=12), min_size=1, max_size=8))
def test_static_student_gives_unpadded_rows_the_padded_forwards_logits_bit_for_bit(rows):
    """`forward_rows` (what predict.py and serve.py run) and the padded `forward` (training, evaluation, export)
    are one mean: on the same rows, the same logits to the last bit. `TorchForward` hands the model its rows
    unpadded, in batches (the head's matrix product may round differently for another batch size)."""
    from utils.core.ordering import pad_rows
    from utils.serving.torch_backend import TorchForward
    from utils.tasks.classification.static_student import StaticEmbeddingForSequenceClassification

    torch.manual_seed(0)
    model = StaticEmbeddingForSequenceClassification(BertConfig(vocab_size=100, static_dims=8, num_labels=3)).eval()
    padded = torch.from_numpy(pad_rows(rows, 0))
    mask = torch.from_numpy(pad_rows([[1] * len(row) for row in rows], 0))
    with torch.no_grad():
        expected = model(input_ids=padded, attention_mask=mask).logits
        assert torch.equal(model.forward_rows(rows).logits, expected)
        means = torch.stack([model.embeddings.weight[row].mean(0) for row in rows])
        assert torch.allclose(expected, model.head(means), atol=1e-6)
    forward = TorchForward(model, torch.device("cpu"), batch_size=3)
    got = torch.zeros_like(expected)
    for batch, outputs in forward({"input_ids": rows}):  # padded without a mask, the padding would count
        got[batch] = outputs["logits"]
    assert torch.allclose(got, expected, atol=1e-6)


def test_static_student_trains_on_the_teacher_and_is_served_over_http_as_predict_py_predicts(
    tiny_model, tmp_path, write_file
):
    import httpx

    from tests.test_serve import served_in_thread
    from utils.serving.http import Limits, create_app
    from utils.serving.predictor import Predictor

    teacher, out = tmp_path / "teacher", tmp_path / "static"
    data = ["--train_file", str(SENTIMENT / "train.tsv"), "--validation_file", str(SENTIMENT / "validation.tsv")]
    data += ["--test_file", str(SENTIMENT / "test.tsv")]
    run_classification.main(["--model", tiny_model, "--output_dir", str(teacher), *data, *FAST])
    argv = ["--model", str(teacher), "--teacher_model", str(teacher), "--static_student_dims", "16"]
    results = run_classification.main([*argv, "--output_dir", str(out), "--learning_rate", "1e-2", *data, *FAST])
    config = json.loads((out / "config.json").read_text())
    assert config["static_dims"] == 16 and config["architectures"] == ["StaticEmbeddingForSequenceClassification"]
    assert "teacher_predict_accuracy" in results and "## Distillation" in (out / "README.md").read_text()
    texts = ["a warm and funny film", "the printer jams on every other page ."]
    inputs = write_file("texts.txt", "\n".join(texts) + "\n")
    predict.main(["--model", str(out), "--input", inputs, "--output", str(out / "p.jsonl")])
    expected = [json.loads(line) for line in (out / "p.jsonl").read_text().splitlines()]
    predictor = Predictor.from_pretrained(str(out), device="cpu", backend="torch")
    assert type(predictor.model).__name__ == "StaticEmbeddingForSequenceClassification"
    with served_in_thread(create_app(predictor, str(out), Limits(max_texts=8))) as service:
        answer = httpx.post(f"{service.url}/predict", json={"texts": texts}, timeout=30)
    assert answer.status_code == 200
    served = answer.json()["results"]
    assert [r["label"] for r in served] == [r["label"] for r in expected]
    for got, want in zip(served, expected, strict=True):
        assert got["probabilities"] == pytest.approx(want["probabilities"])
    # exported: ONNX has no EmbeddingBag, so the graph gathers and sums; the same probabilities up to rounding
    report = export.main(["--model", str(out), "--quantize", "int8"])
    assert report["passed"] and report["validation"]["fp32"]["agreement"] == 1.0
    fp32 = Predictor.from_pretrained(str(out), device="cpu", backend="onnx-fp32").predict(texts)
    for got, want in zip(fp32, expected, strict=True):
        assert got["label"] == want["label"] and got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)
