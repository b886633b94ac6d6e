"""How unsure an NER model is about a sentence, for choosing what to label next.

The measure is the token-level **margin**: for each word, the probability of its best tag minus that of the
runner-up (from the word's first subword, as its tag is predicted); a sentence's uncertainty is 1 minus its
smallest margin, so the sentence holding the single most contested word ranks first. Margin rather than entropy:
entropy over all tags also rises when probability leaks to tags that were never in contention, while margin
measures exactly the decision an annotator would correct (B-ORG or B-LOC?). The minimum rather than a sum or mean:
sums favour long sentences (more to label per sentence) and means dilute one uncertain entity among many sure `O`s.
"""

from __future__ import annotations

from collections.abc import Sequence


def sentence_uncertainty(margins: Sequence[float]) -> float:
    """1 - the smallest word margin, in [0, 1]; 0 for a sentence without words (nothing to label)."""
    return round(1.0 - min(margins), 6) if len(margins) else 0.0
