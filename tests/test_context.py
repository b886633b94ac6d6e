"""Document context (--context_size): the pure context picker, the encoded features, and end to end."""

import json

import pytest
from datasets import Dataset, DatasetDict
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

import predict
import run_ner
from tests.conftest import ROOT
from utils.core.conll import read_conll
from utils.core.errors import ConfigError
from utils.core.examples import Example
from utils.core.labels import LabelSpace
from utils.core.losses import IGNORE_INDEX
from utils.core.task import LoadedData
from utils.serving.inputs import chunk_ends, predict_examples, read_examples
from utils.serving.predictor import Predictor
from utils.tasks.ner.alignment import NO_WORD, context_budget, document_context
from utils.tasks.ner.arguments import NerDataArguments
from utils.tasks.ner.encoding import LEFT_CONTEXT, RIGHT_CONTEXT, context_columns, encode_ner

FAST = [
    "--per_device_train_batch_size",
    "8",
    "--report_to",
    "none",
    "--save_strategy",
    "no",
    "--num_train_epochs",
    "1",
]
LABELS = LabelSpace(("O", "B-LOC", "B-PER", "I-PER"))

# ---------------------------------------------------------------- the pure picker


@st.composite
def documents(draw):
    """A document of sentences of token ids that say where they come from: sentence * 1000 + position."""
    lengths = draw(st.lists(st.integers(0, 30), min_size=1, max_size=8))
    return [[s * 1000 + t for t in range(n)] for s, n in enumerate(lengths)]


@settings(max_examples=300, deadline=None)
@given(documents(), st.integers(0, 40), st.integers(1, 60))
def test_context_is_the_nearest_tokens_of_the_same_document_within_budget(sentences, size, max_tokens):
    picked = document_context(sentences, size, max_tokens)
    assert len(picked) == len(sentences)
    for index, (own, (left, right)) in enumerate(zip(sentences, picked)):
        before = [t for s in sentences[:index] for t in s]
        after = [t for s in sentences[index + 1 :] for t in s]
        assert len(left) <= size and len(right) <= size
        # nearest first: the tail of what precedes, the head of what follows, in document order
        assert left == before[len(before) - len(left) :] and right == after[: len(right)]
        if len(own) >= max_tokens:
            assert left == right == []  # long sentences keep their plain windows
            continue
        total = len(own) + len(left) + len(right)
        assert total <= max_tokens
        # no room is wasted: a side short of what it could have means the input is full
        if len(left) < min(size, len(before)) or len(right) < min(size, len(after)):
            assert total == max_tokens
    assert picked[0][0] == [] and picked[-1][1] == []  # a document's first and last sentences


def test_a_document_of_one_sentence_has_no_context():
    assert document_context([[1, 2, 3]], 64, 100) == [([], [])]


def test_budget_splits_the_room_evenly_and_gives_what_one_side_lacks_to_the_other():
    assert context_budget(10, 50, 50, 64, 30) == (10, 10)
    assert context_budget(10, 3, 50, 64, 30) == (3, 17)
    assert context_budget(10, 50, 0, 64, 30) == (20, 0)
    assert context_budget(10, 50, 50, 4, 30) == (4, 4)
    assert context_budget(30, 50, 50, 4, 30) == (0, 0)
    assert context_budget(10, 50, 50, 0, 30) == (0, 0)


def test_context_crosses_several_sentences():
    sentences = [[1], [2, 3], [4], [5, 6, 7]]
    assert document_context(sentences, 3, 100)[2] == ([1, 2, 3], [5, 6, 7])


# ---------------------------------------------------------------- encoded features


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def canonical(sentences, document_ids):
    tags = [["B-PER" if w[0].isupper() else "O" for w in words] for words in sentences]
    return Dataset.from_dict(
        {
            "tokens": sentences,
            "ner_tags": tags,
            "document_id": document_ids,
            "location": [f"row {i}" for i in range(len(sentences))],
        }
    )


SENTENCES = [
    ["Ada", "met", "Bob", "in", "town"],
    ["Then", "they", "left"],
    ["Carl", "stayed"],
    ["Dora", "came"],
    ["alone", "Eve", "sang", "a", "long", "song", "all", "night", "through", "the", "hall"],
]
DOCUMENTS = ["0", "0", "0", "1", "2"]


def encoded(tokenizer, context_size, max_seq_length=32, dataset=None):
    args = NerDataArguments(context_size=context_size, max_seq_length=max_seq_length, stride=4)
    return encode_ner(dataset or canonical(SENTENCES, DOCUMENTS), tokenizer, LABELS, LoadedData(DatasetDict(), args))


def test_no_label_ever_lands_on_a_context_token(tokenizer):
    plain, context = encoded(tokenizer, 0), encoded(tokenizer, 16)
    assert len(plain) == len(context)  # short sentences: one window each, with or without context
    for without, row in zip(plain, context):
        assert len(row["input_ids"]) <= 32
        # the sentence's own tokens sit between [CLS]+left context and right context+[SEP], labelled as before
        own = without["input_ids"][1:-1]
        starts = [s for s in range(len(row["input_ids"])) if row["input_ids"][s : s + len(own)] == own]
        start = next(s for s in starts if row["labels"][s : s + len(own)] == without["labels"][1:-1])
        end = start + len(own)
        for position in [*range(start), *range(end, len(row["input_ids"]))]:
            assert row["labels"][position] == IGNORE_INDEX and row["word_index"][position] == NO_WORD
        assert row["word_index"][start:end] == without["word_index"][1:-1]


def test_first_last_and_lone_sentences_of_a_document(tokenizer):
    plain, context = encoded(tokenizer, 0), encoded(tokenizer, 16)
    first, middle, last, lone = (context[i]["input_ids"] for i in range(4))
    own = [row["input_ids"] for row in plain]
    # document 0 is 10 tokens, well inside 16 a side: each of its sentences sees the others whole, so each is
    # encoded as [CLS] + the whole document + [SEP] (the first with right context only, the last with left only)
    document = [token for ids in own[:3] for token in ids[1:-1]]
    assert len(document) == 10
    assert first == middle == last == own[0][:1] + document + own[0][-1:]
    assert lone == own[3]  # a document of one sentence is encoded as without context


def test_context_stays_inside_its_document(tokenizer):
    columns = context_columns(tokenizer, SENTENCES, DOCUMENTS, 16, 30)
    assert columns[LEFT_CONTEXT][3] == columns[RIGHT_CONTEXT][3] == []
    assert columns[LEFT_CONTEXT][0] == [] and columns[RIGHT_CONTEXT][2] == []
    # the same rows split into documents out of order: a document is the rows sharing its id, in input order
    shuffled = context_columns(tokenizer, [SENTENCES[i] for i in (0, 3, 1, 2)], ["0", "1", "0", "0"], 16, 30)
    assert shuffled[LEFT_CONTEXT][2] == columns[LEFT_CONTEXT][1]


def test_sentences_longer_than_the_input_keep_their_windows(tokenizer):
    plain, context = encoded(tokenizer, 0, max_seq_length=8), encoded(tokenizer, 16, max_seq_length=8)
    long_plain = [row["input_ids"] for row in plain if row["example_index"] == 4]
    long_context = [row["input_ids"] for row in context if row["example_index"] == 4]
    assert len(long_plain) > 1 and long_context == long_plain


def test_rows_without_documents_are_their_own_documents(tokenizer, caplog):
    dataset = canonical(SENTENCES[:3], ["0", "1", "2"])
    with caplog.at_level("INFO"):
        with_context = encoded(tokenizer, 16, dataset=dataset)
    assert with_context["input_ids"] == encoded(tokenizer, 0, dataset=dataset)["input_ids"]
    assert "no effect" in caplog.text


def test_negative_context_size_is_refused():
    with pytest.raises(ConfigError, match="context_size"):
        NerDataArguments(context_size=-1)


# ---------------------------------------------------------------- end to end: training, predict.py


@pytest.fixture(scope="module")
def context_model(tiny_model, tmp_path_factory):
    """The tiny BERT trained with document context on the shipped sample (which has -DOCSTART- lines)."""
    out = tmp_path_factory.mktemp("context-model")
    data = ROOT / "data" / "ner"
    run_ner.main(
        [
            "--model",
            tiny_model,
            "--train_file",
            str(data / "train.conll"),
            "--validation_file",
            str(data / "validation.conll"),
            "--test_file",
            str(data / "test.conll"),
            "--output_dir",
            str(out),
            "--context_size",
            "16",
            "--max_seq_length",
            "48",
            *FAST,
        ]
    )
    return out


def test_context_never_changes_the_predicted_words(context_model):
    tokens = read_conll(ROOT / "data" / "ner" / "test.conll").tokens
    records = [json.loads(line) for line in (context_model / "predictions.jsonl").read_text().splitlines()]
    assert [r["tokens"] for r in records] == tokens
    assert [len(r["predicted"]) for r in records] == [len(t) for t in tokens]
    assert json.loads((context_model / "config.json").read_text())["context_size"] == 16
    assert "Document context" in (context_model / "README.md").read_text()


def test_predict_uses_the_models_context_on_conll_documents(context_model, tmp_path):
    conll = ROOT / "data" / "ner" / "test.conll"
    predictor = Predictor.from_pretrained(str(context_model), device="cpu", max_seq_length=48, stride=32)
    assert predictor.prediction.context_size == 16 and predictor.settings()["context_size"] == 16
    examples = read_examples(str(conll))
    assert len({e.document for e in examples}) == 6
    out = tmp_path / "predicted.jsonl"
    predict.main(
        [
            "--model",
            str(context_model),
            "--input",
            str(conll),
            "--output",
            str(out),
            "--max_seq_length",
            "48",
            "--stride",
            "32",
        ]
    )  # the training run's windows
    records = [json.loads(line) for line in out.read_text().splitlines()]
    trained = [json.loads(line) for line in (context_model / "predictions.jsonl").read_text().splitlines()]
    assert [r["tags"] for r in records] == [r["predicted"] for r in trained]  # as in training's predict stage
    # small chunks never cut a document, so the tags do not depend on the chunk size
    small = [r["tags"] for r in predict_examples(predictor, examples, chunk_size=3)]
    assert small == [r["tags"] for r in records]


def test_jsonl_document_ids_and_chunks_that_keep_documents_whole(context_model, write_file):
    path = write_file(
        "in.jsonl", '{"tokens": ["Ada", "sang"], "doc": 7}\n{"text": "Bob too.", "doc": 7}\n{"text": "Carl left."}\n'
    )
    examples = read_examples(path, document_field="doc")
    assert [e.document for e in examples] == ["7", "7", None]
    predictor = Predictor.from_pretrained(str(context_model), device="cpu")
    results = list(predict_examples(predictor, examples))
    assert [r["text"] for r in results] == ["Ada sang", "Bob too.", "Carl left."]
    assert results[0]["tokens"] == ["Ada", "sang"] and len(results[0]["tags"]) == 2
    # every entity is the span its offsets name: words of a token list, characters of a text
    assert all(
        e["text"]
        == (" ".join(r["tokens"][e["start"] : e["end"]]) if "tokens" in r else r["text"][e["start"] : e["end"]])
        for r in results
        for e in r["entities"]
    )
    documents = [Example(document=d) for d in ["a", "a", "a", "b", None, None, "c"]]
    assert list(chunk_ends(documents, 2, whole_documents=True)) == [3, 5, 7]
    assert list(chunk_ends(documents, 2, whole_documents=False)) == [2, 4, 6, 7]
