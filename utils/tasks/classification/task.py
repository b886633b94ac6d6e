"""The classification task: its pieces, handed to the shared code as one `Task` record."""

from __future__ import annotations

from utils.core.examples import PAIR, TEXT
from utils.core.task import PROJECT_ROOT, Task, TaskData, TaskDistillation, TaskServing, TaskTraining
from utils.tasks.classification.arguments import ClassificationDataArguments, check_classification_arguments
from utils.tasks.classification.calibration import CLASSIFICATION_CALIBRATION, abstain_classification
from utils.tasks.classification.choices import classification_annotation
from utils.tasks.classification.data import load_classification_data
from utils.tasks.classification.distillation import (
    check_classification_distillation,
    read_classification_unlabelled,
    text_logits,
    text_soft_labels,
)
from utils.tasks.classification.encoding import classification_collator, encode_classification, truncation_kwargs
from utils.tasks.classification.labels import build_classification_labels, check_classification_labels
from utils.tasks.classification.metrics import best_classification_metric, keep_logits, score_classification
from utils.tasks.classification.model import classification_loss, classification_model_class, problem_type_override
from utils.tasks.classification.outputs import (
    PREDICTION_FILES,
    classification_card_details,
    decode_classification,
    write_classification_predictions,
)
from utils.tasks.classification.predict import (
    ClassificationPredictionOptions,
    classification_decisions,
    classification_label_names,
    classification_predictor,
)
from utils.tasks.classification.sentence_embedding import SequenceClassifier
from utils.tasks.classification.stages import classification_stages

CLASSIFICATION_TASK = Task(
    name="classification",
    script="run_classification.py",
    pipeline_tag="text-classification",
    sample_config=str(PROJECT_ROOT / "configs/classification/sample.yaml"),
    training_defaults={"output_dir": "outputs/classification"},
    data=TaskData(
        arguments=ClassificationDataArguments,
        load=load_classification_data,
        build_labels=build_classification_labels,
        check_labels=check_classification_labels,
        encode=encode_classification,
        check_arguments=check_classification_arguments,
        tokenizer_kwargs=truncation_kwargs,
    ),
    training=TaskTraining(
        auto_model=SequenceClassifier,
        peft_task_type="SEQ_CLS",
        token_outputs=False,
        collator=classification_collator,
        reduce_logits=keep_logits,
        decode=decode_classification,
        score=score_classification,
        write_predictions=write_classification_predictions,
        prediction_files=PREDICTION_FILES,
        model_class=classification_model_class,
        model_overrides=problem_type_override,
        loss=classification_loss,
        stages=classification_stages,
        card_details=classification_card_details,
        best_metric=best_classification_metric,
        distillation=TaskDistillation(
            text_logits, text_soft_labels, read_classification_unlabelled, check_classification_distillation
        ),
    ),
    serving=TaskServing(
        options=ClassificationPredictionOptions,
        input_kinds=frozenset({TEXT, PAIR}),
        predictor=classification_predictor,
        label_names=classification_label_names,
        decisions=classification_decisions,
        decision_unit="text",
        architecture_suffix="ForSequenceClassification",
        abstain=abstain_classification,
        annotation=classification_annotation,
    ),
    calibration=CLASSIFICATION_CALIBRATION,
)
