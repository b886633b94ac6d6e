"""Padding-free training batches for token tasks: a random batch's sequences packed side by side into rows.

Why: the transformers examples pad every random batch to its longest sentence, and on CoNLL-2003 62% of what the
model computes is padding. Length buckets remove the padding but make each batch a set of similar sentences (on
CoNLL-2003, short ones are score tables and headlines), which cost about 0.4 test F1 points after one epoch.
Packing keeps the random batch as it is and only changes its layout: sequences are laid end to end in rows of
`row_length` tokens, each keeps its own position ids (from its model's first position) and a block-diagonal
mask lets a token see only the tokens of its own sequence. Every sequence gets exactly the logits it would get
alone (the tests check it), so the loss, its per-token weights and the gradient are those of the random batch;
only the padding is gone.

A model can be packed when its embeddings take explicit `position_ids` (or it has no absolute positions), its
attention takes a prepared 4-D mask, and nothing else mixes tokens: relative positions (DeBERTa, MPNet) and rotary
ones (ModernBERT) depend only on the distance of two tokens, which packing keeps inside a sequence. `PACKING`
says, per model type, how; `packing_refusal` says why a model is not packed (logged), and those keep length
buckets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from utils.core.losses import IGNORE_INDEX

logger = logging.getLogger(__name__)

#: Attention implementations that take a prepared 4-D mask: SDPA a boolean one, eager an additive one.
_MASK_KINDS = {"sdpa": "boolean", "eager": "additive"}


def _from_zero(config) -> int:
    return 0


def _after_padding(config) -> int:
    """RoBERTa-style models count positions from padding_idx + 1."""
    return config.pad_token_id + 1


@dataclass(frozen=True)
class PackingSupport:
    """How one model type takes packed rows.

    `first_position`: the position id of a sequence's first token. `mask_kinds`: the mask each attention
    implementation takes (others are refused). `refuse`: why this configuration cannot be packed exactly, or None.
    `prepare`: installs what the model needs to read a packed batch (idempotent; acts only on 4-D masks, so the
    model's unpacked behaviour is untouched), or says why it cannot."""

    first_position: Callable[[object], int] = _from_zero
    mask_kinds: Mapping[str, str] = field(default_factory=lambda: dict(_MASK_KINDS))
    refuse: Callable[[object], str | None] = lambda config: None
    prepare: Callable[[torch.nn.Module], str | None] | None = None


_HOOKED = "_finetune_kit_packing_hook"


def _hook_once(model: torch.nn.Module, class_name: str, hook: Callable) -> str | None:
    """A forward pre-hook (with keyword arguments) on the model's `class_name` modules (found by class, so wrapped
    models such as PEFT's are found too), installed once however often a packer is made; why not, if none."""
    modules = [module for module in model.modules() if type(module).__name__ == class_name]
    if not modules:
        return f"its {class_name} module, which must be adapted to packed rows, was not found"
    for module in modules:
        if not getattr(module, _HOOKED, False):
            module.register_forward_pre_hook(hook, with_kwargs=True)
            setattr(module, _HOOKED, True)
    return None


def _deberta_embeddings_ignore_packed_mask(model: torch.nn.Module) -> str | None:
    """DeBERTa's embeddings multiply each token by its 2-D mask value and misread a 4-D mask (they squeeze it into
    the wrong shape). That multiplication only zeroes padding, whose outputs no loss reads and which no real token
    attends to in a packed row, so with a packed mask the embeddings get none."""

    def hook(module, args, kwargs):
        mask = kwargs.get("mask")
        if torch.is_tensor(mask) and mask.dim() == 4:
            return args, {**kwargs, "mask": None}
        return None

    return _hook_once(model, "DebertaV2Embeddings", hook)


def _deberta_refusal(config) -> str | None:
    if getattr(config, "conv_kernel_size", 0):
        return (
            f"its convolution layer (conv_kernel_size={config.conv_kernel_size}) mixes neighbouring tokens, "
            "which in a packed row belong to other sequences"
        )
    return None


def _modernbert_sliding_window_masks(model: torch.nn.Module) -> str | None:
    """ModernBERT takes a prepared 4-D mask as it is for its global and its local (sliding-window) layers alike;
    the local layers must also see only tokens within `sliding_window` of each other, which inside one packed
    sequence is the same distance as alone. A packed mask is turned into the model's own per-layer-type mapping."""
    config = model.config
    if "sliding_attention" not in set(getattr(config, "layer_types", None) or ()):
        return None

    def hook(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if not (torch.is_tensor(mask) and mask.dim() == 4):
            return None
        positions = torch.arange(mask.shape[-1], device=mask.device)
        near = (positions[:, None] - positions[None, :]).abs() <= config.sliding_window
        local = mask & near if mask.dtype == torch.bool else mask.masked_fill(~near, torch.finfo(mask.dtype).min)
        return args, {**kwargs, "attention_mask": {"full_attention": mask, "sliding_attention": local}}

    return _hook_once(model, "ModernBertModel", hook)


#: Model types that take packed rows. DeBERTa's attention reads its mask as booleans whatever the implementation
#: (and has only its own, eager one); its relative positions come from the token distance within the row.
PACKING: dict[str, PackingSupport] = {
    "bert": PackingSupport(),
    "electra": PackingSupport(),
    "albert": PackingSupport(),
    "distilbert": PackingSupport(),
    "roberta": PackingSupport(_after_padding),
    "xlm-roberta": PackingSupport(_after_padding),
    "camembert": PackingSupport(_after_padding),
    "mpnet": PackingSupport(_after_padding),
    "deberta-v2": PackingSupport(
        mask_kinds={"eager": "boolean"}, refuse=_deberta_refusal, prepare=_deberta_embeddings_ignore_packed_mask
    ),
    "modernbert": PackingSupport(prepare=_modernbert_sliding_window_masks),
}


def packing_refusal(config) -> str | None:
    """Why this model cannot be packed exactly (one clause, for the log), or None when it can."""
    model_type = getattr(config, "model_type", None)
    support = PACKING.get(model_type)
    if support is None:
        return f"{model_type} models are not known to take packed rows (packed: {', '.join(sorted(PACKING))})"
    attention = getattr(config, "_attn_implementation", None)
    if attention not in support.mask_kinds:
        return (
            f"{model_type} with {attention} attention does not take a prepared 4-D mask (packed with: "
            f"{', '.join(support.mask_kinds)})"
        )
    return support.refuse(config)


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Sequence indices per row, first-fit decreasing: no row holds more than `capacity` tokens, every index is in
    exactly one row. `capacity` must be at least the longest length."""
    if lengths and max(lengths) > capacity:
        raise ValueError(f"a sequence of {max(lengths)} tokens does not fit in rows of {capacity}")
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for row, free in enumerate(room):
            if lengths[index] <= free:
                rows[row].append(index)
                room[row] -= lengths[index]
                break
        else:
            rows.append([index])
            room.append(capacity - lengths[index])
    return rows


def packing_position_offset(config) -> int | None:
    """The first position id of a packed sequence for this model, or None when the model cannot be packed."""
    if packing_refusal(config) is not None:
        return None
    return PACKING[config.model_type].first_position(config)


@dataclass(frozen=True)
class SequencePacker:
    """Turns a right-padded batch (`input_ids`, 2-D `attention_mask`, `labels`, ...) into packed rows with
    `position_ids` and a 4-D attention mask; token tensors of the batch's shape are moved along."""

    row_length: int
    pad_token_id: int
    position_offset: int
    mask_kind: str = "boolean"

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.pack(batch)[0]

    def pack(self, batch: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[list[int]] | None]:
        """The packed batch and its rows (the batch's sequence indices in each row, in order), or the batch as it
        is and None when it cannot be packed (not right-padded, or already packed)."""
        mask = batch["attention_mask"]
        if mask.dim() != 2 or "position_ids" in batch:
            return dict(batch), None
        lengths = mask.sum(dim=1)
        width = mask.shape[1]
        if not torch.equal(mask.bool(), torch.arange(width, device=mask.device)[None, :] < lengths[:, None]):
            return dict(batch), None  # not right-padded: leave the batch as it is
        lengths_list = lengths.tolist()
        rows = pack_rows(lengths_list, max(self.row_length, max(lengths_list, default=0)))
        packed_width = max((sum(lengths_list[i] for i in row) for row in rows), default=0)
        source_row = torch.zeros(len(rows), packed_width, dtype=torch.long)
        source_position = torch.zeros(len(rows), packed_width, dtype=torch.long)
        segment = torch.full((len(rows), packed_width), -1, dtype=torch.long)
        for row, members in enumerate(rows):
            start = 0
            for number, index in enumerate(members):
                end = start + lengths_list[index]
                source_row[row, start:end] = index
                source_position[row, start:end] = torch.arange(lengths_list[index])
                segment[row, start:end] = number
                start = end
        device = mask.device
        source_row, source_position, segment = source_row.to(device), source_position.to(device), segment.to(device)
        real = segment >= 0
        packed: dict[str, torch.Tensor] = {}
        for key, value in batch.items():
            if key == "attention_mask" or not torch.is_tensor(value) or value.shape[:2] != mask.shape:
                packed[key] = value
                continue
            fill = self.pad_token_id if key == "input_ids" else IGNORE_INDEX if key == "labels" else 0
            moved = value[source_row, source_position]
            packed[key] = torch.where(
                real.view(*real.shape, *([1] * (moved.dim() - 2))), moved, torch.full_like(moved, fill)
            )
        packed["position_ids"] = source_position + self.position_offset
        attend = (segment[:, :, None] == segment[:, None, :]) & real[:, None, :]
        attend |= torch.eye(packed_width, dtype=torch.bool, device=device)[None]  # padding sees itself: no NaN
        attend = attend[:, None]
        if self.mask_kind == "additive":
            packed["attention_mask"] = torch.zeros(attend.shape, device=device).masked_fill(
                ~attend, torch.finfo(torch.float32).min
            )
        else:
            packed["attention_mask"] = attend
        return packed, rows


def unpack(outputs: torch.Tensor, rows: Sequence[Sequence[int]], lengths: Sequence[int]) -> torch.Tensor:
    """Per-token outputs of packed rows ([rows, packed width, ...]) back to one right-padded row per sequence
    ([sequences, longest, ...], zeros after each sequence's end), in the batch's order."""
    unpacked = outputs.new_zeros((len(lengths), max(lengths, default=0), *outputs.shape[2:]))
    for row, members in enumerate(rows):
        start = 0
        for index in members:
            unpacked[index, : lengths[index]] = outputs[row, start : start + lengths[index]]
            start += lengths[index]
    return unpacked


def make_packer(model, pad_token_id: int | None, row_length: int) -> SequencePacker | None:
    """A packer for this model, or None when its architecture or attention cannot take packed rows."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    reason = packing_refusal(config)
    support = PACKING.get(config.model_type)
    if reason is None and support.prepare is not None:
        reason = support.prepare(model)
    if reason is not None:
        logger.info("Not packing: %s.", reason)
        return None
    return SequencePacker(
        row_length, pad_token_id or 0, support.first_position(config), support.mask_kinds[config._attn_implementation]
    )
