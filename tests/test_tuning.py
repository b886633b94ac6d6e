"""Controlled fine-tuning: LoRA (learns; merged = adapter), frozen weights unchanged, optimizer and dropout
settings, the hyper-parameter search, continued fine-tuning that grows the head."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification, pipeline

import run_classification
import run_ner
from tests.conftest import ROOT
from utils.core.arguments import ModelArguments
from utils.core.conll import read_conll
from utils.core.errors import ConfigError
from utils.core.labels import LabelSpace, build_label_space
from utils.core.modeling import dropout_overrides, load_model
from utils.core.modeling import model_path as resolve_model_path
from utils.training.hp_search import parse_space, trial_argv

SENTIMENT = ROOT / "data" / "classification" / "sentiment"
FAST = ["--logging_steps", "5", "--report_to", "none", "--save_strategy", "no"]


def ner_args(model, output_dir, *extra):
    """The shipped NER sample (no data flags: the sample recipe), a few examples, one epoch."""
    return [
        "--model",
        model,
        "--output_dir",
        str(output_dir),
        "--max_train_samples",
        "48",
        "--max_eval_samples",
        "16",
        "--max_predict_samples",
        "8",
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "16",
        "--eval_before_training",
        "false",
        *FAST,
        *extra,
    ]


def weights(directory) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def test_lora_learns_and_the_merged_model_predicts_like_the_adapter(tmp_path):
    out = tmp_path / "lora"
    results = run_classification.main(
        [
            "--train_file",
            str(SENTIMENT / "train.tsv"),
            "--validation_file",
            str(SENTIMENT / "validation.tsv"),
            "--output_dir",
            str(out),
            "--use_peft",
            "--num_train_epochs",
            "2",
            "--per_device_train_batch_size",
            "16",
            "--learning_rate",
            "2e-3",
            "--eval_before_training",
            *FAST,
        ]
    )
    # learns: the fine-tuned adapter beats the untuned model on the validation split
    assert results["eval_f1_macro"] > results["before_eval_f1_macro"] + 0.1
    assert results["eval_accuracy"] >= 0.75
    # a small share of the weights trained, and the run says how many: exactly those the adapter file holds
    adapter_weights = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert results["trainable_parameters"] == sum(tensor.numel() for tensor in adapter_weights.values())
    assert results["trainable_parameters"] < 0.05 * results["total_parameters"]
    assert results["trainable_percent"] == pytest.approx(
        100 * results["trainable_parameters"] / results["total_parameters"], abs=0.01
    )
    assert (
        json.loads((out / "all_results.json").read_text())["trainable_parameters"] == results["trainable_parameters"]
    )
    # the adapter is saved on its own; the root holds a merged model that loads without peft
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert not (out / "adapter_config.json").exists()
    texts = ["a wonderful, moving film", "dull and far too long", "the cast is great but the plot is a mess"]
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert type(merged).__name__ == "BertForSequenceClassification"
    from peft import PeftModel

    base = AutoModelForSequenceClassification.from_pretrained(resolve_model_path(ModelArguments()), num_labels=2)
    adapter = PeftModel.from_pretrained(base, out / "adapter").eval()
    from transformers import AutoTokenizer

    batch = AutoTokenizer.from_pretrained(out)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = merged(**batch).logits
        torch.testing.assert_close(logits, adapter(**batch).logits, atol=1e-4, rtol=1e-4)
    # the pipeline on the saved directory gives the merged model's own top class and probability
    rows = pipeline("text-classification", model=str(out))(texts)
    probabilities = logits.softmax(-1)
    assert [row["label"] for row in rows] == [merged.config.id2label[i] for i in logits.argmax(-1).tolist()]
    assert [row["score"] for row in rows] == pytest.approx(probabilities.max(-1).values.tolist(), abs=1e-4)


def test_frozen_embeddings_and_layers_stay_bitwise_unchanged(tiny_model, tmp_path):
    out = tmp_path / "frozen"
    results = run_ner.main(
        ner_args(tiny_model, out, "--freeze_embeddings", "--freeze_layers", "1", "--learning_rate", "1e-2")
    )
    before, after = load_file(f"{tiny_model}/model.safetensors"), weights(out)
    frozen = [name for name in before if name.startswith(("embeddings.", "encoder.layer.0."))]
    trained = [name for name in before if name.startswith("encoder.layer.1.")]
    assert (len(frozen), len(trained)) == (len([n for n in before if n.startswith("embeddings.")]) + 16, 16)
    for name in frozen:
        assert torch.equal(before[name], after[f"bert.{name}"]), name
    assert [name for name in trained if torch.equal(before[name], after[f"bert.{name}"])] == []  # all of it moved
    frozen_count = sum(before[name].numel() for name in frozen if name != "embeddings.position_ids")
    assert results["total_parameters"] - results["trainable_parameters"] == frozen_count


def test_train_head_only_is_a_linear_probe(tiny_model, tmp_path):
    out = tmp_path / "probe"
    results = run_ner.main(ner_args(tiny_model, out, "--train_head_only"))
    before, after = load_file(f"{tiny_model}/model.safetensors"), weights(out)
    encoder_weights = [name for name in before if f"bert.{name}" in after]  # (no pooler for token classification)
    assert encoder_weights == [name for name in before if not name.startswith("pooler.")]
    assert set(after) == {f"bert.{name}" for name in encoder_weights} | {"classifier.weight", "classifier.bias"}
    assert [name for name in encoder_weights if not torch.equal(before[name], after[f"bert.{name}"])] == []
    assert results["trainable_parameters"] == after["classifier.weight"].numel() + after["classifier.bias"].numel()
    assert not torch.equal(after["classifier.weight"], torch.zeros_like(after["classifier.weight"]))
    assert "- Trained: the task head only (a linear probe" in (out / "README.md").read_text()


def test_sgd_with_momentum_warmup_and_dropout_overrides(tiny_model, tmp_path):
    out = tmp_path / "sgd"
    results = run_ner.main(
        ner_args(
            tiny_model,
            out,
            "--optim",
            "sgd",
            "--optim_args",
            "momentum=0.9",
            "--learning_rate",
            "0.05",
            "--warmup_steps",
            "1",
            "--weight_decay",
            "0.01",
            "--hidden_dropout_prob",
            "0.2",
            "--attention_probs_dropout_prob",
            "0.15",
            "--classifier_dropout",
            "0.3",
            "--label_smoothing_factor",
            "0.1",
            "--logging_steps",
            "1",
        )
    )
    config = json.loads((out / "config.json").read_text())
    assert (config["hidden_dropout_prob"], config["attention_probs_dropout_prob"], config["classifier_dropout"]) == (
        0.2,
        0.15,
        0.3,
    )
    args = torch.load(out / "training_args.bin", weights_only=False)
    assert args.optim == "sgd" and args.optim_args == "momentum=0.9"
    assert (args.warmup_steps, args.weight_decay, args.label_smoothing_factor) == (1, 0.01, 0.1)
    # 48 examples in batches of 16: three steps, each logged with the rate it used: 0 for the one warm-up step,
    # then 0.05 decaying linearly to 0 over the remaining two
    logged = [
        entry for entry in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in entry
    ]
    assert [entry["step"] for entry in logged] == [1, 2, 3]
    assert [entry["learning_rate"] for entry in logged] == pytest.approx([0.0, 0.05, 0.025])
    assert results["train_loss"] == pytest.approx(sum(entry["loss"] for entry in logged) / 3, rel=1e-3)


def test_dropout_override_the_architecture_lacks_is_named():
    config = AutoConfig.for_model("distilbert")
    with pytest.raises(ConfigError, match=r"distilbert config has no such setting.*'attention_dropout'"):
        dropout_overrides(ModelArguments(hidden_dropout_prob=0.2), config)


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"use_peft": True, "train_head_only": True}, "Choose one of --use_peft and --train_head_only"),
        ({"use_peft": True, "freeze_layers": 2}, "Choose one of"),
        ({"lora_r": 0}, "--lora_r and --lora_alpha must be positive"),
        ({"hidden_dropout_prob": 1.5}, r"--hidden_dropout_prob must be in \[0, 1\)"),
    ],
)
def test_conflicting_or_invalid_model_flags(flags, message):
    with pytest.raises(ConfigError, match=message):
        ModelArguments(**flags)


def test_bad_freezing_and_lora_targets_are_explained(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="--freeze_layers 3: the model has only 2 layers"):
        run_ner.main(ner_args(tiny_model, tmp_path / "a", "--freeze_layers", "3"))
    with pytest.raises(ConfigError, match=r"--lora_target_modules \['qkv'\].*'query'"):
        run_ner.main(ner_args(tiny_model, tmp_path / "b", "--use_peft", "--lora_target_modules", "qkv"))


def test_lora_without_merge_keeps_the_adapter_at_the_root_too(tiny_model, tmp_path):
    out = tmp_path / "adapter-only"
    results = run_ner.main(ner_args(tiny_model, out, "--use_peft", "--no_merge_adapter", "--lora_r", "4"))
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and "classifier" in config["modules_to_save"]
    card = (out / "README.md").read_text()
    assert "- Trained: LoRA (r=4, alpha=16" in card and "- Trainable parameters: 3,881 of" in card
    # LoRA rank 4 on q/k/v/dense of 2 layers (width 32, feed-forward 64) plus the 32 x 9 head
    lora = 2 * (4 * (4 * (32 + 32)) + 4 * (32 + 64) + 4 * (64 + 32))
    assert results["trainable_parameters"] == lora + 9 * 32 + 9


# ---------------------------------------------------------------- hyper-parameter search


def test_search_space_is_checked():
    known = {"learning_rate", "num_train_epochs", "output_dir"}
    dims = parse_space(
        {"learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}, "num_train_epochs": [1, 2]}, known, "space.yaml"
    )
    assert (dims[0].log, dims[0].integer, dims[1].choices) == (True, False, (1, 2))
    for spec, message in [
        ({"learnin_rate": [1]}, "'learnin_rate' is not an argument"),
        ({"output_dir": ["x"]}, "set by the search itself"),
        ({"learning_rate": {"low": 1e-3, "high": 1e-5}}, "low <= high"),
        ({"learning_rate": {"low": 0, "high": 1, "log": True}}, "log range needs low > 0"),
        ({"learning_rate": {"min": 1}}, "list of choices or a mapping"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_space(spec, known, "space.yaml")


def test_trial_argv_overrides_the_command_and_never_searches_again():
    argv = trial_argv(
        ["run.yaml", "--hp_search_trials", "4", "--hp_search_space", "s.yaml", "--output_dir", "o"],
        {"learning_rate": 3e-5, "per_device_train_batch_size": 16},
        "o/hp_search/trial-0",
    )
    assert "--hp_search_space" not in argv and "s.yaml" not in argv
    tail = argv[argv.index("o") + 1 :]
    assert tail[:4] == ["--hp_search_trials", "0", "--output_dir", "o/hp_search/trial-0"]
    assert argv[-4:] == ["--learning_rate", "3e-05", "--per_device_train_batch_size", "16"]
    assert argv[argv.index("--do_predict") + 1] == "false"


def test_two_trial_search_logs_both_and_trains_the_best(tiny_model, tmp_path, write_file):
    space = write_file("space.yaml", "learning_rate: [0.003, 0.00001]\nweight_decay: {low: 0.0, high: 0.1}\n")
    out = tmp_path / "search"
    results = run_ner.main(
        ner_args(tiny_model, out, "--hp_search_trials", "2", "--hp_search_space", space, "--save_strategy", "epoch")
    )
    trials = [json.loads(line) for line in (out / "hp_search.jsonl").read_text().splitlines()]
    assert [t["trial"] for t in trials] == [0, 1]
    assert all(t["metric"] == "eval_f1" and set(t["params"]) == {"learning_rate", "weight_decay"} for t in trials)
    best = json.loads((out / "hp_search_best.json").read_text())
    assert best["value"] == max(t["value"] for t in trials) and best["trials"] == 2
    assert best["params"] == next(t["params"] for t in trials if t["trial"] == best["trial"])
    final = torch.load(out / "training_args.bin", weights_only=False)
    assert final.learning_rate == best["params"]["learning_rate"]
    assert final.weight_decay == best["params"]["weight_decay"]
    assert results["predict_samples"] == 8
    written = read_conll(out / "predictions.conll", tag_column=1)
    gold = read_conll(ROOT / "data" / "ner" / "test.conll")
    assert written.tokens == gold.tokens[:8] and written.tags == gold.tags[:8]  # --max_predict_samples 8
    for trial in trials:  # trials keep their metrics, not their weights
        assert (tmp_path / trial["output_dir"]).joinpath("eval_results.json").is_file()
        assert not list((tmp_path / trial["output_dir"]).glob("**/*.safetensors"))


# ---------------------------------------------------------------- continued fine-tuning


def test_label_space_grows_with_old_ids_first():
    grown = build_label_space({"O", "B-PER", "B-PROD", "I-PROD"}, None, ["O", "B-PER", "I-PER"])
    assert grown.names == ("O", "B-PER", "I-PER", "B-PROD", "I-PROD")


def test_continued_fine_tuning_grows_the_head_and_keeps_old_labels(tiny_model, tmp_path, write_file):
    first = tmp_path / "first"
    run_ner.main(ner_args(tiny_model, first))
    old = json.loads((first / "config.json").read_text())["id2label"]
    # the grown head keeps every old row exactly
    model_args = ModelArguments(model_name_or_path=str(first))
    names = tuple(old[str(i)] for i in range(len(old))) + ("B-PROD", "I-PROD")
    grown = load_model(model_args, AutoModelForTokenClassification, LabelSpace(names))
    before = weights(first)
    assert grown.classifier.weight.shape[0] == len(old) + 2
    assert torch.equal(grown.classifier.weight[: len(old)], before["classifier.weight"])
    assert torch.equal(grown.classifier.bias[: len(old)], before["classifier.bias"])
    # a run on new data with a new entity type continues from it
    new_data = (
        "\n\n".join(
            [
                "Apple B-ORG\nreleased O\nthe O\niPhone B-PROD\nPro I-PROD\n. O",
                "Maria B-PER\nbought O\na O\nWalkman B-PROD\nin O\nParis B-LOC\n. O",
            ]
            * 8
        )
        + "\n"
    )
    train = write_file("new/train.conll", new_data)
    second = tmp_path / "second"
    run_ner.main(ner_args(str(first), second, "--train_file", train, "--validation_file", train, "--test_file", train))
    config = json.loads((second / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(old))] == [old[str(i)] for i in range(len(old))]
    assert [config["id2label"][str(i)] for i in range(len(old), len(old) + 2)] == ["B-PROD", "I-PROD"]
    # --reinit_head: a fresh head, labels as the new data has them (sorted, O first)
    third = tmp_path / "third"
    run_ner.main(
        ner_args(
            str(first), third, "--train_file", train, "--validation_file", train, "--test_file", train, "--reinit_head"
        )
    )
    config = json.loads((third / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(config["id2label"]))] == [
        "O",
        "B-LOC",
        "B-ORG",
        "B-PER",
        "B-PROD",
        "I-PROD",
    ]


def test_reordered_labels_without_reinit_are_refused(tiny_model, tmp_path):
    first = tmp_path / "first"
    run_ner.main(ner_args(tiny_model, first))
    old = json.loads((first / "config.json").read_text())["id2label"]
    reordered = ",".join(reversed([old[str(i)] for i in range(len(old))]))
    with pytest.raises(ConfigError, match=r"in another order.*--reinit_head"):
        run_ner.main(ner_args(str(first), tmp_path / "second", "--label_list", reordered))
