"""The load-time check that a tokenizer gives pre-split words the ids it gives them in running text.

Why: NER encodes pre-split words (`is_split_into_words=True`), which encodes each word as if it began a text.
Byte-level BPE without a prefix space (RoBERTa-style, ModernBERT) then splits every word after the first as a
text-initial word, unlike the model saw in pre-training, and nothing fails: accuracy just drops. In transformers 5,
`add_prefix_space=True` does not even reach the pre-tokenizer of a tokenizer loaded as the generic
`TokenizersBackend` (ModernBERT's). So the ids are compared here, once per load, and where they differ the
tokenizer's own pre-tokenizer is set to mark every word as word-initial (byte-level: a prefix space; Metaspace:
the "▁" before every word), in the backend itself so that the saved `tokenizer.json` keeps it and predict.py,
serve.py and the ONNX export see the same ids. A tokenizer that still disagrees is refused with one line.
"""

from __future__ import annotations

import logging
from typing import Any

from utils.core.errors import ConfigError

logger = logging.getLogger(__name__)

#: Words that exercise what pre-tokenizers treat differently: capitals, digits with punctuation, hyphens,
#: apostrophes (split clitics as CoNLL writes them), accents, brackets, quotes, non-Latin script.
SAMPLE_WORDS = (
    "EU",
    "rejects",
    "German",
    "call",
    "to",
    "boycott",
    "British",
    "lamb",
    ".",
    "O'Neill",
    "'s",
    "1996-08-22",
    "3-1",
    "(",
    "Müller",
    ")",
    '"',
    "Zürich",
    "naïve",
    "Москва",
    "U.S.",
    "co-operation",
)


def ids_disagree(tokenizer: Any, words: tuple[str, ...] | list[str] = SAMPLE_WORDS) -> bool:
    """Whether the words pre-split get other ids than the same words as one running text (joined by spaces)."""
    running = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]
    split = tokenizer(list(words), is_split_into_words=True, add_special_tokens=False)["input_ids"]
    return running != split


def _components(component: Any) -> list[Any]:
    """The parts of a (possibly Sequence) pre-tokenizer, decoder or post-processor, in order."""
    parts, index = [], 0
    while type(component).__name__ == "Sequence":
        try:
            parts.append(component[index])
        except (IndexError, TypeError):
            break
        index += 1
    return parts or ([component] if component is not None else [])


def mark_every_word(tokenizer: Any) -> list[str]:
    """Set the backend's byte-level prefix space / Metaspace "▁" for every word, where either is off; what was
    changed (empty: nothing to change)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return []
    changed = []
    for part in _components(backend.pre_tokenizer):
        kind = type(part).__name__
        if kind == "ByteLevel" and not part.add_prefix_space:
            part.add_prefix_space = True
            changed.append("byte-level prefix space")
        elif kind == "Metaspace" and (part.prepend_scheme != "always" or not part.split):
            part.prepend_scheme, part.split = "always", True
            changed.append('Metaspace "▁" before every word')
    if not changed:
        return []
    # The post-processor trims offsets knowing about the prefix space, and Metaspace's decoder strips the "▁" it
    # added: both follow the pre-tokenizer.
    for part in _components(backend.post_processor) + _components(backend.decoder):
        if hasattr(part, "add_prefix_space"):
            part.add_prefix_space = True
        if type(part).__name__ == "Metaspace":
            part.prepend_scheme = "always"
    if hasattr(tokenizer, "add_prefix_space"):
        tokenizer.add_prefix_space = True
    tokenizer.init_kwargs["add_prefix_space"] = True  # saved in tokenizer_config.json beside tokenizer.json
    return changed


def check_word_split(tokenizer: Any, source: str) -> None:
    """Make pre-split words tokenize as in running text, or refuse the tokenizer (`source`: where it came from)."""
    if not ids_disagree(tokenizer):
        return
    changed = mark_every_word(tokenizer)
    if changed and not ids_disagree(tokenizer):
        logger.info(
            "Tokenizer of '%s': pre-split words were tokenized unlike running text; set the %s (kept when "
            "the tokenizer is saved).",
            source,
            " and ".join(changed),
        )
        return
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(backend.pre_tokenizer).__name__ if backend is not None else f"Python {type(tokenizer).__name__}"
    raise ConfigError(
        f"The tokenizer of '{source}' gives words other ids pre-split than in running text (its "
        f"pre-tokenizer: {kind}), so NER labels would sit on wrongly split words; give "
        "--tokenizer_name a byte-level, Metaspace or WordPiece tokenizer (or its fast version)."
    )
