"""Pure word -> subword label alignment and windowing, so no word is ever cut off or scored twice.

A sentence's subword tokens are split into windows of at most `max_tokens` that overlap by `stride` tokens. Every
token is *owned* by exactly one window (the overlap is split at its middle, so each owned token keeps context on
both sides); only owned tokens carry labels, and each word is predicted from the window owning its first subword.

Document context (FLERT, `--context_size`): a sentence that fits one window is given the nearest subword tokens of
the neighbouring sentences of its document on each side (`document_context`); they are context only, never labelled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from utils.core.losses import IGNORE_INDEX

NO_WORD = -1  # word_index of a token that is not the scored first subword of a word


@dataclass(frozen=True)
class Window:
    """Tokens [start, end) of a sentence; tokens [owned_start, owned_end) are labelled and scored in it."""

    start: int
    end: int
    owned_start: int
    owned_end: int


def plan_windows(n_tokens: int, max_tokens: int, stride: int) -> list[Window]:
    """Cover `n_tokens` with windows of at most `max_tokens` overlapping by at least `stride` tokens."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if not 0 <= stride < max_tokens:
        raise ValueError(f"stride must be in [0, {max_tokens}), got {stride}")
    if n_tokens <= max_tokens:
        return [Window(0, n_tokens, 0, n_tokens)]
    step = max_tokens - stride
    starts = list(range(0, n_tokens - max_tokens, step)) + [n_tokens - max_tokens]
    windows = []
    for i, start in enumerate(starts):
        end = start + max_tokens
        owned_start = 0 if i == 0 else (start + starts[i - 1] + max_tokens) // 2
        owned_end = n_tokens if i == len(starts) - 1 else (starts[i + 1] + end) // 2
        windows.append(Window(start, end, owned_start, owned_end))
    return windows


@dataclass(frozen=True)
class AlignedWindow:
    """One model input's worth of a sentence: token range, token labels and which word each scored token is."""

    start: int
    end: int
    labels: list[int]
    word_index: list[int]


def align_labels(
    word_ids: Sequence[int | None],
    word_labels: Sequence[int] | None,
    max_tokens: int,
    stride: int,
    label_all_tokens: bool = False,
    continuation_label: Mapping[int, int] | None = None,
) -> list[AlignedWindow]:
    """Windows of a tokenized sentence with their labels.

    `word_ids[t]` is the word of content token t (None for tokens that belong to no word). The first subword of a
    word gets the word's label; continuation subwords get `continuation_label[label]` (e.g. B-X -> I-X) when
    `label_all_tokens`, else IGNORE_INDEX; tokens outside the window's owned range are context and get IGNORE_INDEX.
    Without `word_labels` (unlabelled data) every label is IGNORE_INDEX, but `word_index` is still filled in.
    """
    continuation_label = continuation_label or {}
    first_token = [t == 0 or word_ids[t] != word_ids[t - 1] for t in range(len(word_ids))]
    windows = []
    for window in plan_windows(len(word_ids), max_tokens, stride):
        span = range(window.start, window.end)
        owned = range(window.owned_start, window.owned_end)
        scored = [t in owned and first_token[t] and word_ids[t] is not None for t in span]
        word_index = [word_ids[t] if score else NO_WORD for t, score in zip(span, scored)]
        labels = [IGNORE_INDEX] * len(span)  # prediction (no labels) needs only the scored words
        if word_labels is not None:
            for offset, t in enumerate(span):
                word = word_ids[t]
                if t not in owned or word is None:
                    continue
                if first_token[t]:
                    labels[offset] = word_labels[word]
                elif label_all_tokens:
                    labels[offset] = continuation_label.get(word_labels[word], word_labels[word])
        windows.append(AlignedWindow(window.start, window.end, labels, word_index))
    return windows


def gather_word_predictions(
    predictions: Sequence[Sequence[int]],
    word_index: Sequence[Sequence[int]],
    example_index: Sequence[int],
    words_per_example: Sequence[int],
) -> list[list[int]]:
    """Reassemble per-word predictions from per-window token predictions.

    `predictions[f][p]` is the predicted id at position p of window f (positions past a window's length are ignored),
    `word_index[f]` the scored word of each position (NO_WORD elsewhere), `example_index[f]` the sentence of window f.
    Raises if a word gets no prediction or two: that would be a bug, never something to score around.
    """
    result: list[list[int | None]] = [[None] * n for n in words_per_example]
    for row, words, example in zip(predictions, word_index, example_index, strict=True):
        for position, word in enumerate(words):
            if word == NO_WORD:
                continue
            if result[example][word] is not None:
                raise RuntimeError(f"word {word} of example {example} was predicted twice")
            result[example][word] = int(row[position])
    for example, words in enumerate(result):
        missing = [i for i, value in enumerate(words) if value is None]
        if missing:
            raise RuntimeError(f"example {example}: words {missing[:10]} got no prediction")
    return result  # type: ignore[return-value]


# ---------------------------------------------------------------- document context (FLERT)


def context_budget(n_tokens: int, n_left: int, n_right: int, size: int, max_tokens: int) -> tuple[int, int]:
    """How many left and right context tokens a sentence of `n_tokens` gets: at most `size` per side and only what
    its document holds, the whole input within `max_tokens`. A sentence that fills the input (or needs windows)
    gets none, so the windowing of long sentences is unchanged. When both sides do not fit, the room is split
    evenly, and a side with less to give leaves the rest to the other: no room is wasted."""
    room = max_tokens - n_tokens
    if size <= 0 or room <= 0:
        return 0, 0
    left, right = min(size, n_left), min(size, n_right)
    if left + right > room:
        left = min(left, max(room // 2, room - right))
        right = min(right, room - left)
    return left, right


def nearest_tokens(sentences: Sequence[Sequence[int]], index: int, count: int, step: int) -> list[int]:
    """Up to `count` tokens nearest to sentence `index` among those before it (`step` -1: the tail of the preceding
    sentences) or after it (`step` 1: the head of the following ones), across as many sentence boundaries as needed;
    in document order."""
    taken: list[int] = []
    other = index + step
    while len(taken) < count and 0 <= other < len(sentences):
        need = count - len(taken)
        sentence = sentences[other]
        taken = list(sentence[-need:]) + taken if step < 0 else taken + list(sentence[:need])
        other += step
    return taken


def document_context(
    sentences: Sequence[Sequence[int]], size: int, max_tokens: int
) -> list[tuple[list[int], list[int]]]:
    """(left, right) context tokens of each sentence of one document (its sentences' subword ids, in order): the
    nearest tokens of the neighbouring sentences, at most `size` per side, each sentence's input (context included)
    within `max_tokens`; see `context_budget`."""
    result = []
    for index, own in enumerate(sentences):
        before = nearest_tokens(sentences, index, size, step=-1)
        after = nearest_tokens(sentences, index, size, step=1)
        left, right = context_budget(len(own), len(before), len(after), size, max_tokens)
        result.append((before[len(before) - left :], after[:right]))
    return result
