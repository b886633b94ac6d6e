"""Texts and pre-split words to token ids, as the tokenizer's call encodes them, without the work nothing reads.

`tokenizer(texts)` asks the Rust backend for every token's character offsets and converts each encoding into a
dictionary; a model that is cheap per text (the static student) spent more time there than in its forward pass.
`encode_texts` calls the backend's `encode_batch_fast` (the same ids, no offsets), `encode_words` its `encode_batch`
on pre-split words (word ids need the offsets' bookkeeping) and reads ids and word ids straight off the encodings,
both after setting the backend up as the call would (no truncation, no padding: a tokenizer.json may carry both;
special tokens split or not as the tokenizer says). Only for tokenizers whose encoding transformers does not
override in a subclass; others take the call.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers.tokenization_utils_base import PaddingStrategy, TruncationStrategy

try:  # transformers 5: the class every fast tokenizer derives from
    from transformers.tokenization_utils_tokenizers import TokenizersBackend
except ImportError:  # pragma: no cover - transformers 4 names it PreTrainedTokenizerFast
    from transformers import PreTrainedTokenizerFast as TokenizersBackend


def takes_fast_path(tokenizer) -> bool:
    """A Rust-backed tokenizer whose `_encode_plus` is transformers' own (no subclass changes what it encodes)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return (
        isinstance(tokenizer, TokenizersBackend)
        and hasattr(backend, "encode_batch_fast")
        and type(tokenizer)._encode_plus is TokenizersBackend._encode_plus
    )


def prepare_backend(tokenizer):
    """The backend, set up as the tokenizer's call sets it for an encoding neither cut nor padded."""
    tokenizer.set_truncation_and_padding(
        padding_strategy=PaddingStrategy.DO_NOT_PAD,
        truncation_strategy=TruncationStrategy.DO_NOT_TRUNCATE,
        max_length=None,
        stride=0,
        pad_to_multiple_of=None,
        padding_side=None,
    )
    backend = tokenizer.backend_tokenizer
    split = bool(getattr(tokenizer, "split_special_tokens", False))
    if backend.encode_special_tokens != split:
        backend.encode_special_tokens = split
    return backend


def encode_words(tokenizer, sentences: Sequence[Sequence[str]]) -> tuple[list[list[int]], list[list[int | None]]]:
    """Each sentence's token ids and each token's word index, without special tokens: what
    `tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)` gives as input_ids and word_ids."""
    sentences = [list(words) for words in sentences]
    if not sentences:
        return [], []
    if not takes_fast_path(tokenizer):
        encoded = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
        return list(encoded["input_ids"]), [encoded.word_ids(i) for i in range(len(sentences))]
    encodings = prepare_backend(tokenizer).encode_batch(sentences, is_pretokenized=True, add_special_tokens=False)
    return [encoding.ids for encoding in encodings], [encoding.word_ids for encoding in encodings]


def encode_texts(tokenizer, texts: Sequence[str]) -> dict[str, list[list[int]]]:
    """`{input name: rows}` of `texts`, special tokens added, neither cut nor padded: what `tokenizer(texts)` gives
    for the inputs the model takes (input_ids, and token_type_ids / attention_mask when the tokenizer's
    `model_input_names` has them)."""
    texts = list(texts)
    if not takes_fast_path(tokenizer):
        return {key: list(values) for key, values in tokenizer(texts, verbose=False).items()}
    encodings = prepare_backend(tokenizer).encode_batch_fast(texts, add_special_tokens=True)
    encoded = {"input_ids": [encoding.ids for encoding in encodings]}
    if "token_type_ids" in tokenizer.model_input_names:
        encoded["token_type_ids"] = [encoding.type_ids for encoding in encodings]
    if "attention_mask" in tokenizer.model_input_names:
        encoded["attention_mask"] = [encoding.attention_mask for encoding in encodings]
    return encoded
