"""The PyTorch backend of `Predictor`: `TorchForward` runs a model on rows of token ids in batches of similar length
(packed rows for token models that take them) and hands back every output of the model by name, the forward
contract every backend keeps (`utils.core.task.Forward`; ONNX Runtime's is utils/serving/onnx_backend.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel

from utils.core.ordering import length_batches, pad_rows, token_batches
from utils.core.packing import SequencePacker, make_packer, unpack
from utils.core.task import ForwardBatch

#: The inputs a model takes, of those a task's encoding may give (other columns, e.g. NER's word_index, are not).
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

#: Row length of packed token-model inputs: training's --pack_length default; longer rows pack tighter but spend more
#: on attention (64 and 128 measured within noise of each other on CoNLL-2003 requests).
PACKED_ROW_TOKENS = 64

#: Most tokens of one packed forward pass: 64 CoNLL-2003 requests (about 1,300 tokens) fit in one pass. Tried while
#: writing this: 512 was slower on gathered requests; a budget of batch_size windows (16,384 for predict.py) was no
#: faster over a whole file and held about 400 MB more memory.
DEFAULT_MAX_BATCH_TOKENS = 2048


def pad_right(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Rows as one tensor, padded on the right to the longest (the side the windows' positions count from)."""
    return torch.from_numpy(pad_rows(rows, value))


def cpu_outputs(result: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Every tensor of a model's output but the loss, by name, float32 on the CPU."""
    return {name: value.float().cpu() for name, value in result.items() if torch.is_tensor(value) and name != "loss"}


@dataclass
class TorchForward:
    """The forward pass the tasks' prediction objects call, for a PyTorch model: `forward(inputs)` takes rows of token
    ids by input name (input_ids, attention_mask, token_type_ids; other keys are ignored) and yields, per batch of at
    most `batch_size` rows of similar length (longest first, `length_batches`; with a `packer`, of at most
    `max_tokens` tokens, `token_batches`), the batch's row indices and the model's outputs by name (every tensor of
    its output but the loss): float32 on the CPU, first axis the batch's rows, per-token outputs padded on the right
    to the batch's longest row. A model with a `forward_rows` method gets the batch's input_ids rows as they are,
    unpadded (the static student: a mean of token vectors needs no padding). Another backend is another callable
    with this contract (`utils.core.task.Forward`)."""

    model: PreTrainedModel = field(repr=False)
    device: torch.device
    batch_size: int
    pad_id: int = 0  # input_ids' padding (the other inputs pad with 0)
    packer: SequencePacker | None = None  # token models that take packed rows (see `packed_forward`)
    max_tokens: int | None = None  # with a packer: the most tokens of one forward pass

    def __call__(self, inputs: Mapping[str, Sequence[Sequence[int]]]) -> Iterator[ForwardBatch]:
        lengths = [len(row) for row in inputs["input_ids"]]
        if self.packer is None or self.max_tokens is None:
            batches = length_batches(lengths, self.batch_size)
        else:
            batches = token_batches(lengths, self.max_tokens)
        unpadded = getattr(self.model, "forward_rows", None)
        for batch in batches:
            if unpadded is not None:
                yield batch, self.row_outputs(unpadded, [inputs["input_ids"][i] for i in batch])
                continue
            tensors = {
                key: pad_right([inputs[key][i] for i in batch], self.pad_id if key == "input_ids" else 0)
                for key in MODEL_INPUTS
                if key in inputs
            }
            yield batch, self.outputs(tensors)

    @torch.inference_mode()
    def row_outputs(self, forward_rows, rows: list[Sequence[int]]) -> dict[str, torch.Tensor]:
        """The outputs of a model that takes its rows of token ids unpadded (`forward_rows`: one that pools them
        without attention, such as the static student), by name as `outputs` gives them."""
        return cpu_outputs(forward_rows(rows))

    @torch.inference_mode()
    def outputs(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mask = tensors.get("attention_mask")
        padded = mask is not None and not bool(mask.all())  # without padding, packing saves nothing
        packed, rows = self.packer.pack(tensors) if self.packer is not None and padded else (tensors, None)
        outputs = cpu_outputs(self.model(**{key: value.to(self.device) for key, value in packed.items()}))
        if rows is None:
            return outputs
        # per-token outputs come back one row per input; an output of another shape is not per token
        width = packed["input_ids"].shape[:2]
        lengths = mask.sum(dim=1).tolist()
        return {
            name: unpack(value, rows, lengths) if value.shape[:2] == width else value
            for name, value in outputs.items()
        }


def packed_forward(
    model: PreTrainedModel,
    token_outputs: bool,
    device: torch.device,
    batch_size: int,
    max_batch_tokens: int,
    pad_id: int,
) -> TorchForward:
    """The PyTorch forward pass; for a model with one output per token (`token_outputs`, the task says) that can take
    packed rows (BERT, RoBERTa, ... with SDPA or eager attention: utils/core/packing.py), inputs laid end to end in
    rows of PACKED_ROW_TOKENS, at most `max_batch_tokens` tokens per forward pass (an input longer than that alone);
    other models: `batch_size` padded rows per pass.

    Why: a request batch of the service is a few dozen sentences of any length; padded batches of 8 similar lengths
    spend most of their time on small matrix products and per-pass overhead. Packed, 64 CoNLL-2003 sentences are one
    forward pass (docs/serving.md: with 64 clients the service's gain over one request at a time went from 2.1x to
    2.8-3.2x on 2 CPU cores). Each input's outputs are those it gets alone, up to float rounding; inputs already
    sorted by length (predict.py over a whole file) gain little."""
    packer = make_packer(model, pad_id, PACKED_ROW_TOKENS) if token_outputs else None
    return TorchForward(model, device, batch_size, pad_id, packer, max_batch_tokens if packer is not None else None)
