"""From windows back to words: predicted tags per sentence, prediction files, model-card lines."""

from __future__ import annotations

import logging
import os

from datasets import Dataset, DatasetDict

from utils.core.conll import write_conll
from utils.core.files import write_jsonl
from utils.core.labels import LabelSpace
from utils.tasks.ner.alignment import gather_word_predictions
from utils.tasks.ner.arguments import NerDataArguments
from utils.tasks.ner.iob import tags_to_spans

logger = logging.getLogger(__name__)


def decode_ner(predictions, features: Dataset, raw: Dataset, labels: LabelSpace, data_args: NerDataArguments
               ) -> list[list[str]]:
    """Per-word predicted tags for every sentence of the split, reassembled from its windows."""
    if predictions.ndim == 3:  # full logits (--no_argmax_in_metrics)
        predictions = predictions.argmax(-1)
    word_ids = gather_word_predictions(predictions, features["word_index"], features["example_index"],
                                       [len(tokens) for tokens in raw["tokens"]])
    names = labels.names
    return [[names[i] for i in sentence] for sentence in word_ids]


def write_ner_predictions(output_dir: str, raw: Dataset, decoded: list[list[str]], labels: LabelSpace,
                          data_args: NerDataArguments) -> list[str]:
    """predictions.conll (word, gold, predicted) and predictions.jsonl (entities as word spans), input order."""
    gold = raw["ner_tags"] if "ner_tags" in raw.column_names else [None] * len(raw)
    tokens, documents = raw["tokens"], raw["document_id"]
    rows = []
    records = []
    for index, (words, tags, predicted) in enumerate(zip(tokens, gold, decoded, strict=True)):
        rows.append([(w, g, p) for w, g, p in zip(words, tags, predicted)] if tags else list(zip(words, predicted)))
        entities = [{"label": span.label, "start": span.start, "end": span.end,
                     "text": " ".join(words[span.start : span.end])} for span in tags_to_spans(predicted)]
        record = {"id": index, "document_id": documents[index], "tokens": words, "predicted": predicted,
                  "entities": entities}
        if tags:
            record["gold"] = tags
        records.append(record)
    write_conll(os.path.join(output_dir, "predictions.conll"), rows)
    write_jsonl(os.path.join(output_dir, "predictions.jsonl"), records)
    return ["predictions.conll", "predictions.jsonl"]


def ner_card_details(raw: DatasetDict, labels: LabelSpace, data_args: NerDataArguments) -> list[str]:
    """Model-card lines that matter for NER: how long sentences were handled and how entities were scored."""
    return [
        "## Method", "",
        f"- Sentences longer than {data_args.max_seq_length} tokens are split into windows overlapping by "
        f"{data_args.stride} tokens; every word gets exactly one prediction.",
        f"- Training labels: {'every subword' if data_args.label_all_tokens else 'first subword of each word'}.",
        *([f"- Document context: up to {data_args.context_size} subword tokens of the neighbouring sentences of the "
           "same document on each side of a sentence (unlabelled)."] if data_args.context_size else []),
        f"- Entity scores: seqeval, {data_args.seqeval_mode} mode.",
    ]

