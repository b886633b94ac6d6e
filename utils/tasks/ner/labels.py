"""NER's label space (O first, then by type, B before I) and the check of dev/test tags against it."""

from __future__ import annotations

import logging

from datasets import DatasetDict

from utils.core.errors import DataError
from utils.core.labels import LabelSpace, run_label_space, unseen_labels
from utils.core.task import LoadedData
from utils.tasks.ner.checks import check_entities_present
from utils.tasks.ner.data import word_location
from utils.tasks.ner.iob import OUTSIDE, split_tag

logger = logging.getLogger(__name__)

PREFIX_ORDER = {"B": 0, "I": 1, "E": 2, "S": 3}


def ner_label_key(tag: str) -> tuple:
    """O first, then by entity type, B before I."""
    prefix, entity_type = split_tag(tag)
    return (tag != OUTSIDE, entity_type, PREFIX_ORDER.get(prefix, 9), tag)


def build_ner_labels(data: LoadedData, config) -> LabelSpace:
    """Labels from the training tags (or the fine-tuned model when there is no training split)."""
    raw, data_args = data.raw, data.args
    seen = {tag for tags in raw["train"]["ner_tags"] for tag in tags} if "train" in raw else None
    return run_label_space(seen, data_args.label_names, config, sort_key=ner_label_key)


def check_ner_labels(data: LoadedData, labels: LabelSpace) -> DatasetDict:
    """Validation/test tags the model cannot predict: an error naming where, or mapped to O on request."""
    raw, data_args = data.raw, data.args
    for split in [s for s in ("validation", "test") if s in raw and "ner_tags" in raw[s].column_names]:
        count, summary = unseen_labels(raw[split]["ner_tags"], raw[split]["location"], labels, locate=word_location)
        if not count:
            continue
        if data_args.unknown_labels != OUTSIDE:
            raise DataError(
                f"{split} tags never seen in training: {summary}. Fix the data, add them to the "
                "training data, or pass --unknown_labels O to map them to O."
            )
        logger.warning("%s: mapped %d tags never seen in training to O: %s", split, count, summary)
        raw[split] = raw[split].map(
            lambda row: {"ner_tags": [tag if tag in labels else OUTSIDE for tag in row["ner_tags"]]}
        )
    check_entities_present(raw, labels, data_args)
    return raw
