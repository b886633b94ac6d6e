"""Students built by layer selection (--student_layers): the encoder keeps N of its layers, evenly spaced, with
their trained weights, as DistilBERT initialised its student from every other layer of BERT. Everything else
(embeddings, a fine-tuned teacher's head) is kept, so a student built from a fine-tuned teacher starts close to it.
The config says the new depth, so the saved student reloads as an ordinary model of its architecture."""

from __future__ import annotations

import dataclasses
import logging

from torch import nn

from utils.core.arguments import ModelArguments
from utils.core.errors import ConfigError

logger = logging.getLogger(__name__)


def evenly_spaced(total: int, keep: int) -> list[int]:
    """`keep` of `total` layer indices, evenly spaced, always the last (the one the head was trained on) and, for
    two or more, the first: 6 -> 3 keeps [0, 3, 5], 6 -> 2 keeps [0, 5], 12 -> 6 keeps [0, 2, 4, 7, 9, 11]."""
    if not 1 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total} layers")
    if keep == 1:
        return [total - 1]
    return [int(i * (total - 1) / (keep - 1) + 0.5) for i in range(keep)]


def layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The encoder's stack of layers: the module list as long as the config's `num_hidden_layers`."""
    depth = model.config.num_hidden_layers
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == depth]
    if not found:  # e.g. ALBERT: one group of layers applied `depth` times, nothing to keep a subset of
        raise ConfigError(
            f"--student_layers: {type(model).__name__} has no stack of {depth} separate layers (ALBERT's, for one, "
            "are shared across depth); give a smaller model as the student with --model instead."
        )
    if len(found) > 1:
        raise ConfigError(
            f"--student_layers: {type(model).__name__} has {len(found)} stacks of {depth} layers "
            f"({[name for name, _ in found]}), not one encoder; give a smaller model as the student with --model."
        )
    return found[0]


def keep_layers(model: nn.Module, keep: int | None) -> nn.Module:
    """The model with only `evenly_spaced` layers of its encoder (`keep` None: unchanged)."""
    if keep is None:
        return model
    config = model.config
    total = config.num_hidden_layers
    if keep > total:
        raise ConfigError(f"--student_layers {keep}: the model has only {total} layers.")
    kept = evenly_spaced(total, keep)
    name, layers = layer_list(model)
    model.set_submodule(name, nn.ModuleList([layers[i] for i in kept]))
    for new_index, layer in enumerate(model.get_submodule(name)):
        for module in layer.modules():  # caches and per-layer settings are indexed by position in the stack
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_index
    config.num_hidden_layers = keep
    if isinstance(getattr(config, "layer_types", None), list) and len(config.layer_types) == total:
        config.layer_types = [config.layer_types[i] for i in kept]
    logger.info("Student: layers %s of %d kept (--student_layers %d).", kept, total, keep)
    return model


def student_model_args(
    model_args: ModelArguments, teacher: str | None, keep: int | None, given: set[str]
) -> ModelArguments:
    """--student_layers without --model builds the student from the teacher."""
    if keep is None or teacher is None or "model_name_or_path" in given:
        return model_args
    logger.info("--student_layers %d without --model: the student is built from the teacher %s.", keep, teacher)
    return dataclasses.replace(model_args, model_name_or_path=teacher)
