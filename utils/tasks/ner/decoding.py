"""Constrained decoding of word tags: the best tag sequence the tagging scheme allows (Viterbi), instead of each
word's most likely tag, which may be an `I-X` that continues no `X` entity (seqeval then repairs it its own way).

The transitions are hard (allowed or not), so the scores are the model's log-probabilities alone: when the argmax
sequence is valid it is the answer, and otherwise the answer is the most probable valid sequence.

Schemes: IOB2 (`I-X` only after `B-X`/`I-X`), IOBES (`I-X`/`E-X` only after `B-X`/`I-X`, and these two followed by
`I-X`/`E-X` only), IOB1 as CoNLL-2003 was first released (`I-X` opens an entity; `B-X` only right after an `X`
entity, to separate two). The IO scheme (bare types, or `I-` only) decodes as IOB1: it allows everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from utils.tasks.ner.iob import OUTSIDE, split_tag

IOB1, IOB2, IOBES = "IOB1", "IOB2", "IOBES"
SCHEMES = (IOB1, IOB2, IOBES)

CONSTRAINED, ARGMAX = "constrained", "argmax"
DECODINGS = (CONSTRAINED, ARGMAX)


@dataclass(frozen=True)
class Transitions:
    """Which tag may follow which (`allowed[previous, current]`), open a sentence (`first`) or close it (`last`)."""

    allowed: np.ndarray
    first: np.ndarray
    last: np.ndarray


def _may_follow(previous: str, current: str, scheme: str) -> bool:
    prev, prev_type = split_tag(previous)
    cur, cur_type = split_tag(current)
    continues = prev in {"B", "I"} and prev_type == cur_type
    if scheme == IOB2:
        return cur != "I" or continues
    if scheme == IOB1:
        return cur != "B" or continues
    if prev in {"B", "I"} and not (cur in {"I", "E"} and prev_type == cur_type):
        return False  # IOBES: an open entity goes on or ends
    return cur not in {"I", "E"} or continues


def transitions(names: Sequence[str], scheme: str) -> Transitions:
    """The transition rules of `scheme` over the tags `names` (in label-id order)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; one of {', '.join(SCHEMES)}")
    allowed = np.array([[_may_follow(p, c, scheme) for c in names] for p in names], dtype=bool).reshape(
        len(names), len(names)
    )
    first = np.array([_may_follow(OUTSIDE, c, scheme) for c in names], dtype=bool)
    last = np.array([_may_follow(p, OUTSIDE, scheme) for p in names], dtype=bool)
    return Transitions(allowed, first, last)


def is_valid(ids: Sequence[int], rules: Transitions) -> bool:
    """Whether the tag-id sequence obeys `rules`."""
    ids = np.asarray(ids, dtype=np.int64)
    if not len(ids):
        return True
    return bool(rules.first[ids[0]] and rules.last[ids[-1]] and rules.allowed[ids[:-1], ids[1:]].all())


def viterbi(scores: np.ndarray, rules: Transitions) -> np.ndarray:
    """The tag ids maximising the summed `scores` ([words, tags] log-probabilities) among sequences `rules` allow;
    the argmax when no sequence is allowed at all (a label set that cannot express the scheme)."""
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    penalty = np.where(rules.allowed, 0.0, -np.inf)
    best = np.where(rules.first, 0.0, -np.inf) + scores[0]
    back = np.zeros(scores.shape, dtype=np.int64)
    for t in range(1, n):
        candidates = best[:, None] + penalty
        back[t] = candidates.argmax(axis=0)
        best = candidates[back[t], np.arange(scores.shape[1])] + scores[t]
    best = best + np.where(rules.last, 0.0, -np.inf)
    if not np.isfinite(best.max()):
        return scores.argmax(axis=1)
    path = np.empty(n, dtype=np.int64)
    path[-1] = best.argmax()
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Log-probabilities from logits (unchanged, up to rounding, when `scores` are log-probabilities already)."""
    shifted = scores - scores.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class TagDecoder:
    """Word scores -> tag ids: Viterbi under the scheme's rules (`constrained`), or each word's argmax."""

    names: tuple[str, ...]
    scheme: str = IOB2
    decoding: str = CONSTRAINED

    def __post_init__(self) -> None:
        if self.decoding not in DECODINGS:
            raise ValueError(f"unknown decoding {self.decoding!r}; one of {', '.join(DECODINGS)}")
        object.__setattr__(self, "_rules", transitions(self.names, self.scheme))

    @property
    def rules(self) -> Transitions:
        return self._rules  # type: ignore[attr-defined]

    def decode(self, scores: np.ndarray) -> np.ndarray:
        """Tag ids of one sentence from its words' logits or log-probabilities ([words, tags]). Constrained: each
        word's argmax when that sequence is valid (the transitions are hard, so it is then Viterbi's best, and
        most sentences of a trained model take this path), else Viterbi's."""
        scores = np.asarray(scores, dtype=np.float64)
        best = self.valid_argmax(scores)
        return best if best is not None else self.best_path(scores)

    def decode_probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """`decode` from the words' tag probabilities ([words, tags]): their logarithm only when Viterbi runs."""
        best = self.valid_argmax(probabilities)
        return best if best is not None else self.best_path(np.log(np.clip(probabilities, 1e-30, None)))

    def best_path(self, scores: np.ndarray) -> np.ndarray:
        """Viterbi's best sequence the scheme allows, from logits or log-probabilities ([words, tags])."""
        return viterbi(log_softmax(np.asarray(scores, dtype=np.float64)), self.rules)

    def valid_argmax(self, values: np.ndarray) -> np.ndarray | None:
        """Each word's best tag when that is the answer (argmax decoding, or a sequence the scheme allows; no words:
        empty); None when Viterbi must run."""
        if not len(values):
            return np.zeros(0, dtype=np.int64)
        best = values.argmax(axis=-1)
        return best if self.decoding == ARGMAX or is_valid(best, self.rules) else None


def scheme_of(sentences: Iterable[Sequence[str]], names: Sequence[str]) -> str:
    """The scheme gold tags follow: IOBES when there are E-/S- tags; IOB1 (also IO) when more entities open with
    `I-X` than with `B-X` (a stray `I-X` in IOB2 data does not make it IOB1); else IOB2."""
    if any(split_tag(name)[0] in {"E", "S"} for name in names):
        return IOBES
    opened_by_inside = opened_by_begin = 0
    for tags in sentences:
        prev, prev_type = OUTSIDE, ""
        for tag in tags:
            cur, cur_type = split_tag(tag)
            if cur == "B":
                opened_by_begin += 1
            elif cur == "I" and (prev == OUTSIDE or prev_type != cur_type):
                opened_by_inside += 1
            prev, prev_type = cur, cur_type
    return IOB1 if opened_by_inside > opened_by_begin else IOB2


def scheme_of_names(names: Sequence[str]) -> str:
    """A scheme from the tag names alone (a saved model that recorded none): IOBES, IOB1 when there is no `B-`
    tag (IO), else IOB2."""
    prefixes = {split_tag(name)[0] for name in names}
    if prefixes & {"E", "S"}:
        return IOBES
    return IOB2 if "B" in prefixes else IOB1
