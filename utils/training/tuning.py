"""What trains: LoRA adapters (peft), frozen embeddings or bottom layers, or the head alone; parameter counts.

Everything here works on any encoder with a `base_model_prefix` (BERT, RoBERTa, DeBERTa, DistilBERT, ...): the
task head is whatever lies outside the encoder, and the encoder's layers are its one `ModuleList` of
`num_hidden_layers` blocks.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

from torch import nn
from transformers import PreTrainedModel

from utils.core.arguments import ModelArguments
from utils.core.errors import ConfigError

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")

#: LoRA targets per architecture: every attention and feed-forward projection of the encoder blocks.
LORA_TARGETS = {
    "bert": ("query", "key", "value", "dense"),
    "roberta": ("query", "key", "value", "dense"),
    "xlm-roberta": ("query", "key", "value", "dense"),
    "camembert": ("query", "key", "value", "dense"),
    "electra": ("query", "key", "value", "dense"),
    "mpnet": ("q", "k", "v", "o", "dense"),
    "distilbert": ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
    "deberta": ("in_proj", "dense"),
    "deberta-v2": ("query_proj", "key_proj", "value_proj", "dense"),
    "albert": ("query", "key", "value", "dense", "ffn", "ffn_output"),
}


#: Learning rates for runs that train only a small part of the model, when --learning_rate is not given.
PARTIAL_TRAINING_LR = {"use_peft": 1e-3, "train_head_only": 5e-3}


def encoder(model: PreTrainedModel) -> nn.Module:
    prefix = model.base_model_prefix
    if not prefix or not hasattr(model, prefix):
        raise ConfigError(f"{type(model).__name__} has no separate encoder ({prefix!r}); cannot freeze parts of it.")
    return getattr(model, prefix)


def head_module_names(model: PreTrainedModel) -> list[str]:
    """Top-level modules outside the encoder that hold weights: the task head (e.g. `classifier`)."""
    prefix = model.base_model_prefix
    return [
        name for name, module in model.named_children() if name != prefix and any(True for _ in module.parameters())
    ]


def encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The encoder's stack of transformer blocks, bottom first."""
    count = model.config.num_hidden_layers
    stacks = [
        module for module in encoder(model).modules() if isinstance(module, nn.ModuleList) and len(module) == count
    ]
    if not stacks:
        raise ConfigError(f"Cannot find the {count} encoder layers of {type(model).__name__} to freeze.")
    return stacks[0]


def embedding_module(model: PreTrainedModel) -> nn.Module:
    """The embedding block (word, position and type embeddings with their norm), or the input embeddings alone."""
    base = encoder(model)
    return getattr(base, "embeddings", None) or base.get_input_embeddings()


def freeze(module: nn.Module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad = False


def apply_freezing(model: PreTrainedModel, model_args: ModelArguments) -> None:
    """--train_head_only / --freeze_embeddings / --freeze_layers N; frozen weights get no gradient and no optimizer
    state, so they stay bitwise unchanged (weight decay included: Trainer only optimises trainable weights)."""
    if model_args.train_head_only:
        freeze(encoder(model))
        logger.info("--train_head_only: training %s on a frozen encoder.", head_module_names(model))
        return
    if model_args.freeze_embeddings:
        freeze(embedding_module(model))
    if model_args.freeze_layers:
        layers = encoder_layers(model)
        if model_args.freeze_layers > len(layers):
            raise ConfigError(
                f"--freeze_layers {model_args.freeze_layers}: the model has only {len(layers)} layers "
                "(use --train_head_only to freeze them all)."
            )
        for layer in layers[: model_args.freeze_layers]:
            freeze(layer)


def lora_target_modules(model: PreTrainedModel, model_args: ModelArguments) -> str:
    """A regex naming the encoder's linear layers that get adapters; the head stays out (it trains fully)."""
    if model_args.lora_target_modules:
        names = [name.strip() for name in model_args.lora_target_modules.split(",") if name.strip()]
    elif model.config.model_type in LORA_TARGETS:
        names = list(LORA_TARGETS[model.config.model_type])
    else:
        raise ConfigError(
            f"No default LoRA targets for model type {model.config.model_type!r}: pass "
            "--lora_target_modules with the names of its attention/feed-forward linear layers."
        )
    prefix = model.base_model_prefix
    linear = {
        name.rsplit(".", 1)[-1] for name, module in encoder(model).named_modules() if isinstance(module, nn.Linear)
    }
    unknown = sorted(set(names) - linear)
    if unknown:
        raise ConfigError(
            f"--lora_target_modules {unknown}: no linear layer of the encoder has that name; it has {sorted(linear)}."
        )
    return rf"^{prefix}\..*\.({'|'.join(names)})$"


def apply_lora(model: PreTrainedModel, model_args: ModelArguments, peft_task_type: str):
    """Wrap the model with LoRA adapters on the encoder; the head (modules outside it) trains fully and is saved."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType[peft_task_type],
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=lora_target_modules(model, model_args),
        modules_to_save=head_module_names(model),
    )
    return get_peft_model(model, config)


def prepare_model(model: PreTrainedModel, model_args: ModelArguments, peft_task_type: str):
    """The model as it will train: LoRA-wrapped or partly frozen as asked."""
    if model_args.use_peft:
        return apply_lora(model, model_args, peft_task_type)
    apply_freezing(model, model_args)
    return model


def parameter_counts(model: nn.Module) -> dict[str, Any]:
    """Trainable and total parameters (a LoRA model counts its adapters and head copy as trainable)."""
    total = sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    return {
        "trainable_parameters": trainable,
        "total_parameters": total,
        "trainable_percent": round(100.0 * trainable / total, 4) if total else 0.0,
    }


def describe_training(model_args: ModelArguments, counts: dict[str, Any]) -> list[str]:
    """Model-card lines saying what trained, so a reader knows whether this is a full fine-tune, LoRA or a probe."""
    if model_args.use_peft:
        what = (
            f"LoRA (r={model_args.lora_r}, alpha={model_args.lora_alpha}, dropout={model_args.lora_dropout}, "
            f"targets: {model_args.lora_target_modules or 'the default per architecture'}); the task head trained "
            "fully. The adapter is in `adapter/`"
            + ("; the weights here are the adapter merged into the base model." if model_args.merge_adapter else ".")
        )
    elif model_args.train_head_only:
        what = "the task head only (a linear probe on the frozen encoder)."
    elif model_args.freeze_embeddings or model_args.freeze_layers:
        frozen = ["the embeddings"] * model_args.freeze_embeddings + (
            [f"the bottom {model_args.freeze_layers} encoder layers"] if model_args.freeze_layers else []
        )
        what = f"every weight except {' and '.join(frozen)}."
    else:
        what = "every weight (full fine-tuning)."
    lines = [f"- Trained: {what}"]
    if "trainable_parameters" in counts:
        lines.append(
            f"- Trainable parameters: {counts['trainable_parameters']:,} of {counts['total_parameters']:,} "
            f"({counts['trainable_percent']:.2f}%)."
        )
    return lines


def is_peft_model(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def save_adapter_outputs(model, output_dir: str, merge: bool) -> list[str]:
    """Adapter to output_dir/adapter; with `merge`, the merged full model in output_dir (loads without peft, so
    the adapter files `Trainer` left there are moved away). Returns what was written."""
    adapter_dir = os.path.join(output_dir, ADAPTER_DIR)
    if os.path.isdir(adapter_dir):
        shutil.rmtree(adapter_dir)
    model.save_pretrained(adapter_dir)
    written = [adapter_dir]
    if merge:
        for name in ADAPTER_FILES:
            path = os.path.join(output_dir, name)
            if os.path.exists(path):
                os.remove(path)
        merged = model.merge_and_unload()
        merged.save_pretrained(output_dir)
        written.append(output_dir)
    return written
