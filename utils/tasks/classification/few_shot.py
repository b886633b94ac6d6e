"""Few-shot classification: exactly K examples per label, and SetFit-style contrastive training on them.

The contrastive method (Tunstall et al. 2022) tunes the sentence encoder on same-/different-label pairs of the
K-shot examples (cosine target 1 or 0), then fits a logistic regression on the tuned embeddings as the head; the
pipeline's train stage then trains only that head. The pair phase runs through `Trainer` (`PairTrainer`, built on
the kit's `FinetuneTrainer`) with the run's own precision, processes and logging: DDP, bf16/fp16 and TensorBoard
work there as in every other stage, and its logs go to output_dir/contrastive.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from transformers import TrainingArguments

from utils.core.errors import DataError
from utils.core.files import write_json
from utils.core.labels import LabelSpace
from utils.tasks.classification.arguments import WARMUP_RATIO, FewShotArguments
from utils.tasks.classification.embeddings import encode_texts
from utils.tasks.classification.sentence_embedding import MeanPoolingForSequenceClassification
from utils.training.trainer import FinetuneTrainer

logger = logging.getLogger(__name__)

SAMPLE_FILE = "few_shot_sample.json"
#: Subdirectory of output_dir for the contrastive phase's logs (TensorBoard); the phase saves no checkpoints.
CONTRASTIVE_DIR = "contrastive"


def sample_k_per_label(labels: Sequence[str], k: int, seed: int, wanted: Sequence[str] | None = None) -> list[int]:
    """Row indices (ascending) of exactly `k` rows of each label, drawn without replacement; the same seed gives the
    same rows. `wanted`: the labels that must be present (default: those in `labels`)."""
    rows: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        rows.setdefault(label, []).append(index)
    names = sorted(rows) if wanted is None else list(wanted)
    short = {name: len(rows.get(name, [])) for name in names if len(rows.get(name, [])) < k}
    if short:
        counts = ", ".join(f"'{name}' has {n}" for name, n in short.items())
        raise DataError(
            f"--few_shot_k {k} needs {k} training examples of every label, but {counts}. Lower "
            "--few_shot_k or add examples."
        )
    rng = np.random.default_rng(seed)
    chosen = [int(i) for name in names for i in rng.choice(rows[name], size=k, replace=False)]
    return sorted(chosen)


def contrastive_pairs(
    label_ids: Sequence[int], iterations: int, seed: int, max_pairs: int | None = None
) -> list[tuple[int, int, float]]:
    """(i, j, target) pairs, target 1.0 for the same label and 0.0 for different ones, in equal numbers: each round
    gives every example one partner of its own label and one of another (SetFit's pair sampling). `max_pairs` keeps
    a random balanced subset."""
    by_label: dict[int, list[int]] = {}
    for index, label in enumerate(label_ids):
        by_label.setdefault(label, []).append(index)
    if len(by_label) < 2:
        raise DataError("contrastive training needs examples of at least two labels.")
    rng = np.random.default_rng(seed)
    positives: list[tuple[int, int, float]] = []
    negatives: list[tuple[int, int, float]] = []
    for _ in range(iterations):
        for anchor, label in enumerate(label_ids):
            same = [i for i in by_label[label] if i != anchor] or [anchor]
            other = [i for other_label, rows in by_label.items() if other_label != label for i in rows]
            positives.append((anchor, int(rng.choice(same)), 1.0))
            negatives.append((anchor, int(rng.choice(other)), 0.0))
    if max_pairs is not None and max_pairs < 2 * len(positives):
        keep = max_pairs // 2
        positives = [positives[i] for i in sorted(rng.choice(len(positives), size=keep, replace=False))]
        negatives = [negatives[i] for i in sorted(rng.choice(len(negatives), size=keep, replace=False))]
    pairs = positives + negatives
    return [pairs[i] for i in rng.permutation(len(pairs))]


def take_few_shot_sample(train: Dataset, k: int, seed: int) -> Dataset:
    """The K-per-label rows of the train split, with their row numbers in `source_index` (recorded in the run)."""
    indices = sample_k_per_label(train["label"], k, seed)
    logger.info(
        "Few-shot: %d examples per label, %d in all, sampled from %d (seed %d)", k, len(indices), len(train), seed
    )
    return train.select(indices).add_column("source_index", indices)


def write_sample_record(
    output_dir: str, train: Dataset, data_args: FewShotArguments, stats: dict[str, Any] | None = None
) -> None:
    """few_shot_sample.json: which training rows the run used (and the contrastive phase's counts), so the run can
    be reproduced and audited."""
    os.makedirs(output_dir, exist_ok=True)
    write_json(
        os.path.join(output_dir, SAMPLE_FILE),
        {
            "k": data_args.few_shot_k,
            "seed": data_args.few_shot_seed,
            "method": data_args.few_shot_method,
            "per_label": dict(sorted(Counter(list(train["label"])).items())),
            **(stats or {}),
            "rows": list(train["source_index"]),
            "locations": list(train["location"]),
            "labels": list(train["label"]),
            "texts": list(train["text"]),
        },
    )


class CosinePairLoss(nn.Module):
    """SetFit's CosineSimilarityLoss around the classifier being tuned, as a module `Trainer` can train: a batch
    holds the pairs' first texts in its first half of rows and their partners in the second half (`PairCollator`);
    the loss is the mean squared error between each pair's cosine (the embeddings are normalised, so it is their dot
    product) and its target, 1.0 for the same label and 0.0 for different ones."""

    accepts_loss_kwargs = False  # the loss is already a mean over the pairs: Trainer must not rescale it

    def __init__(self, model: MeanPoolingForSequenceClassification) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        first, second = self.model.embed(input_ids, attention_mask, token_type_ids).chunk(2)
        cosine = (first * second).sum(-1)
        return {"loss": nn.functional.mse_loss(cosine, labels.to(cosine.dtype))}


@dataclass
class PairCollator:
    """A batch of (i, j, target) pairs -> the tokenized texts i of every pair, then the texts j, padded together, and
    the targets as `labels`."""

    tokenizer: Any
    texts: Sequence[str]
    max_length: int

    def __call__(self, pairs: Sequence[tuple[int, int, float]]) -> dict[str, torch.Tensor]:
        inputs = self.tokenizer(
            [self.texts[i] for i, _, _ in pairs] + [self.texts[j] for _, j, _ in pairs],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {**inputs, "labels": torch.tensor([target for *_, target in pairs], dtype=torch.float32)}


class PairTrainer(FinetuneTrainer):
    """`FinetuneTrainer` for the pair phase. It keeps every step's loss (for `contrastive_final_loss`), and decays
    every weight, biases and LayerNorms included, as the phase's optimizer always has (upstream spares those)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.step_losses: list[torch.Tensor] = []

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.step_losses.append(loss)
        return loss

    def get_decay_parameter_names(self, model) -> list[str]:
        return [name for name, _ in model.named_parameters()]

    def mean_step_losses(self) -> list[float]:
        """Each optimizer step's loss, averaged over the processes."""
        if not self.step_losses:
            return []
        return self.accelerator.reduce(torch.stack(self.step_losses), reduction="mean").tolist()


def contrastive_steps(pairs: int, batch_size: int, epochs: int, world_size: int = 1) -> int:
    """Optimizer steps of the pair phase: each process takes every `world_size`-th batch of `batch_size` pairs (the
    last batch may be short)."""
    return math.ceil(math.ceil(pairs / batch_size) / world_size) * epochs


def contrastive_training_args(
    training_args: TrainingArguments, data_args: FewShotArguments, steps: int, seed: int
) -> TrainingArguments:
    """The run's training arguments (precision, device, processes, `report_to`, logging) with the pair phase's own
    optimisation: AdamW at `--few_shot_learning_rate`, weight decay 0.01, linear schedule after 10% warmup, no
    gradient clipping, `--few_shot_batch_size` pairs per process and step, shuffled by `seed` (`--few_shot_seed`).
    Its logs go to output_dir/contrastive; it saves no checkpoints and evaluates nothing."""
    changes: dict[str, Any] = {
        "output_dir": os.path.join(training_args.output_dir, CONTRASTIVE_DIR),
        "do_train": True,
        "do_eval": False,
        "do_predict": False,
        "eval_strategy": "no",
        "save_strategy": "no",
        "load_best_model_at_end": False,
        "metric_for_best_model": None,
        "push_to_hub": False,
        "hub_token": None,
        "resume_from_checkpoint": None,
        "per_device_train_batch_size": data_args.few_shot_batch_size,
        "gradient_accumulation_steps": 1,
        "auto_find_batch_size": False,
        "num_train_epochs": data_args.few_shot_epochs,
        "max_steps": -1,
        "learning_rate": data_args.few_shot_learning_rate,
        "optim": "adamw_torch",
        "optim_args": None,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "adam_epsilon": 1e-8,
        "weight_decay": 0.01,
        "lr_scheduler_type": "linear",
        "lr_scheduler_kwargs": None,
        "warmup_steps": int(WARMUP_RATIO * steps),
        "max_grad_norm": 0.0,
        "seed": seed,
        "data_seed": None,
        "train_sampling_strategy": "random",
        "dataloader_drop_last": False,
        "remove_unused_columns": False,
        "label_smoothing_factor": 0.0,
        "gradient_checkpointing": False,
        "neftune_noise_alpha": None,
        "use_liger_kernel": False,
        # FinetuneTrainingArguments' own options, where the run has them
        "early_stopping_patience": None,
        "eval_before_training": False,
        "hp_search_trials": 0,
        "hp_search_space": None,
        "hp_search_storage": None,
        "bucket_by_length": False,
        "pack_sequences": False,
    }
    names = {field.name for field in dataclasses.fields(training_args)}
    return dataclasses.replace(training_args, **{key: value for key, value in changes.items() if key in names})


def train_contrastive(
    model: MeanPoolingForSequenceClassification,
    tokenizer,
    texts: Sequence[str],
    label_ids: Sequence[int],
    data_args,
    seed: int,
    training_args: TrainingArguments,
) -> dict[str, float]:
    """Tune the encoder through `Trainer` so that same-label texts have cosine 1 and others 0 (mean squared error:
    SetFit's CosineSimilarityLoss). Returns the pair and step counts and the mean loss of the last 10% of steps."""
    pairs = contrastive_pairs(label_ids, data_args.few_shot_iterations, seed, data_args.few_shot_max_pairs)
    steps = contrastive_steps(
        len(pairs), data_args.few_shot_batch_size, data_args.few_shot_epochs, training_args.world_size
    )
    args = contrastive_training_args(training_args, data_args, steps, seed)
    logger.info(
        "Contrastive training: %d pairs (%d same-label), %d steps of %d pairs per process; logs in %s",
        len(pairs),
        sum(t == 1.0 for *_, t in pairs),
        steps,
        data_args.few_shot_batch_size,
        args.output_dir,
    )
    trainer = PairTrainer(
        model=CosinePairLoss(model),
        args=args,
        train_dataset=pairs,
        processing_class=tokenizer,
        data_collator=PairCollator(tokenizer, texts, data_args.max_seq_length),
    )
    model.head.requires_grad_(False)  # not in the pair loss; the head is fitted afterwards
    try:
        trainer.train()
    finally:
        model.head.requires_grad_(True)
    model.eval()
    if args.should_save and os.path.isdir(args.output_dir) and not os.listdir(args.output_dir):
        os.rmdir(args.output_dir)  # nothing was logged there (report_to none)
    losses = trainer.mean_step_losses()
    trainer.accelerator.free_memory()  # the optimizer's state and the DDP wrapper: the pipeline's Trainer is next
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "contrastive_pairs": len(pairs),
        "contrastive_steps": trainer.state.global_step,
        "contrastive_final_loss": float(np.mean(tail)),
    }


def head_from_logistic_regression(
    embeddings: np.ndarray, label_ids: Sequence[int], num_labels: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(weight [labels x dim], bias [labels]) of a logistic regression on the embeddings (SetFit's default head).
    Two labels: scikit-learn fits one row w for label 1; logits (0, w.x + b) give the same probabilities."""
    from sklearn.linear_model import LogisticRegression

    present = sorted(set(label_ids))
    if present != list(range(num_labels)):
        raise DataError(f"the head needs examples of every label; got label ids {present} of {num_labels}.")
    regression = LogisticRegression(max_iter=1000, random_state=seed).fit(embeddings, np.asarray(label_ids))
    weight, bias = regression.coef_, regression.intercept_
    if num_labels == 2:
        weight = np.vstack([np.zeros_like(weight), weight])
        bias = np.concatenate([np.zeros_like(bias), bias])
    return weight.astype(np.float32), bias.astype(np.float32)


def set_head(model: MeanPoolingForSequenceClassification, weight: np.ndarray, bias: np.ndarray) -> None:
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(weight))
        model.head.bias.copy_(torch.as_tensor(bias))


def fit_contrastive_model(
    model: MeanPoolingForSequenceClassification,
    tokenizer,
    train: Dataset,
    labels: LabelSpace,
    data_args,
    seed: int,
    training_args: TrainingArguments,
) -> dict[str, Any]:
    """Contrastive encoder training on the K-shot split (through `Trainer`, with the run's precision, processes and
    logging), a logistic-regression head on top, encoder frozen after."""
    label_ids = [labels.label2id[name] for name in train["label"]]
    texts = list(train["text"])
    stats = train_contrastive(model, tokenizer, texts, label_ids, data_args, seed, training_args)
    embeddings = encode_texts(model, tokenizer, texts, data_args.max_seq_length)
    set_head(model, *head_from_logistic_regression(embeddings, label_ids, len(labels), seed))
    for parameter in model.encoder.parameters():
        parameter.requires_grad = False  # the train stage fits only the head
    logger.info("Contrastive few-shot: %s; head fitted on %d embeddings", stats, len(texts))
    return stats
