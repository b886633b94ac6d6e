"""The load-time tokenizer check (utils/core/tokenizer_check.py): for every architecture of the matrix, pre-split
words get the ids of running text; ModernBERT's byte-level tokenizer is fixed and keeps the fix when saved; what
cannot be fixed is refused with one line."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from tests.conftest import ROOT
from tests.tiny_architectures import ARCHITECTURES, build, conll_texts
from utils.core.arguments import ModelArguments
from utils.core.conll import read_conll
from utils.core.errors import ConfigError
from utils.core.modeling import load_tokenizer
from utils.core.tokenizer_check import SAMPLE_WORDS, ids_disagree

NER = ROOT / "data" / "ner"
SAMPLE_SENTENCES = [
    words for split in ("train", "validation", "test") for words in read_conll(NER / f"{split}.conll").tokens
]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tokenizers")
    return {
        model_type: build(model_type, root / model_type, conll_texts(NER / "train.conll"))
        for model_type in ARCHITECTURES
    }


def running_and_split(tokenizer, words: list[str]) -> tuple[list[int], list[int]]:
    return (
        tokenizer(" ".join(words), add_special_tokens=False)["input_ids"],
        tokenizer(words, is_split_into_words=True, add_special_tokens=False)["input_ids"],
    )


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_pre_split_ids_equal_running_text_ids_on_every_sample_sentence(model_type, models):
    tokenizer = load_tokenizer(ModelArguments(model_name_or_path=models[model_type]), word_split=True)
    assert len(SAMPLE_SENTENCES) > 400
    for words in SAMPLE_SENTENCES:
        running, split = running_and_split(tokenizer, words)
        assert split == running, words


def test_modernbert_is_fixed_at_load_and_the_saved_tokenizer_keeps_the_fix(models, tmp_path, caplog):
    words = ["EU", "rejects", "German", "call"]
    raw = AutoTokenizer.from_pretrained(models["modernbert"])
    assert type(raw).__name__ == "TokenizersBackend"
    # the bug: every pre-split word is tokenized as if it began the text
    assert raw.convert_ids_to_tokens(raw(words, is_split_into_words=True)["input_ids"]) == [
        "[CLS]",
        "E",
        "U",
        "re",
        "j",
        "ec",
        "ts",
        "G",
        "erman",
        "c",
        "all",
        "[SEP]",
    ]
    assert raw.convert_ids_to_tokens(raw(" ".join(words))["input_ids"]) == [
        "[CLS]",
        "E",
        "U",
        "Ġre",
        "j",
        "ec",
        "ts",
        "ĠGerman",
        "Ġc",
        "all",
        "[SEP]",
    ]
    assert ids_disagree(raw)
    with caplog.at_level("INFO", logger="utils.core.tokenizer_check"):
        fixed = load_tokenizer(ModelArguments(model_name_or_path=models["modernbert"]), word_split=True)
    assert "set the byte-level prefix space (kept when the tokenizer is saved)" in caplog.text
    expected = ["[CLS]", "ĠE", "U", "Ġre", "j", "ec", "ts", "ĠGerman", "Ġc", "all", "[SEP]"]
    assert fixed.convert_ids_to_tokens(fixed(words, is_split_into_words=True)["input_ids"]) == expected
    assert fixed.convert_ids_to_tokens(fixed(" ".join(words))["input_ids"]) == expected
    fixed.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)  # as a reader without the check would load it
    assert again.convert_ids_to_tokens(again(words, is_split_into_words=True)["input_ids"]) == expected
    assert not ids_disagree(again)


def test_metaspace_that_marks_only_the_first_word_is_fixed(models, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(models["xlm-roberta"])
    for part in (tokenizer.backend_tokenizer.pre_tokenizer[1], tokenizer.backend_tokenizer.decoder):
        part.prepend_scheme = "first"
    assert ids_disagree(tokenizer)
    tokenizer.save_pretrained(tmp_path)
    fixed = load_tokenizer(ModelArguments(model_name_or_path=str(tmp_path)), word_split=True)
    assert fixed.backend_tokenizer.pre_tokenizer[1].prepend_scheme == "always"
    assert not ids_disagree(fixed)


def test_a_tokenizer_that_cannot_be_fixed_is_refused_with_one_line(tmp_path):
    from tokenizers import Tokenizer, models, trainers
    from transformers import TokenizersBackend

    backend = Tokenizer(models.BPE(unk_token="[UNK]"))  # no pre-tokenizer: spaces are part of the tokens
    backend.train_from_iterator(
        [" ".join(SAMPLE_WORDS)] * 3, trainers.BpeTrainer(vocab_size=200, special_tokens=["[UNK]", "[PAD]"])
    )
    TokenizersBackend(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(tmp_path)
    with pytest.raises(ConfigError) as raised:
        load_tokenizer(ModelArguments(model_name_or_path=str(tmp_path)), word_split=True)
    assert str(raised.value) == (
        f"The tokenizer of '{tmp_path}' gives words other ids pre-split than in running text (its pre-tokenizer: "
        "NoneType), so NER labels would sit on wrongly split words; give --tokenizer_name a byte-level, Metaspace "
        "or WordPiece tokenizer (or its fast version)."
    )
