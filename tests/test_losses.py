"""Our losses equal the models' own means on one process, and sum/normalise correctly for DDP and accumulation."""

import pytest
import torch
import torch.nn.functional as F

from utils.core.losses import MULTI, REGRESSION, SINGLE, make_loss


def test_token_loss_is_the_mean_over_labelled_tokens():
    logits = torch.randn(2, 5, 4)
    labels = torch.tensor([[0, 1, -100, 2, -100], [3, -100, -100, 1, 0]])
    expected = F.cross_entropy(logits.view(-1, 4), labels.view(-1), ignore_index=-100)
    assert make_loss(SINGLE)({"logits": logits}, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_num_items_in_batch_divides_the_sum():
    """Two ranks each dividing by the global count, then averaged by DDP and multiplied back by the world size as
    Trainer does, give the single-process mean over the whole batch."""
    logits, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    loss = make_loss(SINGLE)
    whole = loss({"logits": logits}, labels).item()
    halves = [
        loss({"logits": logits[i : i + 2]}, labels[i : i + 2], num_items_in_batch=torch.tensor(4)) for i in (0, 2)
    ]
    world_size = 2
    assert sum(h.item() * world_size for h in halves) / world_size == pytest.approx(whole, rel=1e-6)


def test_multi_label_and_regression_match_the_usual_means():
    logits, target = torch.randn(3, 4), torch.randint(0, 2, (3, 4)).float()
    assert make_loss(MULTI)({"logits": logits}, target).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, target).item(), rel=1e-6
    )
    values, gold = torch.randn(5, 1), torch.randn(5)
    assert make_loss(REGRESSION)({"logits": values}, gold).item() == pytest.approx(
        F.mse_loss(values.squeeze(-1), gold).item(), rel=1e-6
    )


def test_label_smoothing_is_applied():
    logits, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    smoothed = make_loss(SINGLE, label_smoothing=0.1)({"logits": logits}, labels).item()
    assert smoothed == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.1).item(), rel=1e-6)
