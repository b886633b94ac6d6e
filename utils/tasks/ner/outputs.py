"""From windows back to words: predicted tags per sentence, entity records, prediction files, model-card lines.

An entity is built by `entity_record` wherever one is written: a run's predictions.jsonl and predict.py /
`Predictor` results (utils/tasks/ner/predict.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from datasets import Dataset

from utils.core.conll import write_conll
from utils.core.files import write_jsonl
from utils.core.labels import LabelSpace
from utils.core.task import LoadedData
from utils.tasks.ner.alignment import gather_word_predictions
from utils.tasks.ner.arguments import NerDataArguments
from utils.tasks.ner.iob import tags_to_spans
from utils.tasks.ner.tag_decoding import gather_word_scores, run_decoder

logger = logging.getLogger(__name__)


#: What `write_ner_predictions` writes into the output directory.
PREDICTION_FILES = ("predictions.conll", "predictions.jsonl")

#: An entity's keys in predict.py's / `Predictor`'s results, and (without a score) in a run's predictions.jsonl, in
#: their order; each keeps the order its files have always had, so new files compare line for line with old ones.
PREDICTED_ENTITY_KEYS = ("label", "text", "start", "end", "score")
RUN_ENTITY_KEYS = ("label", "start", "end", "text")

SCORE_DECIMALS = 4  # an entity's score: the mean probability of its words' tags


def entity_mean(word_scores: Sequence[float]) -> float:
    """The mean of an entity's word probabilities, in plain Python: called once per predicted entity, where
    `np.mean`'s array conversion costs more than the sum of a few floats (the same value up to the last bit)."""
    return float(sum(word_scores) / len(word_scores))


def entity_record(
    label: str,
    text: str,
    start: int,
    end: int,
    word_scores: Sequence[float] | None = None,
    keys: Sequence[str] = PREDICTED_ENTITY_KEYS,
) -> dict[str, Any]:
    """One entity: its type, its text, where it starts and ends (word indices or character offsets, end exclusive),
    and with `word_scores` (its words' tag probabilities) a score, their mean to SCORE_DECIMALS; keys in `keys`
    order."""
    values: dict[str, Any] = {"label": label, "text": text, "start": start, "end": end}
    if word_scores is not None:
        values["score"] = round(entity_mean(word_scores), SCORE_DECIMALS)
    return {key: values[key] for key in keys if key in values}


def decode_ner(predictions, features: Dataset, raw: Dataset, labels: LabelSpace, data: LoadedData) -> list[list[str]]:
    """Per-word predicted tags for every sentence of the split, reassembled from its windows and decoded as
    --decoding says (token log-probabilities, or full logits with --no_argmax_in_metrics; label ids are taken as
    they are)."""
    lengths = [len(tokens) for tokens in raw["tokens"]]
    names = labels.names
    if predictions.ndim == 3:
        decoder = run_decoder(data, labels)
        scores = gather_word_scores(predictions, features["word_index"], features["example_index"], lengths)
        return [[names[i] for i in decoder.decode(sentence)] for sentence in scores]
    word_ids = gather_word_predictions(predictions, features["word_index"], features["example_index"], lengths)
    return [[names[i] for i in sentence] for sentence in word_ids]


def write_ner_predictions(
    output_dir: str, raw: Dataset, decoded: list[list[str]], labels: LabelSpace, data: LoadedData
) -> list[str]:
    """predictions.conll (word, gold, predicted) and predictions.jsonl (entities as word spans), input order."""
    gold = raw["ner_tags"] if "ner_tags" in raw.column_names else [None] * len(raw)
    tokens, documents = raw["tokens"], raw["document_id"]
    rows = []
    records = []
    for index, (words, tags, predicted) in enumerate(zip(tokens, gold, decoded, strict=True)):
        rows.append([(w, g, p) for w, g, p in zip(words, tags, predicted)] if tags else list(zip(words, predicted)))
        entities = [
            entity_record(
                span.label, " ".join(words[span.start : span.end]), span.start, span.end, keys=RUN_ENTITY_KEYS
            )
            for span in tags_to_spans(predicted)
        ]
        record = {
            "id": index,
            "document_id": documents[index],
            "tokens": words,
            "predicted": predicted,
            "entities": entities,
        }
        if tags:
            record["gold"] = tags
        records.append(record)
    conll_file, jsonl_file = PREDICTION_FILES
    write_conll(os.path.join(output_dir, conll_file), rows)
    write_jsonl(os.path.join(output_dir, jsonl_file), records)
    return list(PREDICTION_FILES)


def ner_card_details(data: LoadedData, labels: LabelSpace) -> list[str]:
    """Model-card lines that matter for NER: how long sentences were handled and how entities were scored."""
    data_args: NerDataArguments = data.args
    return [
        "## Method",
        "",
        f"- Sentences longer than {data_args.max_seq_length} tokens are split into windows overlapping by "
        f"{data_args.stride} tokens; every word gets exactly one prediction.",
        f"- Training labels: {'every subword' if data_args.label_all_tokens else 'first subword of each word'}.",
        *(
            [
                f"- Document context: up to {data_args.context_size} subword tokens of the neighbouring sentences of "
                "the same document on each side of a sentence (unlabelled)."
            ]
            if data_args.context_size
            else []
        ),
        f"- Entity scores: seqeval, {data_args.seqeval_mode} mode.",
    ]
