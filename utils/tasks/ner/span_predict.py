"""The span head's predictions for `Predictor` (predict.py, serve.py, the ONNX backend): the windows training
encodes, each candidate span's label probabilities, and the nested or flat decoding the model was trained with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from utils.core.errors import ConfigError
from utils.core.examples import PAIR, TOKENS, Example
from utils.core.labels import LabelSpace
from utils.core.task import Forward
from utils.tasks.ner.encoding import NerWindows
from utils.tasks.ner.iob import Span
from utils.tasks.ner.outputs import entity_record
from utils.tasks.ner.span_decoding import decode_spans
from utils.tasks.ner.span_encoding import candidate_spans, encode_span_batch
from utils.tasks.ner.words import words_with_offsets


@dataclass(frozen=True)
class SpanPrediction:
    """Entities of a span-head model, nested or flat (`decoding`); results as the token head's, without tags."""

    forward: Forward = field(repr=False)
    tokenizer: Any = field(repr=False)
    labels: LabelSpace
    windows: NerWindows
    max_span_length: int
    max_span_tokens: int
    decoding: str
    whole_documents: bool = False

    def settings(self) -> dict[str, Any]:
        return {
            "head": "span",
            "stride": self.windows.stride,
            "max_span_length": self.max_span_length,
            "span_decoding": self.decoding,
        }

    def predict(self, examples: Sequence[Example], uncertainty: bool = False) -> list[dict[str, Any]]:
        if any(example.kind == PAIR for example in examples):
            raise ConfigError(
                "Sentence pairs are for sentence-pair classification models; this model tags entities in one text."
            )
        results = []
        for example in examples:
            if example.kind == TOKENS:
                words = list(example.tokens)
                entities = self.entities([words])[0]
                results.append(
                    {
                        "text": " ".join(words),
                        "tokens": words,
                        "entities": [
                            entity_record(s.label, " ".join(words[s.start : s.end]), s.start, s.end, [p])
                            for s, p in entities
                        ],
                    }
                )
            else:
                found = words_with_offsets(example.text)
                entities = self.entities([[w.text for w in found]])[0]
                records = []
                for span, probability in entities:
                    start, end = found[span.start].start, found[span.end - 1].end
                    records.append(entity_record(span.label, example.text[start:end], start, end, [probability]))
                results.append({"text": example.text, "entities": records})
            if uncertainty:
                scores = [entity["score"] for entity in results[-1]["entities"]]
                results[-1]["uncertainty"] = round(1.0 - min(scores), 4) if scores else 0.0
        return results

    def entities(self, sentences: Sequence[Sequence[str]]) -> list[list[tuple[Span, float]]]:
        """Each sentence's decoded entities with their probabilities."""
        present = [i for i, words in enumerate(sentences) if len(words)]
        result: list[list[tuple[Span, float]]] = [[] for _ in sentences]
        if not present:
            return result
        features = encode_span_batch(
            {"tokens": [list(sentences[i]) for i in present]},
            list(range(len(present))),
            tokenizer=self.tokenizer,
            windows=self.windows,
            max_span_length=self.max_span_length,
            max_span_tokens=self.max_span_tokens,
        )
        spans: list[list[tuple[int, int]]] = [[] for _ in present]
        scores: list[list[np.ndarray]] = [[] for _ in present]
        for rows, outputs in self.forward(features):
            probabilities = outputs["logits"].softmax(-1).numpy()
            for row, window in enumerate(rows):
                example = features["example_index"][window]
                for t, j, start, end in candidate_spans(
                    features["word_index"][window],
                    features["word_end"][window],
                    self.max_span_length,
                    self.max_span_tokens,
                ):
                    spans[example].append((start, end))
                    scores[example].append(probabilities[row, t, j])
        for position, example in enumerate(present):
            matrix = np.stack(scores[position]) if scores[position] else np.zeros((0, len(self.labels)))
            result[example] = decode_spans(spans[position], matrix, self.labels.names, self.decoding)
        return result


def span_predictor(
    forward: Forward, tokenizer, config, labels: LabelSpace, max_seq_length: int, options
) -> SpanPrediction:
    """The span head's prediction object, with the settings its config recorded (--stride as the token head's)."""
    return SpanPrediction(
        forward,
        tokenizer,
        labels,
        NerWindows.build(tokenizer, max_seq_length, options.stride),
        config.max_span_length,
        config.max_span_tokens,
        getattr(config, "span_decoding", "nested"),
    )
