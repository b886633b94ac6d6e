"""How unsure a classifier is about a text, for choosing what to label next: the **entropy** of its predicted
distribution, divided by its largest possible value so that it lies in [0, 1] whatever the number of labels
(single-label: over the softmax; multi-label: the mean of each label's binary entropy, since the labels are
independent decisions). Entropy uses every label's probability, not only the top two: for a text split among three
labels it is higher than for one split between two, and it is the standard measure for classification.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from utils.core.errors import ConfigError
from utils.core.losses import MULTI, REGRESSION


def binary_entropy(p: float) -> float:
    """Entropy of one yes/no decision, in bits (0 to 1)."""
    return 0.0 if p <= 0.0 or p >= 1.0 else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def text_uncertainty(probabilities: Mapping[str, float], problem_type: str) -> float:
    """Normalised entropy of one result's label probabilities; 0 for a blank text (no probabilities)."""
    if problem_type == REGRESSION:
        raise ConfigError(
            "a regression model has no label distribution to be uncertain about; --select_uncertain "
            "needs a classification or NER model."
        )
    values = list(probabilities.values())
    if not values:
        return 0.0
    if problem_type == MULTI:
        return round(sum(binary_entropy(p) for p in values) / len(values), 6)
    if len(values) < 2:
        return 0.0
    entropy = -sum(p * math.log(p) for p in values if p > 0)
    return round(min(1.0, entropy / math.log(len(values))), 6)
