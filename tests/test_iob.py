"""IOB helpers agree with seqeval (the scorer) on what an entity is."""

from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities

from utils.tasks.ner.iob import count_invalid_transitions, inside_tag, split_tag, tags_to_spans

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(TAGS), max_size=30))
def test_spans_match_seqeval(tags):
    expected = [(label, start, end + 1) for label, start, end in get_entities(tags)]
    assert [(s.label, s.start, s.end) for s in tags_to_spans(tags)] == expected


def test_invalid_transitions_are_counted():
    assert count_invalid_transitions(["O", "I-PER", "I-PER", "B-LOC", "I-PER", "B-PER", "I-PER"]) == 2
    assert count_invalid_transitions(["B-PER", "I-PER", "O"]) == 0


def test_split_and_inside_tags():
    assert split_tag("B-PER") == ("B", "PER") and split_tag("O") == ("O", "") and split_tag("PER") == ("I", "PER")
    assert split_tag("B-ORG-X") == ("B", "ORG-X")
    assert inside_tag("B-PER", {"I-PER"}) == "I-PER" and inside_tag("B-LOC", {"I-PER"}) == "B-LOC"
