"""Classification's data options: text columns, problem type, class weights, truncation; zero- and few-shot."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from utils.core.arguments import DataArguments
from utils.core.errors import ConfigError
from utils.core.losses import MULTI, SINGLE

logger = logging.getLogger(__name__)

CONTRASTIVE, FINETUNE = "contrastive", "finetune"

WARMUP_RATIO = 0.1  # SetFit's default for the contrastive phase


@dataclass
class FewShotArguments:
    """Zero-shot and few-shot options (mixed into the classification data arguments)."""

    zero_shot: bool = field(
        default=False,
        metadata={"help": "No training: each text gets the label whose description is most similar (cosine of "
                  "mean-pooled embeddings). The train split, if given, is not used."},
    )
    label_descriptions: str | None = field(
        default=None,
        metadata={"help": "Zero-shot: YAML/JSON mapping of label name to a description (or a list of them, "
                  "averaged); its order is the label order. Default: the label names themselves."},
    )
    few_shot_k: int | None = field(
        default=None, metadata={"help": "Train on K examples per label, sampled (stratified) from the train split."}
    )
    few_shot_method: str = field(
        default=CONTRASTIVE,
        metadata={"help": "contrastive: SetFit-style pair training of the encoder, then a fitted head; finetune: "
                  "the ordinary recipe on the K-shot sample.", "choices": [CONTRASTIVE, FINETUNE]},
    )
    few_shot_seed: int = field(default=42, metadata={"help": "Seed of the K-shot sample and of the pairs."})
    few_shot_iterations: int = field(
        default=20, metadata={"help": "Contrastive: pair-generation rounds; each gives every example one positive and "
                              "one negative pair."}
    )
    few_shot_max_pairs: int | None = field(
        default=None, metadata={"help": "Contrastive: at most this many pairs (half positive, half negative)."}
    )
    few_shot_batch_size: int = field(default=16, metadata={"help": "Contrastive: pairs per step."})
    few_shot_learning_rate: float = field(default=2e-5, metadata={"help": "Contrastive: encoder learning rate."})
    few_shot_epochs: int = field(default=1, metadata={"help": "Contrastive: passes over the pairs."})

    def check_few_shot(self) -> None:
        if self.zero_shot and self.few_shot_k:
            raise ConfigError("--zero_shot and --few_shot_k exclude each other: zero-shot trains on nothing.")
        if self.label_descriptions and not self.zero_shot:
            raise ConfigError("--label_descriptions is for --zero_shot; add --zero_shot or drop it.")
        if self.few_shot_k is not None and self.few_shot_k < 1:
            raise ConfigError(f"--few_shot_k must be a positive number of examples per label, got {self.few_shot_k}.")
        if self.few_shot_k == 1 and self.few_shot_method == CONTRASTIVE:
            raise ConfigError("--few_shot_k 1 gives no same-label pairs for contrastive training; use K >= 2 or "
                              "--few_shot_method finetune.")
        for name in ("few_shot_iterations", "few_shot_batch_size", "few_shot_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if self.few_shot_max_pairs is not None and self.few_shot_max_pairs < 2:
            raise ConfigError(f"--few_shot_max_pairs must be at least 2, got {self.few_shot_max_pairs}.")

    @property
    def contrastive(self) -> bool:
        return bool(self.few_shot_k) and self.few_shot_method == CONTRASTIVE

    @property
    def model_without_training(self) -> bool:
        """Zero-shot writes a model to output_dir without a train stage (the pipeline protects the directory)."""
        return self.zero_shot


@dataclass
class ClassificationDataArguments(DataArguments, FewShotArguments):
    """Classification-specific data options (zero-shot and few-shot ones in `FewShotArguments`)."""

    text_column_names: str | None = field(
        default=None,
        metadata={"help": "Text column, or two comma-separated columns encoded as a sentence pair "
                  "(default: the one text column of each split)."},
    )
    problem_type: str | None = field(
        default=None,
        metadata={"help": "Override the type detected from the labels.",
                  "choices": ["single_label", "multi_label", "regression", SINGLE, MULTI]},
    )
    label_delimiter: str = field(default=",", metadata={"help": "Separator of multi-label names in one string."})
    threshold: float = field(default=0.5, metadata={"help": "Multi-label: probability above which a label is on."})
    class_weights: str = field(
        default="none",
        metadata={"help": "Weighted loss: 'none', 'auto' (inverse class frequency in training), or one weight per "
                  "label in label order, e.g. 1,3.5."},
    )
    truncation_side: str = field(
        default="right", metadata={"help": "Which end of a too-long text to cut.", "choices": ["right", "left"]}
    )
    pad_to_max_length: bool = field(
        default=False, metadata={"help": "Pad every input to max_seq_length (slow; default pads per batch)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_few_shot()

    @property
    def text_columns(self) -> list[str] | None:
        if not self.text_column_names:
            return None
        names = [name.strip() for name in self.text_column_names.split(",") if name.strip()]
        if not 1 <= len(names) <= 2:
            raise ConfigError("--text_column_names takes one column, or two for sentence pairs.")
        return names
