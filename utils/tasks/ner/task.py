"""The NER task: its pieces, handed to the shared code as one `Task` record (the token or span head: heads.py)."""

from __future__ import annotations

from utils.core.examples import TEXT, TOKENS
from utils.core.task import PROJECT_ROOT, Task, TaskData, TaskDistillation, TaskServing, TaskTraining
from utils.tasks.ner import heads
from utils.tasks.ner.arguments import NerDataArguments
from utils.tasks.ner.calibration import NER_CALIBRATION, abstain_entities
from utils.tasks.ner.distillation import ner_soft_labels, ner_word_logits, read_ner_unlabelled
from utils.tasks.ner.encoding import prefix_space_kwargs
from utils.tasks.ner.model import token_loss
from utils.tasks.ner.outputs import PREDICTION_FILES, ner_card_details
from utils.tasks.ner.predict import NerPredictionOptions, ner_decisions, ner_label_names, ner_predictor
from utils.tasks.ner.span_model import NerAutoModel
from utils.tasks.ner.spans import ner_annotation
from utils.tasks.ner.tag_decoding import word_log_probabilities

NER_TASK = Task(
    name="ner",
    script="run_ner.py",
    pipeline_tag="token-classification",
    sample_config=str(PROJECT_ROOT / "configs/ner/sample.yaml"),
    training_defaults={"output_dir": "outputs/ner"},
    data=TaskData(
        arguments=NerDataArguments,
        load=heads.load,
        build_labels=heads.build_labels,
        check_labels=heads.check_labels,
        encode=heads.encode,
        tokenizer_kwargs=prefix_space_kwargs,
    ),
    training=TaskTraining(
        auto_model=NerAutoModel,
        peft_task_type="TOKEN_CLS",
        token_outputs=True,
        collator=heads.collator,
        reduce_logits=word_log_probabilities,
        decode=heads.decode,
        score=heads.score,
        write_predictions=heads.write_predictions,
        prediction_files=PREDICTION_FILES,
        model_class=heads.model_class,
        model_overrides=heads.overrides,
        loss=token_loss,
        card_details=ner_card_details,
        best_metric=lambda data: ("f1", True),
        distillation=TaskDistillation(
            ner_word_logits, ner_soft_labels, read_ner_unlabelled, check=heads.check_distillation
        ),
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
