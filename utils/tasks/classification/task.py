"""The classification task: its pieces, handed to the shared pipeline as one `Task` record."""

from __future__ import annotations

import logging

from utils.core.task import PROJECT_ROOT, Task
from utils.tasks.classification.arguments import (
    ClassificationDataArguments,
    check_classification_arguments,
    writes_model_without_training,
)
from utils.tasks.classification.choices import classification_annotation
from utils.tasks.classification.data import load_classification_data
from utils.tasks.classification.encoding import classification_collator, encode_classification, truncation_kwargs
from utils.tasks.classification.labels import build_classification_labels, check_classification_labels
from utils.tasks.classification.metrics import best_classification_metric, keep_logits, score_classification
from utils.tasks.classification.model import build_classification_model, classification_loss, problem_type_override
from utils.tasks.classification.outputs import (
    PREDICTION_FILES,
    classification_card_details,
    decode_classification,
    write_classification_predictions,
)
from utils.tasks.classification.predict import classification_predictor
from utils.tasks.classification.sentence_embedding import SequenceClassifier

logger = logging.getLogger(__name__)

CLASSIFICATION_TASK = Task(
    name="classification",
    script="run_classification.py",
    pipeline_tag="text-classification",
    peft_task_type="SEQ_CLS",
    architecture_suffix="ForSequenceClassification",
    token_outputs=False,
    auto_model=SequenceClassifier,
    data_arguments=ClassificationDataArguments,
    sample_config=str(PROJECT_ROOT / "configs/classification/sample.yaml"),
    training_defaults={"output_dir": "outputs/classification"},
    prediction_files=PREDICTION_FILES,
    load=load_classification_data,
    check_arguments=check_classification_arguments,
    writes_model_without_training=writes_model_without_training,
    tokenizer_kwargs=truncation_kwargs,
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
    predictor=classification_predictor,
    annotation=classification_annotation,
)

