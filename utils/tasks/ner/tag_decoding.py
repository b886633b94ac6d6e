"""Where constrained decoding (utils/tasks/ner/decoding.py) meets a run and a saved model: the decoder of a run's
data, what the model config keeps of it for predict.py, and the per-word scores evaluation decodes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from utils.core.errors import ConfigError
from utils.core.labels import LabelSpace
from utils.core.task import LoadedData
from utils.tasks.ner.alignment import gather_word_predictions
from utils.tasks.ner.decoding import CONSTRAINED, DECODINGS, TagDecoder, scheme_of, scheme_of_names

logger = logging.getLogger(__name__)

#: Model-config keys: the scheme of the training tags, and the decoding the model was evaluated with.
SCHEME_KEY, DECODING_KEY = "tag_scheme", "tag_decoding"


def data_scheme(data: LoadedData, labels: LabelSpace) -> str:
    """The scheme of the run's gold tags (the training split's, else every labelled split's), else of the names."""
    raw = data.raw
    splits = ["train"] if "train" in raw else [s for s in raw if "ner_tags" in raw[s].column_names]
    sentences = [tags for split in splits if "ner_tags" in raw[split].column_names for tags in raw[split]["ner_tags"]]
    return scheme_of(sentences, labels.names) if sentences else scheme_of_names(labels.names)


def run_decoder(data: LoadedData, labels: LabelSpace) -> TagDecoder:
    """The decoder evaluation and a run's prediction files use (--decoding, the data's scheme)."""
    decoder = TagDecoder(labels.names, data_scheme(data, labels), data.args.decoding)
    logger.info("Word tags: %s decoding (%s scheme).", decoder.decoding, decoder.scheme)
    return decoder


def decoder_overrides(data: LoadedData, labels: LabelSpace) -> dict[str, Any]:
    """What the saved config keeps, so predict.py and serve.py decode as evaluation did."""
    return {SCHEME_KEY: data_scheme(data, labels), DECODING_KEY: data.args.decoding}


def saved_decoder(config: Any, labels: LabelSpace, decoding: str | None) -> TagDecoder:
    """A saved model's decoder: `decoding` if given, else the config's, else constrained (models saved before it
    was recorded); the scheme its config records, else read from its tag names."""
    chosen = decoding or getattr(config, DECODING_KEY, None) or CONSTRAINED
    if chosen not in DECODINGS:
        raise ConfigError(f"--decoding must be one of {', '.join(DECODINGS)}, got {chosen!r}.")
    scheme = getattr(config, SCHEME_KEY, None) or scheme_of_names(labels.names)
    return TagDecoder(labels.names, scheme, chosen)


def word_log_probabilities(logits: torch.Tensor | tuple, labels: torch.Tensor | None = None) -> torch.Tensor:
    """`preprocess_logits_for_metrics`: each token's log-probabilities, what constrained decoding needs (float32)."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.float().log_softmax(dim=-1)


def gather_word_scores(
    predictions: np.ndarray,
    word_index: Sequence[Sequence[int]],
    example_index: Sequence[int],
    words_per_example: Sequence[int],
) -> list[np.ndarray]:
    """Per-sentence [words, tags] scores from per-window, per-token scores ([windows, positions, tags])."""
    windows, positions, n_tags = predictions.shape
    flat = predictions.reshape(-1, n_tags)
    rows = [range(w * positions, (w + 1) * positions) for w in range(windows)]
    where = gather_word_predictions(rows, word_index, example_index, words_per_example)
    return [flat[np.asarray(indices, dtype=np.int64)].reshape(len(indices), n_tags) for indices in where]
