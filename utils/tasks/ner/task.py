"""The NER task: its pieces, handed to the shared code as one `Task` record."""

from __future__ import annotations

from transformers import AutoModelForTokenClassification

from utils.core.examples import TEXT, TOKENS
from utils.core.task import PROJECT_ROOT, Task, TaskData, TaskServing, TaskTraining
from utils.tasks.ner.arguments import NerDataArguments
from utils.tasks.ner.calibration import NER_CALIBRATION, abstain_entities
from utils.tasks.ner.data import load_ner_data
from utils.tasks.ner.encoding import encode_ner, ner_collator, prefix_space_kwargs
from utils.tasks.ner.labels import build_ner_labels, check_ner_labels
from utils.tasks.ner.metrics import argmax_logits, score_ner
from utils.tasks.ner.model import context_override, token_loss
from utils.tasks.ner.outputs import PREDICTION_FILES, decode_ner, ner_card_details, write_ner_predictions
from utils.tasks.ner.predict import NerPredictionOptions, ner_decisions, ner_label_names, ner_predictor
from utils.tasks.ner.spans import ner_annotation

NER_TASK = Task(
    name="ner",
    script="run_ner.py",
    pipeline_tag="token-classification",
    sample_config=str(PROJECT_ROOT / "configs/ner/sample.yaml"),
    training_defaults={"output_dir": "outputs/ner"},
    data=TaskData(
        arguments=NerDataArguments,
        load=load_ner_data,
        build_labels=build_ner_labels,
        check_labels=check_ner_labels,
        encode=encode_ner,
        tokenizer_kwargs=prefix_space_kwargs,
    ),
    training=TaskTraining(
        auto_model=AutoModelForTokenClassification,
        peft_task_type="TOKEN_CLS",
        token_outputs=True,
        collator=ner_collator,
        reduce_logits=argmax_logits,
        decode=decode_ner,
        score=score_ner,
        write_predictions=write_ner_predictions,
        prediction_files=PREDICTION_FILES,
        model_overrides=context_override,
        loss=token_loss,
        card_details=ner_card_details,
        best_metric=lambda data: ("f1", True),
    ),
    serving=TaskServing(
        options=NerPredictionOptions,
        input_kinds=frozenset({TEXT, TOKENS}),
        predictor=ner_predictor,
        label_names=ner_label_names,
        decisions=ner_decisions,
        decision_unit="word",
        architecture_suffix="ForTokenClassification",
        abstain=abstain_entities,
        annotation=ner_annotation,
    ),
    calibration=NER_CALIBRATION,
)
