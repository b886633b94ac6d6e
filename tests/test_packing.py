"""Packed training batches: every sequence placed once, rows within capacity, and each sequence's logits, loss and
gradient exactly those it has in a padded batch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.core.packing import SequencePacker, make_packer, pack_rows, packing_position_offset


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


def tiny_config(model_type: str, attention: str):
    from transformers import AutoConfig

    config = AutoConfig.for_model(model_type, vocab_size=120, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=48, max_position_embeddings=80,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=5,
                                  **({"embedding_size": 32} if model_type == "electra" else {}))
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


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta", "electra"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_each_sequence_gets_its_unpacked_logits_loss_and_gradient(model_type, attention):
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(tiny_config(model_type, attention))
    packer = make_packer(model, model.config.pad_token_id, row_length=24)
    # BERT and ELECTRA count positions from 0, RoBERTa and XLM-R from the padding index + 1
    first_position = model.config.pad_token_id + 1 if "roberta" in model_type else 0
    assert packer == SequencePacker(24, model.config.pad_token_id, first_position,
                                    {"sdpa": "boolean", "eager": "additive"}[attention])
    lengths = [20, 3, 11, 7, 1, 16, 9, 2]
    batch = padded_batch(lengths, width=20)
    packed = packer(batch)
    rows = pack_rows(lengths, 24)
    assert packed["input_ids"].shape == (len(rows), max(sum(lengths[i] for i in row) for row in rows))
    assert int((packed["labels"] != -100).sum()) == int((batch["labels"] != -100).sum())

    def loss_and_grads(inputs):
        model.zero_grad()
        labels = inputs["labels"]
        logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), labels.reshape(-1), reduction="sum")
        loss.backward()
        return logits, loss.detach(), [p.grad.clone() for p in model.parameters()]

    plain_logits, plain_loss, plain_grads = loss_and_grads(batch)
    packed_logits, packed_loss, packed_grads = loss_and_grads(packed)
    for row, members in enumerate(rows):
        start = 0
        for index in members:
            end = start + lengths[index]
            torch.testing.assert_close(packed_logits[row, start:end], plain_logits[index, :lengths[index]],
                                       atol=1e-5, rtol=1e-4)
            assert torch.equal(packed["input_ids"][row, start:end], batch["input_ids"][index, :lengths[index]])
            assert torch.equal(packed["labels"][row, start:end], batch["labels"][index, :lengths[index]])
            start = end
        assert torch.all(packed["labels"][row, start:] == -100)
    torch.testing.assert_close(packed_loss, plain_loss, atol=1e-4, rtol=1e-5)
    for packed_grad, plain_grad in zip(packed_grads, plain_grads):
        torch.testing.assert_close(packed_grad, plain_grad, atol=1e-5, rtol=1e-4)


def test_roberta_positions_count_from_padding_index_plus_one():
    config = tiny_config("roberta", "sdpa")
    assert packing_position_offset(config) == config.pad_token_id + 1
    packed = SequencePacker(8, 1, 2)(padded_batch([3, 4], width=4))
    assert packed["position_ids"].tolist() == [[2, 3, 4, 5, 2, 3, 4]]


def test_models_and_batches_that_cannot_be_packed_are_left_alone():
    assert packing_position_offset(tiny_config("distilbert", "sdpa")) is None
    assert packing_position_offset(tiny_config("bert", "flash_attention_2")) is None
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
    tokens = Dataset.from_dict({"input_ids": [[101, 5, 102], [101, 5, 6, 7, 102]],
                                "labels": [[-100, 1, -100], [-100, 1, 2, 0, -100]]})
    sentences = Dataset.from_dict({"input_ids": [[101, 5, 102], [101, 5, 6, 7, 102]], "labels": [0, 1]})
    multi_label = Dataset.from_dict({"input_ids": [[101, 5, 102], [101, 5, 6, 7, 102]],
                                     "labels": [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]})
    classifier = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3)

    def trainer(dataset, model=model, token_outputs=True, **flags) -> FinetuneTrainer:
        args = FinetuneTrainingArguments(output_dir=str(tmp_path), report_to="none", **flags)
        plan = decide_batching(args, set(flags), model, tokenizer.pad_token_id, token_outputs, False, None)
        return FinetuneTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                               batching=plan)

    packing = trainer(tokens)
    assert packing.packer == SequencePacker(64, tokenizer.pad_token_id, 0, "boolean")
    assert isinstance(packing._get_train_sampler(), RandomSampler)
    assert packing.items_per_example is None
    # classification tasks do not have token outputs (NER_TASK / CLASSIFICATION_TASK say which)
    assert trainer(sentences, model=classifier, token_outputs=False).packer is None
    assert trainer(multi_label, model=classifier, token_outputs=False).packer is None  # list labels, one per sentence
    assert trainer(tokens, pack_sequences=False).packer is None
    assert trainer(tokens, pack_sequences=False).items_per_example == pytest.approx(2.0)
