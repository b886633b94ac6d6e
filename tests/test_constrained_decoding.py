"""Constrained decoding of word tags (utils/tasks/ner/decoding.py): never an invalid sequence, the argmax when that
is valid, the best valid sequence otherwise; used by evaluation, a run's prediction files and `Predictor`."""

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import run_ner
from tests.conftest import ROOT
from utils.core.errors import ConfigError
from utils.core.labels import LabelSpace
from utils.serving.predictor import Predictor
from utils.tasks.ner.alignment import NO_WORD
from utils.tasks.ner.decoding import (
    ARGMAX,
    CONSTRAINED,
    IOB1,
    IOB2,
    IOBES,
    TagDecoder,
    is_valid,
    log_softmax,
    scheme_of,
    scheme_of_names,
    transitions,
    viterbi,
)
from utils.tasks.ner.iob import count_invalid_transitions
from utils.tasks.ner.tag_decoding import gather_word_scores, saved_decoder

NAMES = {
    IOB2: ("O", "B-LOC", "I-LOC", "B-PER", "I-PER"),
    IOB1: ("O", "B-LOC", "I-LOC", "B-PER", "I-PER"),
    IOBES: ("O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"),
}


def scores_for(scheme: str, max_words: int = 12):
    """[words, tags] integer scores: sums are exact, so optimal paths compare without rounding."""
    n_tags = len(NAMES[scheme])
    return st.integers(1, max_words).flatmap(
        lambda n: arrays(np.float64, (n, n_tags), elements=st.integers(-20, 0).map(float))
    )


def total(scores: np.ndarray, path) -> float:
    return float(scores[np.arange(len(path)), path].sum())


@pytest.mark.parametrize("scheme", [IOB2, IOB1, IOBES])
@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.data())
def test_viterbi_never_emits_an_invalid_sequence(scheme, data):
    scores = data.draw(scores_for(scheme))
    rules = transitions(NAMES[scheme], scheme)
    path = viterbi(scores, rules)
    assert len(path) == len(scores) and is_valid(path, rules)
    if scheme == IOB2:  # the kit's invalid-sequence count (IOB2's rule) agrees
        assert count_invalid_transitions([NAMES[scheme][i] for i in path]) == 0


@pytest.mark.parametrize("scheme", [IOB2, IOB1, IOBES])
@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.data())
def test_viterbi_is_the_argmax_when_the_argmax_is_valid(scheme, data):
    rules = transitions(NAMES[scheme], scheme)
    noise = data.draw(scores_for(scheme))
    valid = viterbi(noise, rules)  # some valid sequence, made each word's clear favourite below
    boosted = noise.copy()
    boosted[np.arange(len(valid)), valid] += 100.0
    assert boosted.argmax(axis=1).tolist() == valid.tolist()
    assert viterbi(boosted, rules).tolist() == valid.tolist()


@pytest.mark.parametrize("scheme", [IOB2, IOB1, IOBES])
@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_viterbi_finds_the_best_valid_sequence(scheme, data):
    scores = data.draw(scores_for(scheme, max_words=3))
    rules = transitions(NAMES[scheme], scheme)
    candidates = itertools.product(range(len(NAMES[scheme])), repeat=len(scores))
    best = max(total(scores, path) for path in candidates if is_valid(path, rules))
    assert total(scores, viterbi(scores, rules)) == best


@pytest.mark.parametrize("scheme", [IOB2, IOB1, IOBES])
@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=st.data())
def test_the_decoders_argmax_shortcut_scores_as_viterbi(scheme, data):
    """`TagDecoder.decode` takes each word's argmax when it is valid, Viterbi otherwise: always a path as good as
    Viterbi's and, where any exists, a valid one."""
    scores = data.draw(scores_for(scheme))
    rules = transitions(NAMES[scheme], scheme)
    path = TagDecoder(NAMES[scheme], scheme, CONSTRAINED).decode(scores)
    reference = viterbi(scores, rules)
    assert total(scores, path) == total(scores, reference)
    assert is_valid(path.tolist(), rules) == is_valid(reference.tolist(), rules)
    probabilities = np.exp(log_softmax(scores))
    from_probabilities = TagDecoder(NAMES[scheme], scheme, CONSTRAINED).decode_probabilities(probabilities)
    assert total(scores, from_probabilities) == total(scores, reference)


def test_rules_of_each_scheme():
    def valid(scheme, tags):
        names = NAMES[scheme]
        return is_valid([names.index(t) for t in tags], transitions(names, scheme))

    assert valid(IOB2, ["B-PER", "I-PER", "O", "B-LOC"]) and not valid(IOB2, ["O", "I-PER"])
    assert not valid(IOB2, ["I-PER"]) and not valid(IOB2, ["B-LOC", "I-PER"])
    assert valid(IOB1, ["I-PER", "I-PER", "B-PER", "O", "I-LOC"]) and not valid(IOB1, ["O", "B-PER"])
    assert not valid(IOB1, ["I-LOC", "B-PER"])
    assert valid(IOBES, ["S-PER", "B-LOC", "I-LOC", "E-LOC", "O"]) and not valid(IOBES, ["B-PER", "O"])
    assert not valid(IOBES, ["B-PER"]) and not valid(IOBES, ["O", "E-PER"]) and not valid(IOBES, ["B-PER", "S-PER"])
    with pytest.raises(ValueError, match="unknown tag scheme"):
        transitions(NAMES[IOB2], "BILOU")


def test_an_orphan_inside_tag_is_resolved_by_the_probabilities():
    names = NAMES[IOB2]
    decoder = TagDecoder(names, IOB2, CONSTRAINED)
    # argmax: O I-PER, invalid; O B-PER (0.9*0.3) beats B-PER I-PER (0.1*0.6) and O O (0.9*0.1)
    probabilities = np.array([[0.9, 0.0, 0.0, 0.1, 0.0], [0.1, 0.0, 0.0, 0.3, 0.6]]) + 1e-9
    assert [names[i] for i in decoder.decode(np.log(probabilities))] == ["O", "B-PER"]
    # a likelier B-PER first: B-PER I-PER (0.5*0.6) beats O B-PER (0.5*0.3)
    probabilities = np.array([[0.5, 0.0, 0.0, 0.5, 0.0], [0.1, 0.0, 0.0, 0.3, 0.6]]) + 1e-9
    assert [names[i] for i in decoder.decode(np.log(probabilities))] == ["B-PER", "I-PER"]
    argmax = TagDecoder(names, IOB2, ARGMAX)
    assert [names[i] for i in argmax.decode(np.log(probabilities))] == ["O", "I-PER"]
    assert decoder.decode(np.zeros((0, 5))).tolist() == []


def test_no_valid_sequence_falls_back_to_the_argmax():
    names = ("I-PER", "B-LOC")  # IOBES rules: B-LOC can never close, I-PER never open
    scores = np.log(np.array([[0.8, 0.2], [0.3, 0.7]]))
    assert viterbi(scores, transitions(names, IOBES)).tolist() == [0, 1]


def test_the_scheme_is_read_from_the_gold_tags():
    iob2 = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "I-LOC"]]  # one stray I-LOC: still IOB2
    iob1 = [["I-PER", "I-PER", "B-PER", "O", "I-LOC"]]
    names = NAMES[IOB2]
    assert scheme_of(iob2, names) == IOB2 and scheme_of(iob1, names) == IOB1
    assert scheme_of([["S-PER"]], NAMES[IOBES]) == IOBES
    assert scheme_of([["PER", "PER", "O"]], ("O", "PER")) == IOB1  # IO: no constraint applies
    assert scheme_of_names(names) == IOB2 and scheme_of_names(("O", "I-PER")) == IOB1
    assert scheme_of_names(NAMES[IOBES]) == IOBES


def test_word_scores_are_gathered_from_the_windows_owning_each_word():
    # two windows of sentence 0 (word 1 scored in the second), one of sentence 1; positions 3 are padding
    predictions = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)
    word_index = [[NO_WORD, 0, NO_WORD, NO_WORD], [NO_WORD, NO_WORD, 1, NO_WORD], [NO_WORD, 0, NO_WORD, NO_WORD]]
    scores = gather_word_scores(predictions, word_index, [0, 0, 1], [2, 1])
    assert [s.tolist() for s in scores] == [[[2.0, 3.0], [12.0, 13.0]], [[18.0, 19.0]]]


def test_a_saved_models_decoder():
    labels = LabelSpace(NAMES[IOB2])
    old = SimpleNamespace()  # saved before decoding was recorded
    assert saved_decoder(old, labels, None) == TagDecoder(labels.names, IOB2, CONSTRAINED)
    recorded = SimpleNamespace(tag_scheme=IOB1, tag_decoding=ARGMAX)
    assert saved_decoder(recorded, labels, None) == TagDecoder(labels.names, IOB1, ARGMAX)
    assert saved_decoder(recorded, labels, CONSTRAINED).decoding == CONSTRAINED
    with pytest.raises(ConfigError, match="--decoding must be one of"):
        saved_decoder(SimpleNamespace(tag_decoding="beam"), labels, None)


# ---------------------------------------------------------------- end to end on a tiny random model


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    """The same tiny random model evaluated both ways (random weights: plenty of invalid argmax sequences)."""
    outputs = {}
    for decoding in (CONSTRAINED, ARGMAX):
        out = tmp_path_factory.mktemp(decoding)
        run_ner.main(
            [
                "--model",
                tiny_model,
                "--train_file",
                str(ROOT / "data/ner/train.conll"),
                "--validation_file",
                str(ROOT / "data/ner/validation.conll"),
                "--test_file",
                str(ROOT / "data/ner/test.conll"),
                "--max_train_samples",
                "16",
                "--max_steps",
                "1",
                "--decoding",
                decoding,
                "--seed",
                "7",
                "--report_to",
                "none",
                "--save_strategy",
                "no",
                "--output_dir",
                str(out),
            ]
        )
        outputs[decoding] = out
    return outputs


def test_evaluation_and_prediction_files_decode_as_asked(runs):
    results = {name: json.loads((out / "all_results.json").read_text()) for name, out in runs.items()}
    for split in ("eval", "predict"):
        assert results[CONSTRAINED][f"{split}_invalid_iob_predictions"] == 0
        assert results[ARGMAX][f"{split}_invalid_iob_predictions"] > 0
    for decoding, out in runs.items():
        records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        invalid = sum(count_invalid_transitions(record["predicted"]) for record in records)
        assert invalid == results[decoding]["predict_invalid_iob_predictions"]
        config = json.loads((out / "config.json").read_text())
        assert config["tag_scheme"] == IOB2 and config["tag_decoding"] == decoding


def test_the_predictor_decodes_as_the_model_was_evaluated(runs):
    sentences = [line.split() for line in ["EU rejects German call to boycott British lamb .", "Peter Blackburn"]]
    argmax = Predictor.from_pretrained(str(runs[ARGMAX]), device="cpu")
    assert argmax.settings()["decoding"] == ARGMAX and argmax.settings()["tag_scheme"] == IOB2
    constrained = Predictor.from_pretrained(str(runs[ARGMAX]), device="cpu", decoding=CONSTRAINED)
    probabilities = argmax.prediction.word_probabilities(sentences)
    names = argmax.prediction.labels.names
    argmax_tags = [tags for tags, _ in argmax.prediction.tag_words(sentences)]
    assert argmax_tags == [[names[i] for i in p.argmax(axis=1)] for p in probabilities]
    decoded = [constrained.prediction.tag_words(sentences), constrained.predict(sentences)]
    for tags, _ in decoded[0]:
        assert count_invalid_transitions(tags) == 0
    constrained_tags = [tags for tags, _ in decoded[0]]
    assert [result["tags"] for result in decoded[1]] == constrained_tags
    for p, (tags, scores) in zip(probabilities, decoded[0]):
        assert scores == pytest.approx([p[i, names.index(t)] for i, t in enumerate(tags)])
