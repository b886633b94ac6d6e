"""Classification's predictions for `Predictor` (utils/serving/predictor.py), which hands every task a forward pass
and delegates to the object its `Task.predictor` builds.

Texts (and pairs, as real pairs) are tokenized whole; only those longer than max_seq_length are encoded again, cut,
and marked `"truncated": true`. Logits are decoded by `classification_results`, as in training's predict stage, so
predict.py gives what the run's predictions.jsonl gave. Blank texts get an empty result without a forward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from utils.core.calibration import Calibration, label_sets, softmax
from utils.core.errors import ConfigError
from utils.core.examples import PAIR, TOKENS, Example
from utils.core.labels import LabelSpace, fine_tuned_labels
from utils.core.losses import MULTI, REGRESSION, SINGLE
from utils.core.task import Forward
from utils.core.text_encoding import encode_texts
from utils.tasks.classification.outputs import classification_results
from utils.tasks.classification.uncertainty import text_uncertainty

logger = logging.getLogger(__name__)


def empty_result(problem_type: str) -> dict[str, Any]:
    """The result of a blank text: no label, no probabilities (or no value)."""
    return {
        SINGLE: {"label": None, "probabilities": {}},
        MULTI: {"labels": [], "probabilities": {}},
        REGRESSION: {"value": None},
    }[problem_type]


@dataclass(frozen=True)
class ClassificationPredictionOptions:
    """Classification's prediction options (predict.py and serve.py flags; `Predictor.from_pretrained(...,
    threshold=...)`)."""

    threshold: str | None = field(
        default=None,
        metadata={
            "help": "Multi-label: probability above which a label is on, or 'auto': the per-label thresholds "
            "chosen on validation (run_classification.py --threshold auto). Default: those when the model has "
            "them, else 0.5."
        },
    )


@dataclass(frozen=True)
class ClassificationPrediction:
    """Labels and probabilities of a sequence-classification model. `forward` runs the model: a mapping of input
    name to rows of token ids in, `(row indices, outputs by name)` out per batch (`utils.core.task.Forward`)."""

    forward: Forward = field(repr=False)
    tokenizer: Any = field(repr=False)
    labels: LabelSpace
    problem_type: str  # SINGLE, MULTI or REGRESSION
    threshold: float | tuple[float, ...]  # multi-label: the probability above which a label is on (or per label)
    max_seq_length: int
    num_labels: int  # outputs of the model's head
    calibration: Calibration = field(default_factory=Calibration)  # fitted on validation (utils/core/calibration.py)

    #: Each text is classified on its own, whatever document it comes from.
    whole_documents = False

    def settings(self) -> dict[str, Any]:
        threshold = (
            self.threshold if isinstance(self.threshold, float) else dict(zip(self.labels.names, self.threshold))
        )
        return {"threshold": threshold, "problem_type": self.problem_type, "calibration": self.calibration.to_dict()}

    def predict(self, examples: Sequence[Example], uncertainty: bool = False) -> list[dict[str, Any]]:
        """Single texts and sentence pairs (each kind in one call, results in order); documents do not matter."""
        if any(example.kind == TOKENS for example in examples):
            raise ConfigError(
                "Pre-split words (tokens) are for models that tag words; this model classifies texts (give texts)."
            )
        results: list[dict[str, Any]] = [{} for _ in examples]
        for pairs in (False, True):
            chosen = [i for i, example in enumerate(examples) if (example.kind == PAIR) == pairs]
            if chosen:
                outputs = self.predict_texts(
                    [examples[i].text for i in chosen],
                    [examples[i].text_pair for i in chosen] if pairs else None,
                    uncertainty,
                )
                for i, output in zip(chosen, outputs, strict=True):
                    results[i] = output
        return results

    def predict_texts(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, uncertainty: bool = False
    ) -> list[dict[str, Any]]:
        """`{"text", "label", "probabilities"}` per text (multi-label: `"labels"` over the threshold; regression:
        `"value"`), `"text_pair"` when given, `"truncated": true` when cut. `uncertainty`: each result's normalised
        entropy as `"uncertainty"` (utils/tasks/classification/uncertainty.py)."""
        if uncertainty:
            text_uncertainty({}, self.problem_type)  # regression is refused before any work
        present = [i for i, text in enumerate(texts) if text.strip()]
        logits, truncated = self.logits(texts, text_pairs, present)
        decoded = self.decode(logits)
        results = []
        for index, text in enumerate(texts):
            record: dict[str, Any] = {"text": text}
            if text_pairs is not None:
                record["text_pair"] = text_pairs[index]
            record.update(empty_result(self.problem_type))
            results.append(record)
        for row, index in enumerate(present):
            results[index].update(decoded[row])
            if truncated[row]:
                results[index]["truncated"] = True
        if uncertainty:
            for record in results:
                record["uncertainty"] = text_uncertainty(record.get("probabilities", {}), self.problem_type)
        return results

    def logits(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None, present: Sequence[int]
    ) -> tuple[np.ndarray, list[bool]]:
        """The model's logits (float64, before calibration) of the texts at `present`, and which were cut."""
        logits = np.zeros((len(present), self.num_labels), dtype=np.float64)
        if not present:
            return logits, []
        inputs = [[texts[i] for i in present]] + ([[text_pairs[i] for i in present]] if text_pairs else [])
        if text_pairs:
            encoded = {key: list(values) for key, values in self.tokenizer(*inputs, verbose=False).items()}
        else:
            encoded = encode_texts(self.tokenizer, inputs[0])
        truncated = [len(ids) > self.max_seq_length for ids in encoded["input_ids"]]
        long = [i for i, cut in enumerate(truncated) if cut]
        if long:  # only texts over the limit are encoded again, cut
            again = self.tokenizer(
                *[[column[i] for i in long] for column in inputs], truncation=True, max_length=self.max_seq_length
            )
            for key in encoded:
                for row, i in enumerate(long):
                    encoded[key][i] = again[key][row]
        for rows, outputs in self.forward(encoded):
            logits[rows] = outputs["logits"].numpy()
        return logits, truncated

    def decode(self, logits: np.ndarray) -> list[dict[str, Any]]:
        """Each text's result from its row of logits: divided by the fitted temperature (the argmax stays), with the
        conformal label set when one was fitted."""
        if self.problem_type == REGRESSION:
            return classification_results(logits, self.labels.names, self.problem_type, self.threshold)
        scaled = logits / self.calibration.temperature
        results = classification_results(scaled, self.labels.names, self.problem_type, self.threshold)
        if self.problem_type == SINGLE and self.calibration.conformal_threshold is not None:
            for result, members in zip(results, label_sets(softmax(scaled), self.calibration.conformal_threshold)):
                result["label_set"] = [name for name, member in zip(self.labels.names, members) if member]
        return results


def classification_predictor(
    forward: Forward,
    tokenizer,
    config,
    labels: LabelSpace,
    max_seq_length: int,
    options: ClassificationPredictionOptions,
) -> ClassificationPrediction:
    """`TaskServing.predictor` of classification: the problem type is the saved config's (a model from elsewhere
    without one: transformers' own rule, regression for one output), texts are cut at `max_seq_length`, and
    `options.threshold` is the multi-label cut-off."""
    calibration = Calibration.from_config(config)
    threshold = prediction_threshold(options.threshold, calibration, labels)
    problem_type = getattr(config, "problem_type", None)
    if problem_type is None:
        problem_type = REGRESSION if config.num_labels == 1 else SINGLE
    return ClassificationPrediction(
        forward, tokenizer, labels, problem_type, threshold, max_seq_length, config.num_labels, calibration
    )


def prediction_threshold(
    given: str | float | None, calibration: Calibration, labels: LabelSpace
) -> float | tuple[float, ...]:
    """--threshold: a probability; 'auto' the per-label thresholds the model was saved with; not given: those
    when there are some, else 0.5."""
    stored = calibration.thresholds
    if given is None or given == "auto":
        if stored:
            return tuple(float(stored.get(name, 0.5)) for name in labels.names)
        if given == "auto":
            raise ConfigError(
                "--threshold auto: this model has no per-label thresholds; train it with run_classification.py "
                "--threshold auto, or give a probability such as 0.5."
            )
        return 0.5
    try:
        value = float(given)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise ConfigError(f"--threshold {given}: must be a probability in [0, 1], such as 0.5, or 'auto'.")
    return value


def classification_label_names(config) -> list[str] | None:
    """A saved model's label names; a regression model's one output is its value, whatever its name."""
    names = fine_tuned_labels(config)
    if names is None and getattr(config, "problem_type", None) == REGRESSION:
        return ["value"]
    return names


def classification_decisions(result: dict[str, Any]) -> list[Any]:
    """What a result decides, for comparing an export with PyTorch: the label (or the set of labels) of the text; a
    regression value decides nothing to agree on."""
    if "labels" in result:
        return [tuple(result["labels"])]
    return [result["label"]] if "label" in result else []
