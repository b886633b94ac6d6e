"""Windowing and label alignment: property tests over random word-piece counts, window sizes and strides."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.core.losses import IGNORE_INDEX
from utils.tasks.ner.alignment import NO_WORD, align_labels, gather_word_predictions, plan_windows


def word_ids_from_pieces(pieces: list[int]) -> list[int]:
    return [word for word, count in enumerate(pieces) for _ in range(count)]


@st.composite
def sentences(draw):
    pieces = draw(st.lists(st.integers(1, 6), min_size=1, max_size=80))
    max_tokens = draw(st.integers(1, 40))
    stride = draw(st.integers(0, max_tokens - 1))
    labels = draw(st.lists(st.integers(0, 8), min_size=len(pieces), max_size=len(pieces)))
    return pieces, max_tokens, stride, labels


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 500), st.integers(1, 64), st.data())
def test_windows_cover_and_owned_ranges_tile(n_tokens, max_tokens, data):
    stride = data.draw(st.integers(0, max_tokens - 1))
    windows = plan_windows(n_tokens, max_tokens, stride)
    assert all(w.end - w.start <= max_tokens for w in windows)
    assert windows[0].start == 0 and windows[-1].end == n_tokens
    assert windows[0].owned_start == 0 and windows[-1].owned_end == n_tokens
    for left, right in zip(windows, windows[1:]):
        assert left.owned_end == right.owned_start  # every token owned exactly once
        assert right.start - left.start >= 1
        assert left.end - right.start >= stride  # consecutive windows share at least `stride` tokens
    for w in windows:
        assert w.start <= w.owned_start <= w.owned_end <= w.end


@settings(max_examples=300, deadline=None)
@given(sentences(), st.booleans())
def test_every_word_is_scored_exactly_once_with_its_label(sentence, label_all_tokens):
    pieces, max_tokens, stride, labels = sentence
    word_ids = word_ids_from_pieces(pieces)
    windows = align_labels(word_ids, labels, max_tokens, stride, label_all_tokens, {i: i + 100 for i in range(9)})
    scored = []
    for window in windows:
        assert len(window.labels) == len(window.word_index) == window.end - window.start <= max_tokens
        for offset, word in enumerate(window.word_index):
            token = window.start + offset
            if word != NO_WORD:
                scored.append(word)
                assert word_ids[token] == word and (token == 0 or word_ids[token - 1] != word)  # first subword
                assert window.labels[offset] == labels[word]
    assert sorted(scored) == list(range(len(pieces)))


@settings(max_examples=200, deadline=None)
@given(sentences())
def test_continuation_pieces_follow_label_all_tokens(sentence):
    pieces, max_tokens, stride, labels = sentence
    word_ids = word_ids_from_pieces(pieces)
    mapping = {i: i + 100 for i in range(9)}
    total_labelled = {False: 0, True: 0}
    for label_all in (False, True):
        for window in align_labels(word_ids, labels, max_tokens, stride, label_all, mapping):
            for offset, label in enumerate(window.labels):
                token = window.start + offset
                first = token == 0 or word_ids[token - 1] != word_ids[token]
                if label != IGNORE_INDEX:
                    total_labelled[label_all] += 1
                    expected = labels[word_ids[token]] if first else mapping[labels[word_ids[token]]]
                    assert label == expected
                    assert label_all or first
    assert total_labelled[True] == len(word_ids)  # every token labelled once (in its owning window)
    assert total_labelled[False] == len(pieces)


@settings(max_examples=200, deadline=None)
@given(st.lists(sentences(), min_size=1, max_size=5))
def test_gather_reassembles_predictions_per_word(batch):
    predictions, word_index, example_index, words = [], [], [], []
    for example, (pieces, max_tokens, stride, labels) in enumerate(batch):
        for window in align_labels(word_ids_from_pieces(pieces), labels, max_tokens, stride):
            # the "model" predicts each word's label at its scored token, padding the row with -100
            row = [labels[w] if w != NO_WORD else 7 for w in window.word_index] + [-100] * 3
            predictions.append(row)
            word_index.append(window.word_index)
            example_index.append(example)
        words.append(len(pieces))
    assert gather_word_predictions(predictions, word_index, example_index, words) == [s[3] for s in batch]


def test_unlabelled_sentences_still_know_their_words():
    windows = align_labels([0, 0, 1, 2], None, 2, 0)
    assert all(label == IGNORE_INDEX for w in windows for label in w.labels)
    assert [w.word_index for w in windows] == [[0, NO_WORD], [1, 2]]


@settings(max_examples=200, deadline=None)
@given(sentences(), st.lists(st.none() | st.integers(0, 3), max_size=30))
def test_unlabelled_windows_are_the_labelled_windows_without_labels(sentence, gaps):
    """Prediction's branch (no labels) scores the same tokens in the same windows as training's, tokens of no word
    (None) included."""
    pieces, max_tokens, stride, labels = sentence
    word_ids = [None if gap is None else word for word, gap in zip(word_ids_from_pieces(pieces), gaps + [0] * 500)]
    labelled = align_labels(word_ids, labels, max_tokens, stride)
    unlabelled = align_labels(word_ids, None, max_tokens, stride)
    assert [(w.start, w.end, w.word_index) for w in unlabelled] == [(w.start, w.end, w.word_index) for w in labelled]
    assert all(w.labels == [IGNORE_INDEX] * (w.end - w.start) for w in unlabelled)


def test_gather_refuses_missing_words():
    with pytest.raises(RuntimeError, match="got no prediction"):
        gather_word_predictions([[1]], [[0]], [0], [2])


def test_bad_window_settings_are_refused():
    with pytest.raises(ValueError):
        plan_windows(10, 4, 4)
