"""PREDICTORDOC"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from utils.core.arguments import ModelArguments
from utils.core.errors import ConfigError, DataError
from utils.core.labels import LabelSpace, fine_tuned_labels
from utils.core.losses import MULTI, REGRESSION, SINGLE
from utils.core.modeling import load_config, load_tokenizer
from utils.core.task import Task
from utils.tasks.classification.arguments import ClassificationDataArguments
from utils.tasks.classification.outputs import decode_classification
from utils.tasks.classification.task import CLASSIFICATION_TASK
from utils.tasks.ner.alignment import gather_word_predictions
from utils.tasks.ner.encoding import context_columns, encode_batch, special_token_template
from utils.tasks.ner.iob import tags_to_spans
from utils.tasks.ner.task import NER_TASK
from utils.tasks.ner.words import words_with_offsets

logger = logging.getLogger(__name__)

#: The task of a model, by the end of its architecture's name.
TASK_BY_ARCHITECTURE = {"ForTokenClassification": NER_TASK, "ForSequenceClassification": CLASSIFICATION_TASK}

DEFAULT_STRIDE = 32  # the training default (utils/tasks/ner/): enough context on both sides of a window's owned part

SCORE_DECIMALS = 4

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_task(config, directory: str) -> Task:
    """NER or classification, from the architecture the model was saved with."""
    architectures = getattr(config, "architectures", None) or []
    for architecture in architectures:
        for suffix, task in TASK_BY_ARCHITECTURE.items():
            if architecture.endswith(suffix):
                return task
    raise ConfigError(f"Cannot tell the task of the model in '{directory}': its architectures {architectures} end in "
                      "neither ForTokenClassification (NER) nor ForSequenceClassification (classification).")


def resolve_device(device: str | torch.device) -> torch.device:
    """`auto` is the GPU when there is one, else the CPU; asking for a GPU that is not there is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU is available here; use --device cpu or auto.")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device} is not a device; use cpu, cuda, cuda:N or auto.") from None


def model_limit(tokenizer: PreTrainedTokenizerBase, config) -> int:
    """The most tokens one model input may hold (the tokenizer's limit, else the position embeddings')."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    limits = [limit for limit in limits if limit and limit < 100_000]  # tokenizers without a limit say 1e30
    return min(limits) if limits else 512


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first, so running out of memory shows at once)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_right(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Rows as one tensor, padded on the right to the longest (the side the windows' positions count from)."""
    width = max(len(row) for row in rows)
    return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows], dtype=torch.long)


def check_texts(texts: Sequence[Any], what: str = "text") -> None:
    """A service may hand in anything: only strings are texts."""
    if isinstance(texts, str):
        raise DataError(f"expected a list of {what}s, got one string; wrap it in a list.")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"{what} {index} is {type(text).__name__}, not a string: {text!r:.80}")


@dataclass
class Predictor:
    """A fine-tuned model ready to predict; build it with `Predictor.from_pretrained(directory)`."""

    model: PreTrainedModel = field(repr=False)
    tokenizer: PreTrainedTokenizerBase = field(repr=False)
    task: str  # "ner" or "classification"
    labels: LabelSpace
    problem_type: str | None = None  # classification only: SINGLE, MULTI or REGRESSION
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 32
    max_seq_length: int = 512
    stride: int | None = None  # NER: tokens shared by consecutive windows; default min(32, half a window)
    threshold: float = 0.5
    context_size: int = 0  # NER: document context tokens per side (the model's training setting by default)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch_size must be positive, got {self.batch_size}.")
        if self.context_size < 0:
            raise ConfigError(f"--context_size must be 0 (off) or a number of tokens, got {self.context_size}.")
        limit = model_limit(self.tokenizer, self.model.config)
        if not 8 <= self.max_seq_length <= limit:
            raise ConfigError(f"--max_seq_length {self.max_seq_length} must be between 8 and the model's limit of "
                              f"{limit}.")
        self._prefix, self._suffix = special_token_template(self.tokenizer)
        self._max_tokens = self.max_seq_length - len(self._prefix) - len(self._suffix)
        if self.stride is None:
            self.stride = min(DEFAULT_STRIDE, self._max_tokens // 2)
        if self.task == NER_TASK.name and not 0 <= self.stride < self._max_tokens:
            raise ConfigError(f"--stride {self.stride} must be smaller than max_seq_length minus special tokens "
                              f"({self._max_tokens}).")
        self._token_types = "token_type_ids" in self.tokenizer.model_input_names
        # long texts are windowed (NER) or cut (classification) here, so the tokenizer's "longer than the maximum
        # ... will result in indexing errors" warning would only mislead; this is how it marks itself as shown
        warned = getattr(self.tokenizer, "deprecation_warnings", {})
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True

    @classmethod
    def from_pretrained(cls, directory: str, device: str | torch.device = "auto", batch_size: int = 32,
                        max_seq_length: int | None = None, stride: int | None = None, threshold: float = 0.5,
                        context_size: int | None = None) -> Predictor:
        """Load the model a fine-tuning run saved in `directory` (its `--output_dir`), in eval mode on `device`.

        `max_seq_length` defaults to the model's limit; `stride` (NER: tokens shared by consecutive windows of a long
        text) to min(32, half a window); `threshold` is the multi-label probability above which a label is on;
        `context_size` (NER: document context tokens per side) to what the model was trained with.
        """
        target = resolve_device(device)
        path = Path(directory)
        if not path.is_dir():
            raise ConfigError(f"Model directory '{directory}' does not exist. Point --model at the --output_dir of a "
                              "run_ner.py or run_classification.py run.")
        if not (path / "config.json").is_file():
            raise ConfigError(f"'{directory}' holds no config.json, so it is not a saved model. Point --model at the "
                              "--output_dir of a run_ner.py or run_classification.py run.")
        model_args = ModelArguments(model_name_or_path=str(directory))
        config = load_config(model_args)
        names = fine_tuned_labels(config)
        problem_type = getattr(config, "problem_type", None)
        if names is None and problem_type == REGRESSION:  # one output: a value, whatever the label is called
            names = ["value"]
        if names is None:
            raise ConfigError(f"The model in '{directory}' was never fine-tuned: its config has no label names (only "
                              "LABEL_0, LABEL_1, ...). Fine-tune it with run_ner.py or run_classification.py and "
                              "point --model at that run's --output_dir.")
        task = model_task(config, directory)
        if task is CLASSIFICATION_TASK and problem_type is None:  # models from elsewhere: transformers' own rule
            problem_type = REGRESSION if config.num_labels == 1 else SINGLE
        tokenizer = load_tokenizer(model_args, **task.tokenizer_kwargs(config))
        try:
            model = task.auto_model.from_pretrained(str(directory), config=config)
        except OSError as err:
            raise ConfigError(f"Could not load the model weights from '{directory}': {err}") from None
        model.to(target).eval()
        logger.info("Loaded %s model from %s on %s (labels: %s)", task.name, directory, target, ", ".join(names))
        return cls(model=model, tokenizer=tokenizer, task=task.name, labels=LabelSpace(tuple(names)),
                   problem_type=problem_type if task is CLASSIFICATION_TASK else None, device=target,
                   batch_size=batch_size, max_seq_length=max_seq_length or model_limit(tokenizer, config),
                   stride=stride, threshold=threshold,
                   context_size=getattr(config, "context_size", 0) if context_size is None else context_size)

    # ------------------------------------------------------------ public API

    def predict(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                documents: Sequence[Hashable | None] | None = None) -> list[dict[str, Any]]:
        """One result per text, in order.

        NER: `{"text", "entities": [{"label", "text", "start", "end", "score"}]}` with character offsets into the
        text. Classification: `{"text", "label", "probabilities"}` (multi-label: `"labels"` over the threshold;
        regression: `"value"`), `"truncated": true` when the text was cut; `text_pairs` for sentence-pair models.
        `documents` (NER): each text's document id, for models trained with document context (None: on its own).
        """
        check_texts(texts)
        if self.task == NER_TASK.name:
            if text_pairs is not None:
                raise ConfigError("Sentence pairs are for classification models; this model tags entities.")
            return self._predict_raw_ner(texts, documents)
        if text_pairs is not None:
            check_texts(text_pairs, "text_pair")
            if len(text_pairs) != len(texts):
                raise DataError(f"{len(texts)} texts but {len(text_pairs)} text pairs; give one pair per text.")
        return self._predict_classification(texts, text_pairs)

    def predict_tokens(self, sentences: Sequence[Sequence[str]], documents: Sequence[Hashable | None] | None = None
                       ) -> list[dict[str, Any]]:
        """NER on pre-split words: `{"text", "tokens", "tags", "entities"}` per sentence, entity start/end being word
        indices (`tokens[start:end]`) and `text` the words joined by spaces. `documents`: as for `predict`."""
        if self.task != NER_TASK.name:
            raise ConfigError("predict_tokens needs an NER model; this one classifies texts (use predict).")
        for index, tokens in enumerate(sentences):
            check_texts(tokens, f"token of sentence {index}")
        results = []
        for tokens, (tags, scores) in zip(sentences, self.tag_words(sentences, documents), strict=True):
            entities = [{"label": span.label, "text": " ".join(tokens[span.start : span.end]), "start": span.start,
                         "end": span.end, "score": mean_score(scores[span.start : span.end])}
                        for span in tags_to_spans(tags)]
            results.append({"text": " ".join(tokens), "tokens": list(tokens), "tags": tags, "entities": entities})
        return results

    def tag_words(self, sentences: Sequence[Sequence[str]], documents: Sequence[Hashable | None] | None = None
                  ) -> list[tuple[list[str], list[float]]]:
        """Each word's predicted tag and that tag's probability, from its first subword in the window owning it
        (with the document context the model was trained with, from the other sentences of the same document)."""
        if documents is not None and len(documents) != len(sentences):
            raise DataError(f"{len(sentences)} sentences but {len(documents)} document ids; give one per sentence.")
        present = [i for i, words in enumerate(sentences) if len(words)]
        result: list[tuple[list[str], list[float]]] = [([], []) for _ in sentences]
        if not present:
            return result
        batch: dict[str, list] = {"tokens": [list(sentences[i]) for i in present]}
        if self.context_size:
            batch.update(context_columns(self.tokenizer, batch["tokens"],
                                         [None if documents is None else documents[i] for i in present],
                                         self.context_size, self._max_tokens))
        features = encode_batch(batch, list(range(len(present))),
                                tokenizer=self.tokenizer, label2id={}, continuation={}, prefix=self._prefix,
                                suffix=self._suffix, max_tokens=self._max_tokens, stride=self.stride,
                                label_all_tokens=False, with_token_types=self._token_types)
        lengths = [len(ids) for ids in features["input_ids"]]
        best_id: list[np.ndarray] = [np.empty(0)] * len(lengths)
        best_probability: list[np.ndarray] = [np.empty(0)] * len(lengths)
        for batch, logits in self._logits(features):
            probability, label = logits.softmax(-1).max(-1)
            for row, window in enumerate(batch):
                best_id[window] = label[row, : lengths[window]].numpy()
                best_probability[window] = probability[row, : lengths[window]].numpy()
        # each word's position in the windows laid end to end: the alignment module checks one prediction per word
        starts = np.cumsum([0] + lengths[:-1])
        positions = gather_word_predictions([range(s, s + n) for s, n in zip(starts, lengths)],
                                            features["word_index"], features["example_index"],
                                            [len(sentences[i]) for i in present])
        all_ids, all_probabilities = np.concatenate(best_id), np.concatenate(best_probability)
        names = self.labels.names
        for example, sentence_positions in zip(present, positions):
            where = np.asarray(sentence_positions, dtype=np.int64)
            result[example] = ([names[i] for i in all_ids[where]], all_probabilities[where].tolist())
        return result

    # ------------------------------------------------------------ tasks

    def _predict_raw_ner(self, texts: Sequence[str], documents: Sequence[Hashable | None] | None
                         ) -> list[dict[str, Any]]:
        words = [words_with_offsets(text) for text in texts]
        tagged = self.tag_words([[word.text for word in text_words] for text_words in words], documents)
        results = []
        for text, text_words, (tags, scores) in zip(texts, words, tagged, strict=True):
            entities = []
            for span in tags_to_spans(tags):
                start, end = text_words[span.start].start, text_words[span.end - 1].end
                entities.append({"label": span.label, "text": text[start:end], "start": start, "end": end,
                                 "score": mean_score(scores[span.start : span.end])})
            results.append({"text": text, "entities": entities})
        return results

    def _predict_classification(self, texts: Sequence[str], text_pairs: Sequence[str] | None
                                ) -> list[dict[str, Any]]:
        present = [i for i, text in enumerate(texts) if text.strip()]
        decoded: list[dict[str, Any]] = []
        truncated: list[bool] = []
        if present:
            inputs = [[texts[i] for i in present]] + ([[text_pairs[i] for i in present]] if text_pairs else [])
            encoded = {key: list(values) for key, values in self.tokenizer(*inputs, verbose=False).items()}
            truncated = [len(ids) > self.max_seq_length for ids in encoded["input_ids"]]
            long = [i for i, cut in enumerate(truncated) if cut]
            if long:  # only texts over the limit are encoded again, cut
                again = self.tokenizer(*[[column[i] for i in long] for column in inputs], truncation=True,
                                       max_length=self.max_seq_length)
                for key in encoded:
                    for row, i in enumerate(long):
                        encoded[key][i] = again[key][row]
            logits = np.zeros((len(present), self.model.config.num_labels), dtype=np.float64)
            for batch, batch_logits in self._logits(encoded):
                logits[batch] = batch_logits.numpy()
            data_args = ClassificationDataArguments(problem_type=self.problem_type, threshold=self.threshold)
            decoded = decode_classification(logits, {"example_index": list(range(len(present)))}, present,
                                            self.labels, data_args)
        empty = {SINGLE: {"label": None, "probabilities": {}}, MULTI: {"labels": [], "probabilities": {}},
                 REGRESSION: {"value": None}}[self.problem_type or SINGLE]
        results = []
        for index, text in enumerate(texts):
            record: dict[str, Any] = {"text": text}
            if text_pairs is not None:
                record["text_pair"] = text_pairs[index]
            record.update(empty)
            results.append(record)
        for row, index in enumerate(present):
            results[index].update(decoded[row])
            if truncated[row]:
                results[index]["truncated"] = True
        return results

    def _logits(self, inputs: dict[str, list]) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(row indices, float32 logits on the CPU) for batches of rows of similar length."""
        rows = inputs["input_ids"]
        pad_id = self.tokenizer.pad_token_id or 0
        for batch in length_batches([len(row) for row in rows], self.batch_size):
            tensors = {key: pad_right([inputs[key][i] for i in batch], pad_id if key == "input_ids" else 0)
                       for key in MODEL_INPUTS if key in inputs}
            yield batch, self._forward(tensors)

    @torch.inference_mode()
    def _forward(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        outputs = self.model(**{key: value.to(self.device) for key, value in tensors.items()})
        return outputs.logits.float().cpu()


def mean_score(probabilities: Sequence[float]) -> float:
    return round(float(np.mean(probabilities)), SCORE_DECIMALS)

