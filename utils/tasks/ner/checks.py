"""NER data that would train or score a useless model with exit 0: training without a single entity (a model whose
only label is O, as an annotation export in which no task has a usable span gives), and a validation or test split
none of whose tags is an entity type the model learns."""

from __future__ import annotations

import logging

from datasets import DatasetDict

from utils.core.annotations.records import ANNOTATION_FORMATS
from utils.core.data import file_format
from utils.core.errors import DataError
from utils.core.labels import LabelSpace
from utils.core.splits import split_source
from utils.tasks.ner.iob import OUTSIDE, split_tag

logger = logging.getLogger(__name__)


def entity_tags(tags_per_sentence) -> int:
    """How many tags are not O."""
    return sum(tag != OUTSIDE for tags in tags_per_sentence for tag in tags)


def is_annotation_export(data_args, split: str) -> bool:
    """Whether the split came from an annotation tool's export (where "no entity" means no usable annotation)."""
    source = split_source(data_args, split)
    try:
        return not data_args.dataset_name and file_format(source, data_args.data_format) in ANNOTATION_FORMATS
    except DataError:
        return False


def check_entities_present(raw: DatasetDict, labels: LabelSpace, data_args) -> None:
    """Training without any entity is an error (a model trained on it tags nothing); a validation split without an
    entity of a trained type is one too (its F1 is 0 whatever the model does, so no checkpoint can be chosen by
    it); a test split without one may be meant (counting false alarms on entity-free text): a warning."""
    if "train" in raw and "ner_tags" in raw["train"].column_names and not entity_tags(raw["train"]["ner_tags"]):
        source = split_source(data_args, "train")
        words = sum(len(tags) for tags in raw["train"]["ner_tags"])
        if is_annotation_export(data_args, "train"):
            raise DataError(
                f"none of its {len(raw['train'])} annotated texts has a usable entity span (every one of "
                f"its {words} words would be O, and the model would learn to tag nothing): the "
                "annotations are empty, cancelled, or hold no `labels` spans. Label some entities in "
                "the tool, then export again.",
                source=source,
            )
        raise DataError(
            f"none of its {len(raw['train'])} sentences ({words} words) has an entity: every tag is O, "
            "so the model would learn to tag nothing. Check the tag column (--label_column_name, "
            "--tag_column) or add annotated sentences.",
            source=source,
        )
    for split in [s for s in ("validation", "test") if s in raw and "ner_tags" in raw[s].column_names]:
        if entity_tags(raw[split]["ner_tags"]) or not len(raw[split]):
            continue
        source = split_source(data_args, split)
        types = ", ".join(sorted({split_tag(name)[1] for name in labels.names if name != OUTSIDE}))
        message = (
            f"{split} split: none of its {len(raw[split])} sentences has an entity of a type the model "
            f"learns ({types}), so its entity F1 is 0 whatever the model does"
        )
        if split == "validation":
            raise DataError(
                f"{message}; give validation data with entities of these types (tags never seen in "
                "training were mapped to O if --unknown_labels O was given).",
                source=source,
            )
        logger.warning("%s: %s.", source, message)
