"""predict.py and utils/serving/predictor.py: word splitting, windows, agreement with the transformers pipeline,
classification outputs, input formats, stdin/stdout and the error messages.
One NER model is fine-tuned per module (~1 minute)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification, pipeline

import predict
import run_classification
import run_ner
from benchmarks.predict_throughput import comparable
from tests.conftest import ROOT
from utils.core.conll import read_conll
from utils.core.errors import ConfigError, DataError
from utils.core.examples import Example
from utils.core.losses import MULTI, REGRESSION, SINGLE
from utils.core.ordering import longest_first, token_batches
from utils.serving.inputs import input_format, predict_examples, read_examples
from utils.serving.predictor import Predictor
from utils.serving.torch_backend import TorchForward, packed_forward
from utils.tasks.classification.outputs import classification_result, classification_results
from utils.tasks.classification.task import CLASSIFICATION_TASK
from utils.tasks.ner.arguments import DEFAULT_STRIDE
from utils.tasks.ner.encoding import NerWindows, encode_batch
from utils.tasks.ner.outputs import RUN_ENTITY_KEYS, entity_record
from utils.tasks.ner.task import NER_TASK
from utils.tasks.ner.words import words_with_offsets

NER_DATA = ROOT / "data" / "ner"
SENTIMENT = ROOT / "data" / "classification" / "sentiment"
SHORT = "Tariq Hussain ( Switzerland ) beat Gustavo Ibarra ( Belgium ) 6-0 6-2 ."


@pytest.fixture(scope="module")
def ner_model(tmp_path_factory) -> str:
    """The embedded MiniLM fine-tuned for 2 epochs on the shipped NER sample (test F1 about 0.3: enough entities)."""
    out = tmp_path_factory.mktemp("ner-model")
    run_ner.main(
        [
            "--train_file",
            str(NER_DATA / "train.conll"),
            "--num_train_epochs",
            "2",
            "--per_device_train_batch_size",
            "8",
            "--learning_rate",
            "1e-4",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
            "--output_dir",
            str(out),
        ]
    )
    return str(out)


@pytest.fixture(scope="module")
def ner(ner_model) -> Predictor:
    return Predictor.from_pretrained(ner_model, device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def classifier_model(tiny_model, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("sentiment-model")
    run_classification.main(
        [
            "--model",
            tiny_model,
            "--train_file",
            str(SENTIMENT / "train.tsv"),
            "--num_train_epochs",
            "1",
            "--per_device_train_batch_size",
            "16",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
            "--output_dir",
            str(out),
        ]
    )
    return str(out)


def untrained_classifier(tiny_model: str, directory, labels: list[str], problem_type: str) -> str:
    """A random tiny classifier saved as a fine-tuning run would save it: output shapes need no training."""
    config = AutoConfig.from_pretrained(
        tiny_model,
        num_labels=len(labels),
        problem_type=problem_type,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    BertForSequenceClassification(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(directory)
    return str(directory)


def spans(result: dict) -> set[tuple]:
    return {(e["label"], e["start"], e["end"]) for e in result["entities"]}


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8").read().splitlines()]


# ---------------------------------------------------------------- word splitting (pure)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Angela Merkel's party", ["Angela", "Merkel", "'s", "party"]),
        ("in the U.S. on 1996-08-22.", ["in", "the", "U.S.", "on", "1996-08-22", "."]),
        ("I don't know O'Neill, Mr. J. Smith.", ["I", "do", "n't", "know", "O'Neill", ",", "Mr.", "J.", "Smith", "."]),
        ("AT&T paid $3,000.50 -- or 1/2 ...", ["AT&T", "paid", "$", "3,000.50", "--", "or", "1/2", "..."]),
        ('(Kirin-Vale) "quoted"', ["(", "Kirin-Vale", ")", '"', "quoted", '"']),
        ("  ", []),
    ],
)
def test_words_with_offsets_follows_conll_tokenisation(text, words):
    assert [w.text for w in words_with_offsets(text)] == words


def test_words_with_offsets_gives_back_the_sample_sentences():
    sentences = read_conll(NER_DATA / "test.conll").tokens
    same = sum([w.text for w in words_with_offsets(" ".join(tokens))] == tokens for tokens in sentences)
    assert same / len(sentences) > 0.9


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=60))
def test_words_with_offsets_keeps_offsets_and_every_visible_character(text):
    words = words_with_offsets(text)
    previous_end = 0
    for word in words:
        assert text[word.start : word.end] == word.text and word.text
        assert word.start >= previous_end and not any(c.isspace() for c in word.text)
        previous_end = word.end
    assert "".join(w.text for w in words) == "".join(c for c in text if not c.isspace())


# ---------------------------------------------------------------- what the tasks and the forward pass share (pure)


@pytest.fixture(scope="module")
def tokenizer():
    from utils.core.modeling import embedded_model_path

    return AutoTokenizer.from_pretrained(embedded_model_path())


def test_entity_records_keep_each_outputs_key_order():
    served = entity_record("PER", "Angela Merkel", 0, 13, [0.5, 0.70006])
    assert list(served) == ["label", "text", "start", "end", "score"] and served["score"] == 0.6
    written = entity_record("LOC", "New York", 3, 5, keys=RUN_ENTITY_KEYS)
    assert json.dumps(written) == '{"label": "LOC", "start": 3, "end": 5, "text": "New York"}'


def test_classification_result_decodes_each_problem_type():
    logits = torch.tensor([2.0, 0.0, -1.0], dtype=torch.float64).numpy()
    single = classification_result(logits, ["a", "b", "c"], SINGLE, 0.5)
    assert single["label"] == "a" and sum(single["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    multi = classification_result(logits, ["a", "b", "c"], MULTI, 0.5)
    assert multi["labels"] == ["a"] and multi["probabilities"] == {"a": 0.880797, "b": 0.5, "c": 0.268941}
    assert classification_result(logits[:1], ["score"], REGRESSION, 0.5) == {"value": 2.0}


@settings(max_examples=60)
@given(
    st.integers(1, 6).flatmap(
        lambda labels: st.lists(
            st.lists(st.floats(-30, 30, allow_nan=False), min_size=labels, max_size=labels), min_size=1, max_size=9
        )
    ),
    st.sampled_from([SINGLE, MULTI, REGRESSION]),
)
def test_classification_results_decode_all_rows_as_each_row_is_decoded_alone(rows, problem_type):
    """The rows' arithmetic is done at once; every result equals the one-row decoding written out here."""
    logits = np.asarray(rows, dtype=np.float64)
    names = [f"l{i}" for i in range(logits.shape[1])]
    threshold = tuple(np.linspace(0.2, 0.8, len(names)))
    expected = []
    for row in logits:
        if problem_type == REGRESSION:
            expected.append({"value": float(row[0])})
        elif problem_type == MULTI:
            sigmoid = 1 / (1 + np.exp(-row))
            expected.append(
                {
                    "labels": [n for n, p, cut in zip(names, sigmoid, threshold) if p > cut],
                    "probabilities": {n: round(float(p), 6) for n, p in zip(names, sigmoid)},
                }
            )
        else:
            exp = np.exp(row - row.max())
            exp /= exp.sum()
            probabilities = {n: round(float(p), 6) for n, p in zip(names, exp)}
            expected.append({"label": names[int(row.argmax())], "probabilities": probabilities})
    assert classification_results(logits, names, problem_type, threshold) == expected


def test_ner_windows_are_checked_once_for_training_and_prediction(tokenizer):
    assert NerWindows.build(tokenizer, 512).stride == DEFAULT_STRIDE
    small = NerWindows.build(tokenizer, 16)
    assert (small.max_tokens, small.stride) == (14, 7)  # the default is at most half a window
    with pytest.raises(ConfigError, match=r"--stride 40 must be smaller than max_seq_length minus special tokens"):
        NerWindows.build(tokenizer, 32, 40)
    with pytest.raises(ConfigError, match="exceeds the model's limit of 512"):
        NerWindows.build(tokenizer, 4096)
    features = encode_batch(
        {"tokens": [SHORT.split()]}, [0], tokenizer=tokenizer, windows=NerWindows.build(tokenizer, 8, 2)
    )  # unlabelled: no label ids needed
    assert "labels" not in features and len(features["input_ids"]) > 1
    assert all(row[0] == tokenizer.cls_token_id and row[-1] == tokenizer.sep_token_id for row in features["input_ids"])


def test_forward_batches_rows_of_similar_length_and_pads_them():
    class Echo(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return {"logits": (input_ids * 10 + attention_mask).unsqueeze(-1), "loss": None}

    forward = TorchForward(Echo(), torch.device("cpu"), batch_size=2, pad_id=9)
    rows = {"input_ids": [[1], [2, 2, 2], [3, 3]], "attention_mask": [[1], [1, 1, 1], [1, 1]], "word_index": [[0]]}
    batches = [(batch, outputs["logits"].squeeze(-1).tolist()) for batch, outputs in forward(rows)]
    assert batches == [([1, 2], [[21, 21, 21], [31, 31, 90]]), ([0], [[11]])]
    # every tensor output by name (the model's own names), float32; what is not a tensor is not an output
    assert all(
        list(outputs) == ["logits"] and outputs["logits"].dtype == torch.float32 for _, outputs in forward(rows)
    )


@settings(max_examples=200, deadline=None, derandomize=True)
@given(lengths=st.lists(st.integers(1, 40), max_size=60), max_tokens=st.integers(1, 120))
def test_token_batches_hold_every_index_once_longest_first_within_the_budget(lengths, max_tokens):
    batches = token_batches(lengths, max_tokens)
    flat = [index for batch in batches for index in batch]
    assert flat == longest_first(lengths)
    assert all(len(batch) == 1 or sum(lengths[i] for i in batch) <= max_tokens for batch in batches)
    # greedy: the next batch's first item would not have fitted in the batch before it
    assert all(
        sum(lengths[i] for i in batches[k]) + lengths[batches[k + 1][0]] > max_tokens for k in range(len(batches) - 1)
    )


def test_packed_forward_gives_each_row_its_unpacked_logits(tiny_model):
    from transformers import AutoModelForTokenClassification

    config = AutoConfig.from_pretrained(tiny_model, num_labels=3)
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(config).eval()
    forward = packed_forward(
        model, NER_TASK.training.token_outputs, torch.device("cpu"), batch_size=2, max_batch_tokens=32, pad_id=0
    )
    assert forward.packer is not None and forward.max_tokens == 32
    assert (
        packed_forward(model, CLASSIFICATION_TASK.training.token_outputs, torch.device("cpu"), 2, 16, 0).packer is None
    )
    generator = torch.Generator().manual_seed(1)
    lengths = [5, 16, 3, 9, 9, 1, 12, 7]
    rows = {
        "input_ids": [torch.randint(5, 100, (n,), generator=generator).tolist() for n in lengths],
        "attention_mask": [[1] * n for n in lengths],
        "token_type_ids": [[0] * n for n in lengths],
    }
    plain = TorchForward(model, torch.device("cpu"), batch_size=1)
    alone = {batch[0]: outputs["logits"][0] for batch, outputs in plain(rows)}
    seen = []
    for batch, outputs in forward(rows):
        logits = outputs["logits"]
        assert sum(lengths[i] for i in batch) <= 32 or len(batch) == 1
        assert logits.shape[:2] == (len(batch), max(lengths[i] for i in batch))
        for row, index in enumerate(batch):
            torch.testing.assert_close(logits[row, : lengths[index]], alone[index], atol=1e-5, rtol=1e-4)
            assert not logits[row, lengths[index] :].any()  # zeros after the row's end
            seen.append(index)
    assert sorted(seen) == list(range(len(lengths))) and any(len(batch) > 2 for batch, _ in forward(rows))


# ---------------------------------------------------------------- NER


def test_loading_freezes_what_is_alive_so_full_collections_skip_it(classifier_model):
    import gc

    before_loading = [object()]  # tracked by the collector, alive through the load
    assert any(tracked is before_loading for tracked in gc.get_objects())
    Predictor.from_pretrained(classifier_model, device="cpu")
    assert gc.get_freeze_count() > 0
    assert not any(tracked is before_loading for tracked in gc.get_objects())  # in the permanent generation


def test_the_predictor_delegates_to_its_task(ner, classifier_model):
    assert ner.task is NER_TASK and ner.prediction.stride == DEFAULT_STRIDE and not ner.whole_documents
    assert ner.settings()["stride"] == DEFAULT_STRIDE and not hasattr(ner, "stride")  # no forwarding to the task
    with pytest.raises(ConfigError, match=r"input 0 is 'pair', but this model \(ner\) takes texts and pre-split"):
        ner.predict(["Kyoto ."], text_pairs=["Japan ."])
    classifier = Predictor.from_pretrained(classifier_model, device="cpu", stride=3)  # NER's option: not this task's
    assert classifier.task is CLASSIFICATION_TASK and classifier.prediction.problem_type == SINGLE
    assert classifier.settings()["threshold"] == 0.5 and "stride" not in classifier.settings()
    with pytest.raises(ConfigError, match=r"input 0 is 'tokens', but this model \(classification\) takes texts"):
        classifier.predict([["Kyoto"]])


def test_entities_equal_the_pipelines_where_it_groups_words_like_us(ner, ner_model):
    texts = [" ".join(tokens) for tokens in read_conll(NER_DATA / "test.conll").tokens[:40]]
    tagger = pipeline("token-classification", model=ner_model, aggregation_strategy="simple", device="cpu")
    theirs = [[(e["entity_group"], int(e["start"]), int(e["end"])) for e in entities] for entities in tagger(texts)]
    ours = ner.predict(texts)
    checked = 0
    for text, mine, their in zip(texts, ours, theirs):
        if comparable(tagger.tokenizer, text, their)[1]:
            assert spans(mine) == set(their), text
            checked += 1
    assert checked >= 10, f"only {checked} comparable sentences"
    assert sum(len(r["entities"]) for r in ours) > 20


def test_offsets_slice_the_input_back_to_the_entity(ner):
    texts = [SHORT, "Ägypten's Präsident visited Zürich, then Kyoto\u00a0and  Berlin!", "(Tariq Hussain) — Belgium."]
    for result in ner.predict(texts):
        assert result["entities"] or result["text"] != SHORT
        for entity in result["entities"]:
            assert result["text"][entity["start"] : entity["end"]] == entity["text"]
            assert 0 < entity["score"] <= 1 and entity["label"] in {"PER", "LOC", "ORG", "MISC"}


def test_text_longer_than_the_model_gets_entities_at_its_end(ner):
    known = max(ner.predict([SHORT])[0]["entities"], key=lambda e: e["score"])
    filler = "the match was played on a sunny afternoon and the crowd was quiet ."
    text = " ".join([filler] * 46) + " " + SHORT
    assert len(text.split()) > 600 and len(ner.tokenizer(text)["input_ids"]) > ner.max_seq_length
    offset = len(text) - len(SHORT)
    entities = ner.predict([text])[0]["entities"]
    at_end = {(e["label"], e["start"] - offset, e["end"] - offset) for e in entities if e["start"] >= offset}
    assert (known["label"], known["start"], known["end"]) in at_end
    tagged = ner.predict([text.split()])[0]
    assert len(tagged["tags"]) == len(tagged["tokens"]) == len(text.split())


def test_small_windows_and_batches_keep_every_word_in_input_order(ner_model, ner):
    sentences = read_conll(NER_DATA / "test.conll").tokens[:12]
    windowed = Predictor.from_pretrained(ner_model, device="cpu", batch_size=3, max_seq_length=16, stride=4)
    one_by_one = Predictor.from_pretrained(ner_model, device="cpu", batch_size=1)
    small = windowed.predict(sentences)
    assert [r["tokens"] for r in small] == sentences
    assert [len(r["tags"]) for r in small] == [len(s) for s in sentences]
    batched, single = ner.predict(sentences), one_by_one.predict(sentences)
    assert [r["tags"] for r in batched] == [r["tags"] for r in single]
    for a, b in zip(batched, single):
        assert [e["score"] for e in a["entities"]] == pytest.approx([e["score"] for e in b["entities"]], abs=1e-3)


def test_pre_tokenized_entities_are_word_spans(ner):
    tokens = SHORT.split()
    result = ner.predict([tokens, []])
    assert result[1] == {"text": "", "tokens": [], "tags": [], "entities": []}
    assert result[0]["tokens"] == tokens and len(result[0]["tags"]) == len(tokens)
    for entity in result[0]["entities"]:
        assert entity["text"] == " ".join(tokens[entity["start"] : entity["end"]])
        assert result[0]["tags"][entity["start"]][2:] == entity["label"]


def test_empty_lines_give_empty_results(ner):
    assert ner.predict(["", "   ", SHORT])[:2] == [{"text": "", "entities": []}, {"text": "   ", "entities": []}]
    assert ner.predict([]) == []


# ---------------------------------------------------------------- classification


def test_classification_probabilities_sum_to_one_and_labels_are_names(classifier_model):
    predictor = Predictor.from_pretrained(classifier_model, device="cpu", max_seq_length=16)
    texts = ["a warm and funny film", "", "the screen scratches far too easily and " * 5]
    results = predictor.predict(texts)
    for result in (results[0], results[2]):
        assert result["label"] in {"negative", "positive"}
        assert set(result["probabilities"]) == {"negative", "positive"}
        assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert results[1] == {"text": "", "label": None, "probabilities": {}}
    assert "truncated" not in results[0] and results[2]["truncated"] is True


def test_multi_label_and_regression_outputs(tiny_model, tmp_path):
    topics = Predictor.from_pretrained(
        untrained_classifier(tiny_model, tmp_path / "multi", ["business", "sports"], "multi_label_classification"),
        threshold=0.5,
    )
    result, empty = topics.predict(["The markets rallied.", ""])
    assert result["labels"] == [n for n, p in result["probabilities"].items() if p > 0.5]
    assert set(result["probabilities"]) == {"business", "sports"} and empty["labels"] == []
    scores = Predictor.from_pretrained(untrained_classifier(tiny_model, tmp_path / "reg", ["score"], "regression"))
    result, empty = scores.predict(["A horse eats hay.", ""], text_pairs=["A horse is eating.", ""])
    assert isinstance(result["value"], float) and result["text_pair"] == "A horse is eating."
    assert empty["value"] is None


# ---------------------------------------------------------------- input files


def test_input_format_from_suffix_and_content(write_file):
    assert input_format("x.jsonl", [], "auto", NER_TASK) == "jsonl"
    assert input_format("x.conll", [], "auto", NER_TASK) == "conll"
    assert input_format("x.txt", ["-DOCSTART- -X- O", "", "EU B-ORG"], "auto", NER_TASK) == "conll"
    assert input_format("x.txt", ["EU NNP B-ORG", "rejects VBZ O"], "auto", NER_TASK) == "conll"
    assert input_format("x.txt", ["EU NNP B-ORG", "rejects VBZ O"], "auto", CLASSIFICATION_TASK) == "text"
    assert input_format("-", ['{"text": "a"}'], "auto", NER_TASK) == "jsonl"
    assert input_format("x.txt", ["Some text here."], "auto", NER_TASK) == "text"
    assert input_format("x.jsonl", [], "text", NER_TASK) == "text"
    path = write_file("in.jsonl", '{"tokens": ["EU", "rejects"]}\n\n{"review": "fine", "x": 1}\n')
    examples = read_examples(path, text_field="review", task=NER_TASK)
    assert examples == [Example(text="EU rejects", tokens=("EU", "rejects")), Example(), Example(text="fine")]


def test_mixed_inputs_come_back_in_order(ner):
    examples = [Example(text="Kyoto ."), Example(tokens=("Kyoto", "!")), Example(), Example(text=SHORT)] * 3
    results = list(predict_examples(ner, examples, chunk_size=5))
    assert [r["text"] for r in results] == ["Kyoto .", "Kyoto !", "", SHORT] * 3
    assert ["tokens" in r for r in results] == [e.tokens is not None for e in examples]


def test_cli_writes_one_line_per_input_line_and_per_conll_sentence(ner_model, tmp_path, write_file):
    lines = [SHORT, "", "Kyoto is in Japan ."]
    out = tmp_path / "out.jsonl"
    summary = predict.main(
        [
            "--model",
            ner_model,
            "--input",
            write_file("in.txt", "\n".join(lines) + "\n"),
            "--output",
            str(out),
            "--device",
            "cpu",
        ]
    )
    records = read_jsonl(out)
    assert summary["records"] == 3 and [r["text"] for r in records] == lines and records[1]["entities"] == []
    assert summary["task"] == "ner"
    predict.main(["--model", ner_model, "--input", str(NER_DATA / "test.conll"), "--output", str(out)])
    records = read_jsonl(out)
    sentences = read_conll(NER_DATA / "test.conll").tokens
    assert [r["tokens"] for r in records] == sentences and all(len(r["tags"]) == len(r["tokens"]) for r in records)


def test_cli_stdin_to_stdout_in_a_subprocess(ner_model):
    lines = [SHORT, "", "Zürich — Kyoto ."]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), "--model", ner_model, "--input", "-"],
        input="\n".join(lines).encode("utf-8"),
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    records = [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]
    assert [r["text"] for r in records] == lines and records[1] == {"text": "", "entities": []}
    assert records[0]["entities"]


# ---------------------------------------------------------------- errors


def test_cli_error_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), "--model", str(tmp_path / "none"), "--input", "-"],
        input="text\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: Model directory")


def test_closed_stdin_and_unusable_outputs_are_one_error_line(ner_model, tmp_path):
    command = [sys.executable, str(ROOT / "predict.py"), "--model", ner_model, "--input", "-"]
    closed = subprocess.run(
        command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.close(0)
    )
    assert closed.returncode == 1 and "Traceback" not in closed.stderr
    assert closed.stderr.strip().splitlines()[-1] == (
        "error: --input -: standard input is closed; pipe text in "
        "(echo ... | predict.py --input -) or give --input FILE."
    )
    for output, message in (
        (str(tmp_path), f"--output {tmp_path} is a directory; name a file"),
        ("/proc/out.jsonl", "--output /proc/out.jsonl: the directory /proc is not writable"),
    ):
        proc = subprocess.run(
            [*command, "--output", output], input="text\n", capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_model_errors(tiny_model, tmp_path, ner_model):
    with pytest.raises(ConfigError, match="does not exist"):
        Predictor.from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"no config\.json"):
        Predictor.from_pretrained(str(tmp_path))
    with pytest.raises(ConfigError, match="was never fine-tuned"):
        Predictor.from_pretrained(tiny_model)
    with pytest.raises(ConfigError, match="--stride 40"):
        Predictor.from_pretrained(ner_model, max_seq_length=32, stride=40)
    with pytest.raises(ConfigError, match="model's limit of 512"):
        Predictor.from_pretrained(ner_model, max_seq_length=4096)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            Predictor.from_pretrained(ner_model, device="cuda")


def test_input_errors_name_the_line(ner_model, classifier_model, tmp_path, write_file, ner):
    out = str(tmp_path / "out.jsonl")
    bad = write_file("bad.txt", b"fine\n\xff\xfe broken\n")
    with pytest.raises(DataError, match=r"bad.txt:2: byte 0xff"):
        predict.main(["--model", ner_model, "--input", bad, "--output", out])
    missing = write_file("in.jsonl", '{"text": "a"}\n{"body": "b"}\n')
    with pytest.raises(DataError, match=r"in.jsonl:2: no 'text' field \(it has \['body'\]\)"):
        predict.main(["--model", ner_model, "--input", missing, "--output", out])
    with pytest.raises(ConfigError, match=r"only models that tag words take; this model \(classification\)"):
        predict.main(["--model", classifier_model, "--input", str(NER_DATA / "test.conll"), "--output", out])
    with pytest.raises(DataError, match="text 1 is int"):
        ner.predict(["fine", 3])
    assert not (tmp_path / "out.jsonl").exists()
