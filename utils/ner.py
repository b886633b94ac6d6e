"""The NER task's pieces: canonical data, label space, subword encoding, decoding, scoring, prediction files."""

from __future__ import annotations

import ast
import json
import logging
import os
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict
from datasets import Sequence as SequenceFeature
from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification

from utils.alignment import IGNORE, NO_WORD, align_labels, document_context, gather_word_predictions
from utils.arguments import DataArguments
from utils.conll import ASCII_SPACE, read_conll, split_words, write_conll
from utils.data import file_format, load_raw_datasets, pick_column, split_source
from utils.errors import ConfigError, DataError
from utils.files import write_jsonl
from utils.iob import OUTSIDE, count_invalid_transitions, inside_tag, split_tag, tags_to_spans
from utils.labels import LabelSpace, build_label_space, fine_tuned_labels, unseen_labels
from utils.losses import SINGLE as SINGLE_LABEL
from utils.losses import make_loss
from utils.metrics import argmax_logits, entity_metrics
from utils.task import Task

logger = logging.getLogger(__name__)

TOKEN_COLUMNS = ("tokens", "words")
TAG_COLUMNS = ("ner_tags", "tags", "labels", "ner")
#: Tokenizers that need a space before each word when given pre-split words (BPE with byte-level spaces).
PREFIX_SPACE_MODELS = {"roberta", "gpt2", "bart", "longformer", "deberta", "mvp", "bloom"}
PREFIX_ORDER = {"B": 0, "I": 1, "E": 2, "S": 3}
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # what a JSON or Python escape can make, and arrow refuses
#: Columns of a split with document context: the subword ids each sentence borrows from its neighbours.
LEFT_CONTEXT, RIGHT_CONTEXT = "left_context", "right_context"


@dataclass
class NerDataArguments(DataArguments):
    """NER-specific data options (column names follow the transformers example)."""

    text_column_name: str | None = field(default=None, metadata={"help": "Column of word lists (default: tokens)."})
    tag_column: int = field(default=-1, metadata={"help": "CoNLL files: column holding the tag (default: last)."})
    document_column_name: str = field(
        default="document_id", metadata={"help": "Column holding document ids (tables); CoNLL uses -DOCSTART-."}
    )
    label_all_tokens: bool = field(
        default=False,
        metadata={"help": "Train on every subword (continuations of a B-X word get I-X), not only on the first. "
                  "Scoring is always per word."},
    )
    return_entity_level_metrics: bool = field(
        default=False, metadata={"help": "Report P/R/F1/support per entity type in the metrics, not only the report."}
    )
    stride: int = field(
        default=32, metadata={"help": "Tokens shared by consecutive windows of a sentence longer than max_seq_length."}
    )
    unknown_labels: str = field(
        default="error",
        metadata={"help": "A validation/test tag never seen in training: 'error', or 'O' to map it to O.",
                  "choices": ["error", "O"]},
    )
    seqeval_mode: str = field(
        default="conlleval",
        metadata={"help": "'conlleval' (lenient, like conlleval.pl) or 'strict' (exact --seqeval_scheme spans).",
                  "choices": ["conlleval", "strict"]},
    )
    seqeval_scheme: str = field(default="IOB2", metadata={"help": "Scheme for strict mode.",
                                                          "choices": ["IOB2", "IOBES"]})
    context_size: int = field(
        default=0,
        metadata={"help": "Document context (FLERT): up to N subword tokens of the neighbouring sentences of the same "
                  "document on each side of a sentence, never labelled or scored; documents come from -DOCSTART- "
                  "(CoNLL) or --document_column_name. 0: off. Saved in the model config, where predict.py finds it."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.context_size < 0:
            raise ConfigError(f"--context_size must be 0 (off) or a number of tokens, got {self.context_size}.")


# ---------------------------------------------------------------- loading: any source -> tokens/ner_tags/document_id


def read_conll_dataset(path: str, tag_column: int = -1) -> Dataset:
    """A CoNLL file as a canonical dataset (locations are file:line)."""
    corpus = read_conll(path, tag_column)
    columns: dict[str, list] = {
        "tokens": corpus.tokens,
        "document_id": [str(doc) for doc in corpus.document_id],
        "location": [f"{path}:{line}" for line in corpus.line],
    }
    if corpus.tags is not None:
        columns["ner_tags"] = corpus.tags
    return Dataset.from_dict(columns)


def parse_word_list(value: Any, location: str, what: str) -> list:
    """A list cell, or a CSV/TSV cell holding a JSON/Python list `[...]` or items separated by ASCII whitespace
    (so `[1] Smith` is two words)."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip(ASCII_SPACE)
        if not (text.startswith("[") and text.endswith("]")):
            return split_words(text)
        try:
            items = list(json.loads(text))
        except (ValueError, RecursionError):
            try:
                items = list(ast.literal_eval(text))
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                raise DataError(f"the {what} cell looks like a list but does not parse: {text[:80]}",
                                source=location) from None
        if any(isinstance(item, str) and LONE_SURROGATE.search(item) for item in items):
            raise DataError(f"the {what} cell holds half of a UTF-16 surrogate pair (an escape \\ud800-\\udfff "
                            "without its other half), which is not text; remove it.", source=location)
        return items
    raise DataError(f"the {what} cell must be a list of strings, got {type(value).__name__}: {value!r}",
                    source=location)


def tag_names(dataset: Dataset, column: str) -> list[str] | None:
    """Names of integer tags stored as a `ClassLabel` sequence (Hub datasets such as conll2003)."""
    feature = dataset.features[column]
    inner = getattr(feature, "feature", None)
    if isinstance(feature, SequenceFeature) and isinstance(inner, ClassLabel):
        return list(inner.names)
    if isinstance(feature, list) and feature and isinstance(feature[0], ClassLabel):
        return list(feature[0].names)
    return None


def canonical_table(dataset: Dataset, data_args: NerDataArguments, source: str, need_tags: bool) -> Dataset:
    """A table (Hub, JSON, CSV, parquet) as tokens/ner_tags/document_id/location, checked row by row."""
    token_column = pick_column(dataset, data_args.text_column_name, TOKEN_COLUMNS, source, "--text_column_name")
    try:
        tag_column = pick_column(dataset, data_args.label_column_name, TAG_COLUMNS, source, "--label_column_name")
    except DataError:
        if need_tags or data_args.label_column_name:
            raise
        tag_column = None
    names = tag_names(dataset, tag_column) if tag_column else None
    if names is None and data_args.label_names:
        names = data_args.label_names
    has_docs = data_args.document_column_name in dataset.column_names
    columns: dict[str, list] = {"tokens": [], "document_id": [], "location": []}
    if tag_column:
        columns["ner_tags"] = []
    for row, record in enumerate(dataset):
        location = f"{source} row {row + 1}"
        tokens = [str(t) if isinstance(t, (int, float)) else t
                  for t in parse_word_list(record[token_column], location, "tokens")]
        if not tokens:
            raise DataError("empty token list; every row needs at least one word.", source=location)
        if any(not isinstance(t, str) or not t.strip(ASCII_SPACE) for t in tokens):  # as a CoNLL word may be
            raise DataError(f"every token must be a non-empty string, got {tokens[:20]}", source=location)
        columns["tokens"].append(tokens)
        columns["document_id"].append(str(record[data_args.document_column_name]) if has_docs else str(row))
        columns["location"].append(location)
        if not tag_column:
            continue
        tags = parse_word_list(record[tag_column], location, "tags")
        if len(tags) != len(tokens):
            raise DataError(
                f"{len(tokens)} tokens but {len(tags)} tags; every word needs exactly one tag.", source=location
            )
        if any(isinstance(tag, int) and not isinstance(tag, bool) for tag in tags):
            if names is None:
                raise DataError(
                    f"tags are integers {tags[:10]} with no names; give --label_list (names in id order) or write "
                    "the tags as strings.", source=location,
                )
            if any(isinstance(tag, int) and not 0 <= tag < len(names) for tag in tags):
                raise DataError(f"tag id out of range for --label_list {names}: {tags}", source=location)
            tags = [names[tag] if isinstance(tag, int) and not isinstance(tag, bool) else tag for tag in tags]
        if any(not isinstance(tag, str) or not tag.strip() for tag in tags):
            raise DataError(f"every tag must be a non-empty string, got {tags[:20]}", source=location)
        columns["ner_tags"].append(tags)
    return Dataset.from_dict(columns)


def load_ner_data(data_args: NerDataArguments, model_args) -> DatasetDict:
    """All splits in the canonical NER shape; gold tags required for train and validation."""
    raw = load_raw_datasets(
        data_args,
        conll_reader=partial(read_conll_dataset, tag_column=data_args.tag_column),
        cache_dir=model_args.cache_dir,
        token=model_args.token,
    )
    result = DatasetDict()
    for split, dataset in raw.items():
        source = split_source(data_args, split)
        from_conll = not data_args.dataset_name and file_format(source, data_args.data_format) == "conll"
        result[split] = dataset if from_conll else canonical_table(dataset, data_args, source, split != "test")
        if split != "test" and "ner_tags" not in result[split].column_names:
            raise DataError("has no tag column; training and validation data need gold tags.", source=source)
        if "ner_tags" in result[split].column_names:
            invalid = sum(count_invalid_transitions(tags) for tags in result[split]["ner_tags"])
            if invalid:
                logger.warning("%s: %d I-X tags follow O or another type (invalid IOB2); they are scored as "
                               "conlleval does, as entity starts.", source, invalid)
    return result


# ---------------------------------------------------------------- labels


def ner_label_key(tag: str) -> tuple:
    """O first, then by entity type, B before I."""
    prefix, entity_type = split_tag(tag)
    return (tag != OUTSIDE, entity_type, PREFIX_ORDER.get(prefix, 9), tag)


def build_ner_labels(raw: DatasetDict, data_args: NerDataArguments, config) -> LabelSpace:
    """Labels from the training tags (or the fine-tuned model when there is no training split)."""
    model_labels = fine_tuned_labels(config)
    if "train" in raw:
        seen = {tag for tags in raw["train"]["ner_tags"] for tag in tags}
    elif model_labels or data_args.label_names:
        seen = set()
    else:
        raise ConfigError("No training data and the model was never fine-tuned (its config has no label names): "
                          "train first, or point --model_name_or_path at a fine-tuned model.")
    return build_label_space(seen, data_args.label_names, model_labels, sort_key=ner_label_key)


def check_ner_labels(raw: DatasetDict, labels: LabelSpace, data_args: NerDataArguments) -> DatasetDict:
    """Validation/test tags the model cannot predict: an error naming where, or mapped to O on request."""
    for split in [s for s in ("validation", "test") if s in raw and "ner_tags" in raw[s].column_names]:
        count, summary = unseen_labels(raw[split]["ner_tags"], raw[split]["location"], labels)
        if not count:
            continue
        if data_args.unknown_labels != OUTSIDE:
            raise DataError(f"{split} tags never seen in training: {summary}. Fix the data, add them to the "
                            "training data, or pass --unknown_labels O to map them to O.")
        logger.warning("%s: mapped %d tags never seen in training to O: %s", split, count, summary)
        raw[split] = raw[split].map(
            lambda row: {"ner_tags": [tag if tag in labels else OUTSIDE for tag in row["ner_tags"]]}
        )
    return raw


# ---------------------------------------------------------------- encoding


def special_token_template(tokenizer) -> tuple[list[int], list[int]]:
    """Token ids the tokenizer puts before and after a single sequence ([CLS] ... [SEP] for BERT)."""
    marker = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(marker) + 1):
        if full[start : start + len(marker)] == marker:
            return full[:start], full[start + len(marker) :]
    raise ConfigError("Cannot locate the text between this tokenizer's special tokens.")


def word_ids_without_gaps(tokenizer, words: list[list[str]]) -> tuple[list[list[int]], list[list[int | None]]]:
    """Subword ids and word ids; a word that yields no subword (e.g. a zero-width space) is encoded as the unknown
    token, so every word still gets a prediction."""
    encoded = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    ids, word_ids = list(encoded["input_ids"]), [encoded.word_ids(i) for i in range(len(words))]
    for i, sentence in enumerate(words):
        present = {w for w in word_ids[i] if w is not None}
        if len(present) < len(sentence):
            patched = [w if j in present else tokenizer.unk_token for j, w in enumerate(sentence)]
            again = tokenizer([patched], is_split_into_words=True, add_special_tokens=False)
            ids[i], word_ids[i] = again["input_ids"][0], again.word_ids(0)
    return ids, word_ids


def encode_batch(batch: dict[str, list], indices: list[int], *, tokenizer, label2id: dict[str, int],
                 continuation: dict[int, int], prefix: list[int], suffix: list[int], max_tokens: int, stride: int,
                 label_all_tokens: bool, with_token_types: bool) -> dict[str, list]:
    """Sentences -> windows of model inputs with labels and the word each scored token stands for.

    With document context (`left_context`/`right_context` columns, see `context_columns`) a sentence's input is
    its left context, its tokens and its right context, the context tokens labelled IGNORE and scored nowhere."""
    ids, word_ids = word_ids_without_gaps(tokenizer, batch["tokens"])
    gold = batch.get("ner_tags")
    no_context = [[]] * len(indices)
    left, right = batch.get(LEFT_CONTEXT, no_context), batch.get(RIGHT_CONTEXT, no_context)
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "word_index": [], "example_index": []}
    if with_token_types:
        out["token_type_ids"] = []
    if gold is not None:
        out["labels"] = []
    for i, example in enumerate(indices):
        word_labels = [label2id[tag] for tag in gold[i]] if gold is not None else None
        # context only ever goes with a sentence that fits one window (`context_budget` leaves long ones alone)
        before, after = prefix + list(left[i]), list(right[i]) + suffix
        for window in align_labels(word_ids[i], word_labels, max_tokens, stride, label_all_tokens, continuation):
            input_ids = before + ids[i][window.start : window.end] + after
            out["input_ids"].append(input_ids)
            out["attention_mask"].append([1] * len(input_ids))
            out["word_index"].append([NO_WORD] * len(before) + window.word_index + [NO_WORD] * len(after))
            out["example_index"].append(example)
            if with_token_types:
                out["token_type_ids"].append([0] * len(input_ids))
            if gold is not None:
                out["labels"].append([IGNORE] * len(before) + window.labels + [IGNORE] * len(after))
    return out


def context_columns(tokenizer, sentences: Sequence[Sequence[str]], documents: Sequence[Hashable | None], size: int,
                    max_tokens: int) -> dict[str, list[list[int]]]:
    """The left and right context (subword ids) of every sentence, from the other sentences of its document.

    Documents are the sentences sharing a document id, in input order (a None id: a document of its own). All
    sentences are tokenized here at once, so context crosses the batch boundaries of a later batched `map`."""
    ids, _ = word_ids_without_gaps(tokenizer, [list(words) for words in sentences])
    rows_of: dict[Hashable, list[int]] = {}
    for row, document in enumerate(documents):
        rows_of.setdefault((row,) if document is None else document, []).append(row)
    if len(rows_of) == len(sentences) and sentences:
        logger.info("Document context has no effect: every sentence is a document of its own (no -DOCSTART- lines "
                    "or document ids).")
    columns: dict[str, list[list[int]]] = {LEFT_CONTEXT: [[]] * len(sentences), RIGHT_CONTEXT: [[]] * len(sentences)}
    for rows in rows_of.values():
        for row, (left, right) in zip(rows, document_context([ids[row] for row in rows], size, max_tokens)):
            columns[LEFT_CONTEXT][row], columns[RIGHT_CONTEXT][row] = left, right
    return columns


def encode_ner(split: Dataset, tokenizer, labels: LabelSpace, data_args: NerDataArguments) -> Dataset:
    """Tokenize a split into windows no longer than max_seq_length (no word is ever truncated away)."""
    prefix, suffix = special_token_template(tokenizer)
    max_tokens = data_args.max_seq_length - len(prefix) - len(suffix)
    if not 0 <= data_args.stride < max_tokens:
        raise ConfigError(f"--stride {data_args.stride} must be smaller than max_seq_length minus special tokens "
                          f"({max_tokens}).")
    limit = getattr(tokenizer, "model_max_length", None)
    if limit and limit < 100_000 and data_args.max_seq_length > limit:
        raise ConfigError(f"--max_seq_length {data_args.max_seq_length} exceeds the model's limit of {limit}.")
    if data_args.context_size:
        documents = split["document_id"] if "document_id" in split.column_names else [None] * len(split)
        for name, values in context_columns(tokenizer, split["tokens"], documents, data_args.context_size,
                                            max_tokens).items():
            split = split.add_column(name, values)
    label2id = labels.label2id
    continuation = {label2id[tag]: label2id[inside_tag(tag, label2id)] for tag in labels.names}
    encode = partial(encode_batch, tokenizer=tokenizer, label2id=label2id, continuation=continuation, prefix=prefix,
                     suffix=suffix, max_tokens=max_tokens, stride=data_args.stride,
                     label_all_tokens=data_args.label_all_tokens,
                     with_token_types="token_type_ids" in tokenizer.model_input_names)
    return split.map(encode, batched=True, with_indices=True, remove_columns=split.column_names,
                     num_proc=data_args.preprocessing_num_workers, load_from_cache_file=not data_args.overwrite_cache,
                     desc="Tokenizing into windows")


def prefix_space_kwargs(config) -> dict[str, Any]:
    """Byte-level BPE tokenizers need `add_prefix_space` for pre-split words."""
    return {"add_prefix_space": True} if getattr(config, "model_type", None) in PREFIX_SPACE_MODELS else {}


def ner_collator(tokenizer, data_args) -> DataCollatorForTokenClassification:
    """Pad each batch to its own longest window (labels with -100)."""
    return DataCollatorForTokenClassification(tokenizer)


# ---------------------------------------------------------------- decoding, scoring, writing


def decode_ner(predictions, features: Dataset, raw: Dataset, labels: LabelSpace, data_args: NerDataArguments
               ) -> list[list[str]]:
    """Per-word predicted tags for every sentence of the split, reassembled from its windows."""
    if predictions.ndim == 3:  # full logits (--no_argmax_in_metrics)
        predictions = predictions.argmax(-1)
    word_ids = gather_word_predictions(predictions, features["word_index"], features["example_index"],
                                       [len(tokens) for tokens in raw["tokens"]])
    names = labels.names
    return [[names[i] for i in sentence] for sentence in word_ids]


def score_ner(decoded: list[list[str]], raw: Dataset, labels: LabelSpace, data_args: NerDataArguments
              ) -> tuple[dict[str, float], str]:
    """Entity-level scores over every gold word of the split."""
    if "ner_tags" not in raw.column_names:
        return {}, ""
    return entity_metrics(raw["ner_tags"], decoded, strict=data_args.seqeval_mode == "strict",
                          scheme=data_args.seqeval_scheme, per_type=data_args.return_entity_level_metrics)


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


def token_loss(raw, labels: LabelSpace, data_args: NerDataArguments, training_args) -> Callable:
    """Cross-entropy over labelled tokens (see utils/losses.py for why ours and not the model's)."""
    return make_loss(SINGLE_LABEL, label_smoothing=training_args.label_smoothing_factor)


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


def context_override(raw: DatasetDict, labels: LabelSpace, data_args: NerDataArguments) -> dict[str, Any]:
    """The model remembers the document context it was trained with, so `Predictor` (predict.py) uses the same."""
    return {"context_size": data_args.context_size}


NER_TASK = Task(
    name="ner",
    pipeline_tag="token-classification",
    auto_model=AutoModelForTokenClassification,
    data_arguments=NerDataArguments,
    sample_config=str(Path(__file__).resolve().parent.parent / "configs/ner/sample.yaml"),
    training_defaults={"output_dir": "outputs/ner"},
    load=load_ner_data,
    build_labels=build_ner_labels,
    check_labels=check_ner_labels,
    encode=encode_ner,
    collator=ner_collator,
    reduce_logits=argmax_logits,
    decode=decode_ner,
    score=score_ner,
    write_predictions=write_ner_predictions,
    tokenizer_kwargs=prefix_space_kwargs,
    loss=token_loss,
    card_details=ner_card_details,
    model_overrides=context_override,
    best_metric=lambda raw, data_args: ("f1", True),
)
