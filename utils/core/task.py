"""What a task plugs into the shared pipeline: functions, not a class hierarchy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The checkout's root: the zero-argument runs' recipes and sample data are found from here, not the working dir.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Task:
    """The task-specific pieces; everything else (arguments, loading, training, serving, outputs) is shared, and
    reaches what a task knows only through this record: no shared module compares task names.

    Signatures (raw = the task's canonical `DatasetDict`/`Dataset`, labels = `LabelSpace`):
      load(data_args, model_args) -> (raw, data_args)             files/Hub -> canonical, validated splits, and the
                                                                  data arguments with what loading settled (e.g. the
                                                                  detected problem type); the input is not changed
      check_arguments(data_args, training_args, given) -> None    task-specific refusals, before any data is loaded
      writes_model_without_training(data_args) -> bool            a run that saves a model with no train stage
      build_labels(raw, data_args, model_config) -> labels        label order (training data, --label_list, model)
      check_labels(raw, labels, data_args) -> raw                 eval/test labels unseen in training
      encode(split, tokenizer, labels, data_args) -> features     tokenized model inputs
      collator(tokenizer, data_args) -> data collator
      reduce_logits(logits, labels) -> what evaluation keeps       `preprocess_logits_for_metrics`
      decode(predictions, features, raw_split, labels, data_args) -> per-example predictions
      score(decoded, raw_split, labels, data_args) -> (metrics, report text)
      write_predictions(output_dir, raw_split, decoded, labels, data_args) -> written file names (of
          `prediction_files`)
      tokenizer_kwargs(config, data_args or None) -> tokenizer settings (None: loading a saved model to predict)
      model_overrides(raw, labels, data_args) -> config attributes for the model (e.g. problem_type)
      loss(raw, labels, data_args, training_args) -> `compute_loss_func` for `Trainer`, or None
      card_details(raw, labels, data_args) -> extra model-card lines
      best_metric(raw, data_args) -> (metric name, greater is better), the default --metric_for_best_model
      build_model(model_args, labels, config, raw, data_args, training_args, tokenizer, overrides) -> model, or None
          for the shared `utils.core.modeling.load_model` (a task that builds its model differently, e.g. few-shot)
      predictor(forward, tokenizer, config, labels, **options) -> the task's prediction object, with `predict`,
          `predict_tokens`, `tag_words` and `whole_documents` (see utils/serving/predictor.py): `forward` runs the
          model (rows of token ids -> logits, in length batches), `labels` are the saved model's, `options` the
          user's settings by name (max_seq_length, stride, threshold, context_size; None: the task's default), of
          which each task takes its own

      annotation(result) -> `AnnotatedText` (utils/core/annotations/records.py): one of the prediction object's
          results as a tool-neutral pre-annotation (spans or choices, with scores), which predict.py writes for
          Label Studio or doccano; None: the task's predictions cannot be pre-annotations
      The prediction object's `predict`/`predict_tokens` take `uncertainty=True` to add each result's
      `"uncertainty"` in [0, 1] (the task's measure, for choosing what to label next: predict.py --select_uncertain).

    `takes_words`: the task's models tag words, so predict.py's input reading (utils/serving/inputs.py) takes
    pre-split words for them (CoNLL files, JSONL `tokens` lists) besides texts, and refuses sentence pairs.
    """

    name: str
    script: str  # the entry script, as the model card's command names it
    pipeline_tag: str
    peft_task_type: str  # peft's `TaskType` for LoRA adapters on this task's models
    architecture_suffix: str  # saved models of this task have an architecture name ending so: how serving knows them
    token_outputs: bool  # one output per token: training batches can be packed (utils/core/packing.py)
    auto_model: Any
    data_arguments: type
    sample_config: str  # the zero-argument run's recipe: shipped sample data and settings that suit it
    training_defaults: Mapping[str, Any]
    prediction_files: tuple[str, ...]  # every file `write_predictions` may write (a rerun's --overwrite removes them)
    load: Callable
    build_labels: Callable
    check_labels: Callable
    encode: Callable
    collator: Callable
    reduce_logits: Callable
    decode: Callable
    score: Callable
    write_predictions: Callable
    report_file: str = "classification_report.txt"  # per-label report of each scored split (seqeval/sklearn name)
    check_arguments: Callable = field(default=lambda data_args, training_args, given: None)
    writes_model_without_training: Callable = field(default=lambda data_args: False)
    tokenizer_kwargs: Callable = field(default=lambda config, data_args=None: {})
    model_overrides: Callable = field(default=lambda raw, labels, data_args: {})
    loss: Callable = field(default=lambda raw, labels, data_args, training_args: None)
    card_details: Callable = field(default=lambda raw, labels, data_args: [])
    best_metric: Callable = field(default=lambda raw, data_args: ("loss", False))
    build_model: Callable | None = None
    predictor: Callable | None = None
    annotation: Callable | None = None
    takes_words: bool = False  # its models tag words (pre-split input, no sentence pairs): see above
