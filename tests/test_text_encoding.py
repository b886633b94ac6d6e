"""`encode_texts` and `encode_words` (utils/core/text_encoding.py): the backend's encodings give what the tokenizer's
call gives (texts; pre-split words with their word ids), for the embedded tokenizer on any text and for every
architecture's kind of tokenizer, whatever truncation or padding an earlier call (or the tokenizer.json) left set on
the backend."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from tests.conftest import ROOT
from tests.tiny_architectures import ARCHITECTURES, conll_texts, train_tokenizer
from utils.core.modeling import embedded_model_path
from utils.core.text_encoding import encode_texts, encode_words, takes_fast_path

NER = ROOT / "data" / "ner"
#: Words the tokenizers treat apart: special tokens written in the text, accents, CJK, emoji, odd spaces.
PIECES = ["[CLS]", "[SEP]", "<s>", "</s>", "[MASK]", "café", "naïve", "東京", "😀", "\u200b", "\t", "  ", "U.S."]


def expected(tokenizer, texts: list[str]) -> dict[str, list[list[int]]]:
    return {key: list(values) for key, values in tokenizer(texts, verbose=False).items()}


def expected_words(tokenizer, sentences: list[list[str]]) -> tuple[list[list[int]], list[list[int | None]]]:
    encoded = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
    return list(encoded["input_ids"]), [encoded.word_ids(i) for i in range(len(sentences))]


@pytest.fixture(scope="module")
def embedded():
    return AutoTokenizer.from_pretrained(embedded_model_path())


@settings(max_examples=60)
@given(st.lists(st.lists(st.sampled_from(PIECES) | st.text(max_size=12), max_size=8).map(" ".join), min_size=1))
def test_the_embedded_tokenizer_encodes_any_text_as_its_call_does(embedded, texts):
    assert takes_fast_path(embedded)
    embedded(["a long text " * 20], truncation=True, max_length=8, padding="max_length")  # leaves both set
    assert embedded.backend_tokenizer.truncation is not None
    assert encode_texts(embedded, texts) == expected(embedded, texts)
    sentences = [text.split() or ["a"] for text in texts]
    assert encode_words(embedded, sentences) == expected_words(embedded, sentences)


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_every_architectures_tokenizer_encodes_as_its_call_does(model_type):
    texts = conll_texts(NER / "train.conll")
    tokenizer = train_tokenizer(model_type, texts, vocab_size=1000)
    sample = texts[:200] + [" ".join(PIECES), "", "   ", "Ünïcödé   spaces\tand\ttabs"]
    assert takes_fast_path(tokenizer)
    encoded = encode_texts(tokenizer, sample)
    assert encoded == expected(tokenizer, sample)
    assert set(encoded) == set(tokenizer.model_input_names) & {"input_ids", "token_type_ids", "attention_mask"}
    sentences = [text.split() for text in sample if text.split()] + [PIECES, ["\u200b"]]
    assert encode_words(tokenizer, sentences) == expected_words(tokenizer, sentences)
