"""Packed training batches: every sequence placed once, rows within capacity, and each sequence's logits, loss and
gradient exactly those it has in a padded batch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.core.packing import SequencePacker, make_packer, pack_rows, packing_position_offset, packing_refusal, unpack


@settings(max_examples=300, deadline=None)
@given(lengths=st.lists(st.integers(1, 64), max_size=80), extra=st.integers(0, 100))
def test_every_sequence_in_exactly_one_row_within_capacity(lengths, extra):
    capacity = max(lengths, default=1) + extra
    rows = pack_rows(lengths, capacity)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    fills = [sum(lengths[i] for i in row) for row in rows]
    assert all(fill <= capacity for fill in fills)
    # First fit never leaves two rows both at most half full (the later one's items would have fitted earlier).
    assert sum(1 for fill in fills if 2 * fill <= capacity) <= 1


def test_rows_by_hand_and_too_long_refused():
    assert pack_rows([5, 3, 4, 2], 8) == [[0, 1], [2, 3]]
    assert pack_rows([], 8) == []
    with pytest.raises(ValueError, match="9 tokens does not fit in rows of 8"):
        pack_rows([9], 8)


#: Per-architecture settings of the tiny models (no dropout, so packed and unpacked runs are comparable to the last
#: digits). DeBERTa is v3-style (relative attention, no absolute positions, log buckets narrower than the longest
#: sequence); ModernBERT alternates global and sliding-window layers with a window (4 each side) shorter than the
#: longest sequence, so both position schemes and the local mask are exercised.
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
ARCHITECTURES = {
    "bert": NO_DROPOUT,
    "electra": {**NO_DROPOUT, "embedding_size": 32},
    "roberta": NO_DROPOUT,
    "xlm-roberta": NO_DROPOUT,
    "camembert": NO_DROPOUT,
    "albert": {**NO_DROPOUT, "embedding_size": 16, "classifier_dropout_prob": 0.0},
    "distilbert": {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 48, "dropout": 0.0, "attention_dropout": 0.0},
    "mpnet": NO_DROPOUT,
    "deberta-v2": {
        **NO_DROPOUT,
        "relative_attention": True,
        "position_biased_input": False,
        "pos_att_type": ["p2c", "c2p"],
        "max_relative_positions": -1,
        "position_buckets": 8,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
    },
    "modernbert": {
        "local_attention": 8,
        "global_attn_every_n_layers": 2,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 3,
        "cls_token_id": 2,
        "sep_token_id": 3,
        "attention_dropout": 0.0,
        "embedding_dropout": 0.0,
        "mlp_dropout": 0.0,
    },
}
#: Attention implementations transformers has for each (MPNet and DeBERTa-v2 only their own eager one).
EAGER_ONLY = {"mpnet", "deberta-v2"}
#: The position id of each architecture's first token: RoBERTa-style models count from the padding index + 1.
FROM_PADDING = {"roberta", "xlm-roberta", "camembert", "mpnet"}


def tiny_config(model_type: str, attention: str, **overrides):
    from transformers import AutoConfig

    config = AutoConfig.for_model(
        model_type,
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=80,
        num_labels=5,
        **{**ARCHITECTURES[model_type], **overrides},
    )
    config._attn_implementation = attention
    return config


def padded_batch(lengths: list[int], width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths_tensor = torch.tensor(lengths)
    mask = (torch.arange(width)[None, :] < lengths_tensor[:, None]).long()
    ids = torch.randint(5, 120, (len(lengths), width), generator=generator) * mask + 1 * (1 - mask)
    labels = torch.randint(0, 5, (len(lengths), width), generator=generator).masked_fill(mask == 0, -100)
    labels[:, 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids), "labels": labels}


def model_inputs(model, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inputs this architecture's forward takes (DistilBERT and ModernBERT have no token type ids)."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    return {k: v for k, v in inputs.items() if k != "labels" and k in accepted}


LENGTHS = [20, 3, 11, 7, 1, 16, 9, 2]


@pytest.mark.parametrize(
    ("model_type", "attention"),
    [
        (model_type, attention)
        for model_type in ARCHITECTURES
        for attention in ("sdpa", "eager")
        if attention == "eager" or model_type not in EAGER_ONLY
    ],
)
def test_each_sequence_gets_its_unpacked_logits_loss_and_gradient(model_type, attention):
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(tiny_config(model_type, attention))
    packer = make_packer(model, model.config.pad_token_id, row_length=24)
    first_position = model.config.pad_token_id + 1 if model_type in FROM_PADDING else 0
    # DeBERTa's attention reads its mask as booleans whatever the implementation
    mask_kind = "boolean" if attention == "sdpa" or model_type == "deberta-v2" else "additive"
    assert packer == SequencePacker(24, model.config.pad_token_id, first_position, mask_kind)
    batch = padded_batch(LENGTHS, width=20)
    packed = packer(batch)
    rows = pack_rows(LENGTHS, 24)
    assert packed["input_ids"].shape == (len(rows), max(sum(LENGTHS[i] for i in row) for row in rows))
    assert int((packed["labels"] != -100).sum()) == int((batch["labels"] != -100).sum())

    def loss_and_grads(inputs):
        model.zero_grad()
        logits = model(**model_inputs(model, inputs)).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), inputs["labels"].reshape(-1), reduction="sum")
        loss.backward()
        return logits, loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain_logits, plain_loss, plain_grads = loss_and_grads(batch)
    packed_logits, packed_loss, packed_grads = loss_and_grads(packed)
    for row, members in enumerate(rows):
        start = 0
        for index in members:
            end = start + LENGTHS[index]
            torch.testing.assert_close(
                packed_logits[row, start:end], plain_logits[index, : LENGTHS[index]], atol=1e-5, rtol=1e-4
            )
            assert torch.equal(packed["input_ids"][row, start:end], batch["input_ids"][index, : LENGTHS[index]])
            assert torch.equal(packed["labels"][row, start:end], batch["labels"][index, : LENGTHS[index]])
            start = end
        assert torch.all(packed["labels"][row, start:] == -100)
    torch.testing.assert_close(packed_loss, plain_loss, atol=1e-4, rtol=1e-5)
    assert len(packed_grads) == len(plain_grads) == sum(1 for p in model.parameters() if p.requires_grad)
    for packed_grad, plain_grad in zip(packed_grads, plain_grads):
        torch.testing.assert_close(packed_grad, plain_grad, atol=1e-5, rtol=1e-4)


def packed_logits_error(model, packer: SequencePacker) -> float:
    """The largest difference between a sequence's packed and unpacked logits over the LENGTHS batch."""
    batch = padded_batch(LENGTHS, width=20)
    packed, rows = packer.pack(batch)
    with torch.no_grad():
        plain, together = model(**model_inputs(model, batch)).logits, model(**model_inputs(model, packed)).logits
    real = batch["attention_mask"].bool()
    return float((unpack(together, rows, LENGTHS) - plain)[real].abs().amax())


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_modernbert_local_layers_need_their_window_in_the_packed_mask(attention):
    """Without the sliding-window mapping, ModernBERT's local layers would see their whole packed sequence (20
    tokens against a window of 4 each side): the packed logits would not be exact."""
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(tiny_config("modernbert", attention)).eval()
    plain_packer = SequencePacker(24, 0, 0, "boolean" if attention == "sdpa" else "additive")
    assert packed_logits_error(model, plain_packer) > 1e-3
    assert make_packer(model, 0, 24) == plain_packer  # installs the mapping
    assert packed_logits_error(model, plain_packer) < 1e-5


def test_roberta_positions_count_from_padding_index_plus_one():
    config = tiny_config("roberta", "sdpa")
    assert packing_position_offset(config) == config.pad_token_id + 1
    packed = SequencePacker(8, 1, 2)(padded_batch([3, 4], width=4))
    assert packed["position_ids"].tolist() == [[2, 3, 4, 5, 2, 3, 4]]


def test_models_and_batches_that_cannot_be_packed_are_left_alone(caplog):
    from transformers import AutoModelForTokenClassification

    conv = tiny_config("deberta-v2", "eager", conv_kernel_size=3)
    assert packing_position_offset(conv) is None
    assert packing_refusal(conv) == (
        "its convolution layer (conv_kernel_size=3) mixes neighbouring tokens, which in "
        "a packed row belong to other sequences"
    )
    assert packing_refusal(tiny_config("bert", "flash_attention_2")) == (
        "bert with flash_attention_2 attention does not take a prepared 4-D mask (packed with: sdpa, eager)"
    )
    assert packing_refusal(tiny_config("deberta-v2", "eager")) is None
    with caplog.at_level("INFO", logger="utils.core.packing"):
        assert make_packer(AutoModelForTokenClassification.from_config(conv), 0, 24) is None
    assert "Not packing: its convolution layer (conv_kernel_size=3)" in caplog.text
    from transformers import AutoConfig

    funnel = AutoConfig.for_model("funnel")
    funnel._attn_implementation = "eager"
    assert packing_refusal(funnel).startswith("funnel models are not known to take packed rows (packed: albert, bert,")
    left_padded = padded_batch([2, 4], width=4)
    left_padded["attention_mask"] = left_padded["attention_mask"].flip(1)
    assert SequencePacker(8, 0, 0)(left_padded)["attention_mask"].dim() == 2


def test_trainer_packs_token_batches_only(tmp_path, tiny_model):
    """NER batches are packed (random sampler, no buckets); sentence labels (classification) are not: the plan
    decided before the Trainer (`decide_batching`) is what the Trainer does."""
    from datasets import Dataset
    from torch.utils.data import RandomSampler
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    from utils.training.arguments import FinetuneTrainingArguments
    from utils.training.batching import decide_batching
    from utils.training.trainer import FinetuneTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForTokenClassification.from_pretrained(tiny_model, num_labels=3)
    tokens = Dataset.from_dict(
        {"input_ids": [[101, 5, 102], [101, 5, 6, 7, 102]], "labels": [[-100, 1, -100], [-100, 1, 2, 0, -100]]}
    )
    sentences = Dataset.from_dict({"input_ids": [[101, 5, 102], [101, 5, 6, 7, 102]], "labels": [0, 1]})
    multi_label = Dataset.from_dict(
        {"input_ids": [[101, 5, 102], [101, 5, 6, 7, 102]], "labels": [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]}
    )
    classifier = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3)

    def trainer(dataset, model=model, token_outputs=True, **flags) -> FinetuneTrainer:
        args = FinetuneTrainingArguments(output_dir=str(tmp_path), report_to="none", **flags)
        plan = decide_batching(args, set(flags), model, tokenizer.pad_token_id, token_outputs, False, None)
        return FinetuneTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, batching=plan
        )

    packing = trainer(tokens)
    assert packing.packer == SequencePacker(64, tokenizer.pad_token_id, 0, "boolean")
    assert isinstance(packing._get_train_sampler(), RandomSampler)
    assert packing.items_per_example is None
    # classification tasks do not have token outputs (NER_TASK / CLASSIFICATION_TASK say which)
    assert trainer(sentences, model=classifier, token_outputs=False).packer is None
    assert trainer(multi_label, model=classifier, token_outputs=False).packer is None  # list labels, one per sentence
    assert trainer(tokens, pack_sequences=False).packer is None
    assert trainer(tokens, pack_sequences=False).items_per_example == pytest.approx(2.0)


@pytest.mark.parametrize("model_type", ["deberta-v2", "modernbert"])
def test_models_wrapped_for_lora_are_adapted_and_packed_exactly(model_type):
    """The adaptations are found by module class, so a PEFT-wrapped model (--use_peft) packs as exactly."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(tiny_config(model_type, "eager"))
    targets = ["query_proj", "value_proj"] if model_type == "deberta-v2" else ["Wqkv"]
    wrapped = get_peft_model(model, LoraConfig(task_type=TaskType.TOKEN_CLS, r=2, target_modules=targets)).eval()
    packer = make_packer(wrapped, 0, 24)
    assert packer is not None
    assert packed_logits_error(wrapped, packer) < 1e-5


def test_a_model_without_the_module_to_adapt_is_not_packed(caplog):
    class Stand(torch.nn.Module):
        config = tiny_config("modernbert", "sdpa")

    with caplog.at_level("INFO", logger="utils.core.packing"):
        assert make_packer(Stand(), 0, 24) is None
    assert (
        "Not packing: its ModernBertModel module, which must be adapted to packed rows, was not found."
        in caplog.messages
    )


def test_deberta_v2_with_absolute_positions_packs_exactly():
    """DeBERTa-v2-style models that also add absolute position embeddings (position_biased_input) read the packed
    position ids."""
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    config = tiny_config("deberta-v2", "eager", position_biased_input=True)
    model = AutoModelForTokenClassification.from_config(config).eval()
    packer = make_packer(model, 0, 24)
    assert packer == SequencePacker(24, 0, 0, "boolean")
    assert packed_logits_error(model, packer) < 1e-5
    assert packed_logits_error(model, SequencePacker(24, 0, 1, "boolean")) > 1e-3  # positions do matter here
