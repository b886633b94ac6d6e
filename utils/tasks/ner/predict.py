"""NER's predictions for `Predictor` (utils/serving/predictor.py), which hands every task a forward pass and
delegates to the object its `Task.predictor` builds.

A sentence becomes the windows training encodes (`NerWindows`, `encode_batch`: the same special tokens, stride and
document context, so a saved model sees what it was trained on), and each word gets the tag of its first subword in
the window owning it, with that tag's probability. Raw texts are first split into words as CoNLL-2003 writes them
(utils/tasks/ner/words.py), so their entities get character offsets; pre-split words get word-index spans.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import torch

from utils.core.calibration import Calibration, scaled_probability
from utils.core.errors import ConfigError, DataError
from utils.core.examples import PAIR, TOKENS, Example
from utils.core.labels import LabelSpace, fine_tuned_labels
from utils.core.task import Forward
from utils.tasks.ner.alignment import gather_word_predictions
from utils.tasks.ner.calibration import entity_confidence
from utils.tasks.ner.decoding import DECODINGS, TagDecoder
from utils.tasks.ner.encoding import NerWindows, context_columns, encode_batch
from utils.tasks.ner.iob import tags_to_spans
from utils.tasks.ner.outputs import SCORE_DECIMALS, entity_record
from utils.tasks.ner.span_model import HEAD_KEY, SPAN_HEAD
from utils.tasks.ner.span_predict import SpanPrediction, span_predictor
from utils.tasks.ner.tag_decoding import saved_decoder
from utils.tasks.ner.uncertainty import sentence_uncertainty
from utils.tasks.ner.words import words_with_offsets

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NerPredictionOptions:
    """NER's prediction options (predict.py and serve.py flags; `Predictor.from_pretrained(..., stride=...)`)."""

    stride: int | None = field(
        default=None,
        metadata={
            "help": "NER: tokens shared by consecutive windows of a long text "
            "(default: run_ner.py's --stride default, at most half a window)."
        },
    )
    context_size: int | None = field(
        default=None,
        metadata={
            "help": "NER: document context tokens per side (default: what the model was trained with). Needs "
            "documents in the input: CoNLL -DOCSTART- lines, a JSONL document field, or the service's "
            "document_ids."
        },
    )
    decoding: str | None = field(
        default=None,
        metadata={
            "help": "NER: 'constrained' (the most probable tag sequence the training data's scheme allows) or "
            "'argmax' (each word's most likely tag) (default: what the model was evaluated with; constrained "
            "for models saved before it was recorded).",
            "choices": list(DECODINGS),
        },
    )


@dataclass(frozen=True)
class NerPrediction:
    """Entities and word tags of a token-classification model. `forward` runs the model: a mapping of input name to
    rows of token ids in, `(row indices, outputs by name)` out per batch (`utils.core.task.Forward`)."""

    forward: Forward = field(repr=False)
    tokenizer: Any = field(repr=False)
    labels: LabelSpace
    windows: NerWindows
    context_size: int  # document context tokens per side, from the other sentences of the same document; 0: off
    decoder: TagDecoder  # word tag probabilities -> tags (utils/tasks/ner/decoding.py)
    calibration: Calibration = field(default_factory=Calibration)  # entity scores' temperature, fitted on validation

    @property
    def stride(self) -> int:
        return self.windows.stride

    @property
    def whole_documents(self) -> bool:
        """With document context a sentence's tags depend on its neighbours: give a document's sentences together."""
        return self.context_size > 0

    def settings(self) -> dict[str, Any]:
        return {
            "stride": self.stride,
            "context_size": self.context_size,
            "decoding": self.decoder.decoding,
            "tag_scheme": self.decoder.scheme,
            "calibration": self.calibration.to_dict(),
        }

    def predict(self, examples: Sequence[Example], uncertainty: bool = False) -> list[dict[str, Any]]:
        """Texts: `predict_texts`; pre-split words: `predict_tokens` (each kind in one call, results in order)."""
        if any(example.kind == PAIR for example in examples):
            raise ConfigError(
                "Sentence pairs are for sentence-pair classification models; this model tags entities in one text."
            )
        results: list[dict[str, Any]] = [{} for _ in examples]
        for words in (False, True):
            chosen = [i for i, example in enumerate(examples) if (example.kind == TOKENS) == words]
            if not chosen:
                continue
            documents = [examples[i].document for i in chosen]
            if words:
                outputs = self.predict_tokens([examples[i].tokens for i in chosen], documents, uncertainty)
            else:
                outputs = self.predict_texts([examples[i].text for i in chosen], documents, uncertainty)
            for i, output in zip(chosen, outputs, strict=True):
                results[i] = output
        return results

    def predict_texts(
        self, texts: Sequence[str], documents: Sequence[Hashable | None] | None = None, uncertainty: bool = False
    ) -> list[dict[str, Any]]:
        """`{"text", "entities": [{"label", "text", "start", "end", "score"}]}` per text, with character offsets;
        `uncertainty`: and each text's `"uncertainty"` (utils/tasks/ner/uncertainty.py)."""
        words = [words_with_offsets(text) for text in texts]
        tagged = self.tag_words_with_margins(
            [[word.text for word in text_words] for text_words in words], documents, margins=uncertainty
        )
        results = []
        for text, text_words, (tags, scores, margins) in zip(texts, words, tagged, strict=True):
            entities = []
            for span in tags_to_spans(tags):
                start, end = text_words[span.start].start, text_words[span.end - 1].end
                entities.append(self.entity(span.label, text[start:end], start, end, scores[span.start : span.end]))
            results.append({"text": text, "entities": entities})
            if uncertainty:
                results[-1]["uncertainty"] = sentence_uncertainty(margins)
        return results

    def predict_tokens(
        self,
        sentences: Sequence[Sequence[str]],
        documents: Sequence[Hashable | None] | None = None,
        uncertainty: bool = False,
    ) -> list[dict[str, Any]]:
        """`{"text", "tokens", "tags", "entities"}` per sentence, entity start/end being word indices;
        `uncertainty`: and each sentence's `"uncertainty"`."""
        results = []
        tagged = self.tag_words_with_margins(sentences, documents, margins=uncertainty)
        for tokens, (tags, scores, margins) in zip(sentences, tagged, strict=True):
            entities = [
                self.entity(
                    span.label,
                    " ".join(tokens[span.start : span.end]),
                    span.start,
                    span.end,
                    scores[span.start : span.end],
                )
                for span in tags_to_spans(tags)
            ]
            results.append({"text": " ".join(tokens), "tokens": list(tokens), "tags": tags, "entities": entities})
            if uncertainty:
                results[-1]["uncertainty"] = sentence_uncertainty(margins)
        return results

    def entity(self, label: str, text: str, start: int, end: int, word_scores: Sequence[float]) -> dict[str, Any]:
        """`entity_record`, its score calibrated: the words' mean probability under the map fitted on validation (its
        log-odds divided by the temperature plus the bias, or the isotonic map; utils/tasks/ner/calibration.py)."""
        record = entity_record(label, text, start, end, word_scores)
        if self.calibration.changes_scores:
            fitted = self.calibration
            score = scaled_probability(
                entity_confidence(word_scores), fitted.temperature, fitted.bias, fitted.isotonic
            )
            record["score"] = round(score, SCORE_DECIMALS)
        return record

    def tag_words(
        self, sentences: Sequence[Sequence[str]], documents: Sequence[Hashable | None] | None = None
    ) -> list[tuple[list[str], list[float]]]:
        """Each word's predicted tag and that tag's probability, from its first subword in the window owning it
        (with the document context the model was trained with, from the other sentences of the same document),
        the tags decoded by `decoder` (constrained: the best sequence the scheme allows, not each word's best)."""
        return [(tags, scores) for tags, scores, _ in self.tag_words_with_margins(sentences, documents, margins=False)]

    def tag_words_with_margins(
        self,
        sentences: Sequence[Sequence[str]],
        documents: Sequence[Hashable | None] | None = None,
        margins: bool = True,
    ) -> list[tuple[list[str], list[float], list[float]]]:
        """`tag_words`, plus each word's margin: its best tag's probability minus the runner-up's (`margins=False`:
        empty lists)."""
        return [
            self.decode_word(probabilities, margins) for probabilities in self.word_probabilities(sentences, documents)
        ]

    def decode_word(self, probabilities: np.ndarray, margins: bool) -> tuple[list[str], list[float], list[float]]:
        """One sentence's tags, their probabilities and (`margins`) each word's top-2 margin, from its words' tag
        probabilities ([words, tags])."""
        ids = self.decoder.decode_probabilities(probabilities)
        chosen = probabilities[np.arange(len(ids)), ids]
        margin: list[float] = []
        if margins and len(ids):
            top = np.sort(probabilities, axis=-1)
            margin = (top[:, -1] - top[:, -2] if top.shape[-1] > 1 else np.ones(len(ids))).tolist()
        return [self.labels.names[i] for i in ids], chosen.tolist(), margin

    def word_probabilities(
        self, sentences: Sequence[Sequence[str]], documents: Sequence[Hashable | None] | None = None
    ) -> list[np.ndarray]:
        """Each sentence's [words, tags] probabilities, each word's from its first subword in the window owning
        it."""
        if documents is not None and len(documents) != len(sentences):
            raise DataError(f"{len(sentences)} sentences but {len(documents)} document ids; give one per sentence.")
        present = [i for i, words in enumerate(sentences) if len(words)]
        result = [np.zeros((0, len(self.labels)), dtype=np.float32) for _ in sentences]
        if not present:
            return result
        batch: dict[str, list] = {"tokens": [list(sentences[i]) for i in present]}
        if self.context_size:
            batch.update(
                context_columns(
                    self.tokenizer,
                    batch["tokens"],
                    [None if documents is None else documents[i] for i in present],
                    self.context_size,
                    self.windows.max_tokens,
                )
            )
        features = encode_batch(batch, list(range(len(present))), tokenizer=self.tokenizer, windows=self.windows)
        lengths = [len(ids) for ids in features["input_ids"]]
        window_logits: list[np.ndarray] = [np.empty(0)] * len(lengths)
        for rows, outputs in self.forward(features):
            logits = outputs["logits"].numpy()
            for row, window in enumerate(rows):
                window_logits[window] = logits[row, : lengths[window]]
        # each word's position in the windows laid end to end: the alignment module checks one prediction per word
        starts = np.cumsum([0] + lengths[:-1])
        positions = gather_word_predictions(
            [range(s, s + n) for s, n in zip(starts, lengths)],
            features["word_index"],
            features["example_index"],
            [len(sentences[i]) for i in present],
        )
        # one softmax over the scored tokens of every window, not one per forward batch (per row with ONNX int8)
        words = np.concatenate(window_logits)[np.fromiter(chain.from_iterable(positions), dtype=np.int64)]
        probabilities = torch.from_numpy(words).softmax(-1).numpy()
        ends = np.cumsum([len(sentence_positions) for sentence_positions in positions])
        for example, sentence_probabilities in zip(present, np.split(probabilities, ends[:-1])):
            result[example] = sentence_probabilities
        return result


def ner_predictor(
    forward: Forward, tokenizer, config, labels: LabelSpace, max_seq_length: int, options: NerPredictionOptions
) -> NerPrediction | SpanPrediction:
    """`TaskServing.predictor` of NER: windows of `max_seq_length` tokens sharing `options.stride` (None: training's
    default, at most half a window), and `options.context_size` tokens of document context per side (None: what the
    model was trained with, from its config)."""
    if getattr(config, HEAD_KEY, None) == SPAN_HEAD:
        return span_predictor(forward, tokenizer, config, labels, max_seq_length, options)
    stride = options.stride
    context_size = getattr(config, "context_size", 0) if options.context_size is None else options.context_size
    if context_size < 0:
        raise ConfigError(f"--context_size must be 0 (off) or a number of tokens, got {context_size}.")
    windows = NerWindows.build(tokenizer, max_seq_length, stride)
    return NerPrediction(
        forward,
        tokenizer,
        labels,
        windows,
        context_size,
        saved_decoder(config, labels, options.decoding),
        Calibration.from_config(config),
    )


def ner_label_names(config) -> list[str] | None:
    """A saved NER model's tags (None: its config names none, it was never fine-tuned)."""
    return fine_tuned_labels(config)


def ner_decisions(result: dict[str, Any]) -> list[Any]:
    """What a result decides, for comparing an export with PyTorch: each word's tag (pre-split words), else the
    text's entity spans as one decision."""
    if "tags" in result:
        return list(result["tags"])
    return [tuple(sorted((entity["label"], entity["start"], entity["end"]) for entity in result["entities"]))]
