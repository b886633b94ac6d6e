"""What NER adds to the shared model and loss: the document context kept in the config, token cross-entropy."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from datasets import DatasetDict

from utils.core.labels import LabelSpace
from utils.core.losses import SINGLE as SINGLE_LABEL
from utils.core.losses import make_loss
from utils.tasks.ner.arguments import NerDataArguments

logger = logging.getLogger(__name__)


def token_loss(raw, labels: LabelSpace, data_args: NerDataArguments, training_args) -> Callable:
    """Cross-entropy over labelled tokens (see utils/core/losses.py for why ours and not the model's)."""
    return make_loss(SINGLE_LABEL, label_smoothing=training_args.label_smoothing_factor)


def context_override(raw: DatasetDict, labels: LabelSpace, data_args: NerDataArguments) -> dict[str, Any]:
    """The model remembers the document context it was trained with, so `Predictor` (predict.py) uses the same."""
    return {"context_size": data_args.context_size}

