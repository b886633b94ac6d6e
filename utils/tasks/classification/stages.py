"""Classification's own stages, run by the shared pipeline before its train stage (`TaskTraining.stages`):

- zero-shot: the mean-pooling classifier's head is set from the label descriptions' embeddings; the model is
  finished without training, so the pipeline saves it (`produces_model`);
- contrastive few-shot: SetFit-style pair training of the encoder through `Trainer`, then a logistic-regression head
  (utils/tasks/classification/few_shot.py); the train stage then fits only the head;
- any few-shot run: few_shot_sample.json records which training rows were used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from utils.core.task import LoadedData, StageContext, TaskStage
from utils.tasks.classification.few_shot import fit_contrastive_model, set_head, write_sample_record
from utils.tasks.classification.zero_shot import descriptions_for, read_label_descriptions, zero_shot_head


def zero_shot_stage(context: StageContext) -> Mapping[str, Any]:
    """The head from the label descriptions; the descriptions are saved in the config (what the head was made of)."""
    data_args, model = context.data.args, context.model
    given = read_label_descriptions(data_args.label_descriptions) if data_args.label_descriptions else {}
    descriptions = descriptions_for(context.labels, given)
    set_head(model, *zero_shot_head(model, context.tokenizer, descriptions, data_args.max_seq_length))
    model.config.label_descriptions = descriptions
    return {}


def contrastive_stage(context: StageContext) -> Mapping[str, Any]:
    """Contrastive training of the encoder on the K-shot sample, a fitted head, and the sample's record."""
    data_args, args = context.data.args, context.training_args
    context.model.to(args.device)
    stats = fit_contrastive_model(
        context.model,
        context.tokenizer,
        context.data.raw["train"],
        context.labels,
        data_args,
        data_args.few_shot_seed,
        args,
    )
    if args.should_save:
        write_sample_record(args.output_dir, context.data.raw["train"], data_args, stats)
    return {}


def sample_record_stage(context: StageContext) -> Mapping[str, Any]:
    """Few-shot fine-tuning: the record of the K-shot sample."""
    if context.training_args.should_save:
        write_sample_record(context.training_args.output_dir, context.data.raw["train"], context.data.args)
    return {}


def classification_stages(data: LoadedData) -> Sequence[TaskStage]:
    """The stages this run's options call for."""
    if data.args.zero_shot:
        return (TaskStage("zero_shot_head", zero_shot_stage, produces_model=True),)
    if data.args.contrastive:
        return (TaskStage("contrastive", contrastive_stage),)
    if data.args.few_shot_k:
        return (TaskStage("few_shot_sample", sample_record_stage),)
    return ()
