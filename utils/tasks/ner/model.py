"""What NER adds to the shared model and loss: the document context and tag decoding kept in the config, token
cross-entropy."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from utils.core.labels import LabelSpace
from utils.core.losses import SINGLE as SINGLE_LABEL
from utils.core.losses import make_loss
from utils.core.task import LoadedData
from utils.tasks.ner.tag_decoding import decoder_overrides

logger = logging.getLogger(__name__)


def token_loss(data: LoadedData, labels: LabelSpace, training_args) -> Callable:
    """Cross-entropy over labelled tokens (see utils/core/losses.py for why ours and not the model's)."""
    return make_loss(SINGLE_LABEL, label_smoothing=training_args.label_smoothing_factor)


def context_override(data: LoadedData, labels: LabelSpace) -> dict[str, Any]:
    """The model remembers the document context it was trained with, so `Predictor` (predict.py) uses the same."""
    return {"context_size": data.args.context_size, **decoder_overrides(data, labels)}
