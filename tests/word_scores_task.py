"""A third task, defined only here, to show that a task plugs into the shared code through its `Task` record alone:
word-level regression ("word scores": a number per word, e.g. emphasis or reading difficulty). Nothing under
utils/ knows it; tests/test_third_task.py trains it, predicts with `Predictor`, serves it over HTTP and exports it to
ONNX.

Data: JSONL lines `{"tokens": [...], "scores": [...]}`, one score per word. The model is a token-classification model
with one output; a word's score is its first subword's output (the others are ignored, -100, in the loss).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import AutoModelForTokenClassification

from utils.core.arguments import DataArguments
from utils.core.data import load_raw_datasets
from utils.core.errors import DataError
from utils.core.examples import TEXT, TOKENS, Example
from utils.core.labels import LabelSpace, fine_tuned_labels
from utils.core.losses import IGNORE_INDEX
from utils.core.splits import split_source
from utils.core.task import PROJECT_ROOT, Forward, LoadedData, Task, TaskData, TaskServing, TaskTraining

LABELS = LabelSpace(("score",))


# ---------------------------------------------------------------- data


def load_word_scores(data_args: DataArguments, model_args) -> LoadedData:
    """Every split as `tokens` and `scores` (a float per word); a row whose lengths differ is an error naming it."""
    raw = load_raw_datasets(data_args, cache_dir=model_args.cache_dir)
    splits = DatasetDict()
    for split, dataset in raw.items():
        tokens, scores = list(dataset["tokens"]), list(dataset["scores"]) if "scores" in dataset.column_names else None
        for row, words in enumerate(tokens):
            if scores is not None and len(scores[row]) != len(words):
                raise DataError(
                    f"row {row + 1}: {len(words)} tokens but {len(scores[row])} scores.",
                    source=split_source(data_args, split),
                )
        columns: dict[str, Any] = {"tokens": tokens}
        if scores is not None:
            columns["scores"] = [[float(value) for value in row] for row in scores]
        splits[split] = Dataset.from_dict(columns)
    return LoadedData(splits, data_args)


def encode_words(tokenizer, words: Sequence[Sequence[str]], max_length: int) -> dict[str, list]:
    """Pre-split words as model inputs, and each subword's word (-1: a special token or a word's later subword)."""
    encoded = tokenizer([list(w) for w in words], is_split_into_words=True, truncation=True, max_length=max_length)
    firsts = []
    for row in range(len(words)):
        seen, first = set(), []
        for word in encoded.word_ids(row):
            first.append(word if word is not None and word not in seen else -1)
            seen.add(word)
        firsts.append(first)
    return {**{key: list(value) for key, value in encoded.items()}, "word_index": firsts}


def encode_split(split: Dataset, tokenizer, labels: LabelSpace, data: LoadedData) -> Dataset:
    """Model inputs; a sentence longer than --max_seq_length is an error (this small task has no windows)."""
    encoded = encode_words(tokenizer, split["tokens"], data.args.max_seq_length)
    for row, (words, firsts) in enumerate(zip(split["tokens"], encoded["word_index"], strict=True)):
        if sum(word >= 0 for word in firsts) < len(words):
            raise DataError(f"row {row + 1} is longer than --max_seq_length {data.args.max_seq_length} tokens.")
    encoded["example_index"] = list(range(len(split)))
    if "scores" in split.column_names:
        encoded["labels"] = [
            [scores[word] if word >= 0 else float(IGNORE_INDEX) for word in row]
            for row, scores in zip(encoded["word_index"], split["scores"], strict=True)
        ]
    return Dataset.from_dict(encoded)


# ---------------------------------------------------------------- training


@dataclass
class FloatLabelCollator:
    """Pads the inputs with the tokenizer and the float labels with the ignore index."""

    tokenizer: Any
    pad_to: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        labels = [feature.pop("labels") for feature in features] if "labels" in features[0] else None
        batch = self.tokenizer.pad(
            features, padding="max_length" if self.pad_to else True, max_length=self.pad_to, return_tensors="pt"
        )
        if labels is not None:
            width = batch["input_ids"].shape[1]
            batch["labels"] = torch.tensor([row + [float(IGNORE_INDEX)] * (width - len(row)) for row in labels])
        return dict(batch)


def masked_mse(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """Mean squared error over the words' first subwords."""
    predicted = outputs["logits"][..., 0]
    kept = labels != IGNORE_INDEX
    return ((predicted[kept] - labels[kept]) ** 2).mean()


def first_output(logits, labels=None):
    return (logits[0] if isinstance(logits, tuple) else logits)[..., 0]


def decode(predictions, features: Dataset, raw: Dataset, labels: LabelSpace, data: LoadedData) -> list[list[float]]:
    """Each word's predicted score, from its first subword, in input order."""
    result: list[list[float]] = [[] for _ in range(len(raw))]
    for row, words, example in zip(predictions, features["word_index"], features["example_index"], strict=True):
        result[example] = [float(row[position]) for position, word in enumerate(words) if word >= 0]
    return result


def score(decoded: list[list[float]], raw: Dataset, labels: LabelSpace, data: LoadedData) -> tuple[dict, str]:
    if "scores" not in raw.column_names:
        return {}, ""
    gold = np.concatenate([np.asarray(row, dtype=float) for row in raw["scores"]])
    predicted = np.concatenate([np.asarray(row, dtype=float) for row in decoded])
    mse = float(np.mean((gold - predicted) ** 2))
    return {"mse": mse}, f"word-level MSE {mse:.4f} over {len(gold)} words\n"


def write_predictions(
    output_dir: str, raw: Dataset, decoded: list[list[float]], labels: LabelSpace, data: LoadedData
) -> list[str]:
    with open(os.path.join(output_dir, "predictions.jsonl"), "w", encoding="utf-8") as stream:
        for tokens, scores in zip(raw["tokens"], decoded, strict=True):
            stream.write(json.dumps({"tokens": tokens, "scores": scores}) + "\n")
    return ["predictions.jsonl"]


# ---------------------------------------------------------------- serving


@dataclass(frozen=True)
class WordScoreOptions:
    """This task's own prediction option: how many decimals a score keeps."""

    decimals: int = field(default=6, metadata={"help": "Decimals of each word's score."})


@dataclass(frozen=True)
class WordScorePrediction:
    forward: Forward
    tokenizer: Any
    max_seq_length: int
    decimals: int
    whole_documents: bool = False

    def settings(self) -> dict[str, Any]:
        return {"decimals": self.decimals}

    def predict(self, examples: Sequence[Example], uncertainty: bool = False) -> list[dict[str, Any]]:
        words = [list(e.tokens) if e.tokens is not None else e.text.split() for e in examples]
        present = [i for i, row in enumerate(words) if row]
        results = [{"tokens": row, "scores": []} for row in words]
        if not present:
            return results
        encoded = encode_words(self.tokenizer, [words[i] for i in present], self.max_seq_length)
        for rows, outputs in self.forward(encoded):
            values = outputs["logits"][..., 0]
            for row, index in enumerate(rows):
                positions = [p for p, word in enumerate(encoded["word_index"][index]) if word >= 0]
                results[present[index]]["scores"] = [round(float(values[row, p]), self.decimals) for p in positions]
        return results


def word_score_predictor(
    forward: Forward, tokenizer, config, labels: LabelSpace, max_seq_length: int, options: WordScoreOptions
) -> WordScorePrediction:
    return WordScorePrediction(forward, tokenizer, max_seq_length, options.decimals)


WORD_SCORES_TASK = Task(
    name="word_scores",
    script="tests/test_third_task.py",
    pipeline_tag="token-classification",
    sample_config=str(PROJECT_ROOT / "configs/ner/sample.yaml"),  # not used: the tests always give data
    data=TaskData(
        arguments=DataArguments,
        load=load_word_scores,
        build_labels=lambda data, config: LABELS,
        check_labels=lambda data, labels: data.raw,
        encode=encode_split,
        tokenizer_kwargs=lambda config, data_args: {"word_split": True},  # its inputs are pre-split words
    ),
    training=TaskTraining(
        auto_model=AutoModelForTokenClassification,
        peft_task_type="TOKEN_CLS",
        token_outputs=True,
        collator=lambda tokenizer, data, pad_to: FloatLabelCollator(tokenizer, pad_to),
        reduce_logits=first_output,
        decode=decode,
        score=score,
        write_predictions=write_predictions,
        prediction_files=("predictions.jsonl",),
        report_file="word_scores_report.txt",
        loss=lambda data, labels, training_args: masked_mse,
        best_metric=lambda data: ("mse", False),
    ),
    serving=TaskServing(
        options=WordScoreOptions,
        input_kinds=frozenset({TEXT, TOKENS}),
        predictor=word_score_predictor,
        label_names=fine_tuned_labels,
        decisions=lambda result: [score > 0.5 for score in result["scores"]],
        decision_unit="word",
        architecture_suffix="ForTokenClassification",
    ),
)
