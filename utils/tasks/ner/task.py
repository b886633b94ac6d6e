"""The NER task: its pieces, handed to the shared pipeline as one `Task` record."""

from __future__ import annotations

import logging

from transformers import AutoModelForTokenClassification

from utils.core.task import PROJECT_ROOT, Task
from utils.tasks.ner.arguments import NerDataArguments
from utils.tasks.ner.data import load_ner_data
from utils.tasks.ner.encoding import encode_ner, ner_collator, prefix_space_kwargs
from utils.tasks.ner.labels import build_ner_labels, check_ner_labels
from utils.tasks.ner.metrics import argmax_logits, score_ner
from utils.tasks.ner.model import context_override, token_loss
from utils.tasks.ner.outputs import PREDICTION_FILES, decode_ner, ner_card_details, write_ner_predictions
from utils.tasks.ner.predict import ner_predictor
from utils.tasks.ner.spans import ner_annotation

logger = logging.getLogger(__name__)

NER_TASK = Task(
    name="ner",
    script="run_ner.py",
    pipeline_tag="token-classification",
    peft_task_type="TOKEN_CLS",
    architecture_suffix="ForTokenClassification",
    token_outputs=True,
    auto_model=AutoModelForTokenClassification,
    data_arguments=NerDataArguments,
    sample_config=str(PROJECT_ROOT / "configs/ner/sample.yaml"),
    training_defaults={"output_dir": "outputs/ner"},
    prediction_files=PREDICTION_FILES,
    load=load_ner_data,
    build_labels=build_ner_labels,
    check_labels=check_ner_labels,
    encode=encode_ner,
    collator=ner_collator,
    reduce_logits=argmax_logits,
    decode=decode_ner,
    score=score_ner,
    write_predictions=write_ner_predictions,
    tokenizer_kwargs=prefix_space_kwargs,
    loss=token_loss,
    card_details=ner_card_details,
    model_overrides=context_override,
    best_metric=lambda raw, data_args: ("f1", True),
    predictor=ner_predictor,
    annotation=ner_annotation,
    takes_words=True,
)

