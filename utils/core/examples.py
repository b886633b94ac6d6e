"""One model input as every reader (predict.py's files, the service's requests) hands it over, whatever the task."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

#: The kinds of input there are; a task says which of them it takes (`TaskServing.input_kinds`).
TEXT, PAIR, TOKENS = "text", "pair", "tokens"
INPUT_KINDS = (TEXT, PAIR, TOKENS)

#: How each kind is named to users (error messages, the request schema).
KIND_PHRASES = {TEXT: "texts", PAIR: "sentence pairs (text_pair)", TOKENS: "pre-split words (tokens)"}


@dataclass(frozen=True)
class Example:
    """One input: a text (with an optional second text of a pair) or a sentence of pre-split words, and the document
    it belongs to (document context), if the input says."""

    text: str = ""
    text_pair: str | None = None
    tokens: tuple[str, ...] | None = None
    document: Hashable | None = None

    @property
    def kind(self) -> str:
        if self.tokens is not None:
            return TOKENS
        return PAIR if self.text_pair is not None else TEXT


def taken_kinds(kinds: frozenset[str]) -> str:
    """The kinds a model takes, as an error message says them."""
    return " and ".join(KIND_PHRASES[kind] for kind in INPUT_KINDS if kind in kinds)
