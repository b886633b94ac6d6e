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
    """The task-specific pieces; everything else (arguments, loading, training, outputs) is shared.

    Signatures (raw = the task's canonical `DatasetDict`/`Dataset`, labels = `LabelSpace`):
      load(data_args, model_args) -> raw                         files/Hub -> canonical, validated splits
      build_labels(raw, data_args, model_config) -> labels        label order (training data, --label_list, model)
      check_labels(raw, labels, data_args) -> raw                 eval/test labels unseen in training
      encode(split, tokenizer, labels, data_args) -> features     tokenized model inputs
      collator(tokenizer, data_args) -> data collator
      decode(predictions, features, raw_split, labels, data_args) -> per-example predictions
      score(decoded, raw_split, labels, data_args) -> (metrics, report text)
      write_predictions(output_dir, raw_split, decoded, labels, data_args) -> written file names
      model_overrides(raw, labels, data_args) -> config attributes for the model (e.g. problem_type)
      loss(raw, labels, data_args, training_args) -> `compute_loss_func` for `Trainer`, or None
      card_details(raw, labels, data_args) -> extra model-card lines
      best_metric(raw, data_args) -> (metric name, greater is better), the default --metric_for_best_model
      build_model(model_args, labels, config, raw, data_args, training_args, tokenizer, overrides) -> model, or None
          for the shared `utils.core.modeling.load_model` (a task that builds its model differently, e.g. few-shot)
    """

    name: str
    pipeline_tag: str
    auto_model: Any
    data_arguments: type
    sample_config: str  # the zero-argument run's recipe: shipped sample data and settings that suit it
    training_defaults: Mapping[str, Any]
    load: Callable
    build_labels: Callable
    check_labels: Callable
    encode: Callable
    collator: Callable
    reduce_logits: Callable
    decode: Callable
    score: Callable
    write_predictions: Callable
    tokenizer_kwargs: Callable = field(default=lambda config: {})
    model_overrides: Callable = field(default=lambda raw, labels, data_args: {})
    loss: Callable = field(default=lambda raw, labels, data_args, training_args: None)
    card_details: Callable = field(default=lambda raw, labels, data_args: [])
    best_metric: Callable = field(default=lambda raw, data_args: ("loss", False))
    build_model: Callable | None = None
