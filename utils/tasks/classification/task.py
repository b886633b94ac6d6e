"""The classification task: its pieces, handed to the shared pipeline as one `Task` record."""

from __future__ import annotations

import logging

from utils.core.task import PROJECT_ROOT, Task
from utils.tasks.classification.arguments import ClassificationDataArguments
from utils.tasks.classification.data import load_classification_data
from utils.tasks.classification.encoding import classification_collator, encode_classification
from utils.tasks.classification.labels import build_classification_labels, check_classification_labels
from utils.tasks.classification.metrics import best_classification_metric, keep_logits, score_classification
from utils.tasks.classification.model import build_classification_model, classification_loss, problem_type_override
from utils.tasks.classification.outputs import (
    classification_card_details,
    decode_classification,
    write_classification_predictions,
)
from utils.tasks.classification.sentence_embedding import SequenceClassifier

logger = logging.getLogger(__name__)

CLASSIFICATION_TASK = Task(
    name="classification",
    pipeline_tag="text-classification",
    auto_model=SequenceClassifier,
    data_arguments=ClassificationDataArguments,
    sample_config=str(PROJECT_ROOT / "configs/classification/sample.yaml"),
    training_defaults={"output_dir": "outputs/classification"},
    load=load_classification_data,
    build_labels=build_classification_labels,
    check_labels=check_classification_labels,
    encode=encode_classification,
    collator=classification_collator,
    reduce_logits=keep_logits,
    decode=decode_classification,
    score=score_classification,
    write_predictions=write_classification_predictions,
    model_overrides=problem_type_override,
    loss=classification_loss,
    card_details=classification_card_details,
    best_metric=best_classification_metric,
    build_model=build_classification_model,
)

