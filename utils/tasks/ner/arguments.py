"""NER's data options: the transformers example's names, plus windows, document context and scoring."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from utils.core.arguments import DataArguments
from utils.core.errors import ConfigError
from utils.tasks.ner.decoding import CONSTRAINED, DECODINGS
from utils.tasks.ner.spans import ALIGNMENTS

logger = logging.getLogger(__name__)

#: Tokens shared by consecutive windows of a long sentence: enough context on both sides of a window's owned part.
#: Training's --stride default; prediction uses it too (at most half a window, see `NerWindows.build`).
DEFAULT_STRIDE = 32


@dataclass
class NerDataArguments(DataArguments):
    """NER-specific data options (column names follow the transformers example)."""

    task_name: str = field(
        default="ner",
        metadata={
            "help": "As in the transformers example: tables (JSON, CSV, Hub datasets) take their tags from the "
            "{task_name}_tags column when there is one (ner, pos, chunk for CoNLL-2003) and no "
            "--label_column_name. CoNLL files: choose the column with --tag_column."
        },
    )
    text_column_name: str | None = field(default=None, metadata={"help": "Column of word lists (default: tokens)."})
    tag_column: int = field(default=-1, metadata={"help": "CoNLL files: column holding the tag (default: last)."})
    document_column_name: str = field(
        default="document_id", metadata={"help": "Column holding document ids (tables); CoNLL uses -DOCSTART-."}
    )
    label_all_tokens: bool = field(
        default=False,
        metadata={
            "help": "Train on every subword (continuations of a B-X word get I-X), not only on the first. "
            "Scoring is always per word."
        },
    )
    return_entity_level_metrics: bool = field(
        default=False, metadata={"help": "Report P/R/F1/support per entity type in the metrics, not only the report."}
    )
    stride: int | None = field(
        default=None,
        metadata={
            "help": f"Tokens shared by consecutive windows of a sentence longer than max_seq_length (default: "
            f"{DEFAULT_STRIDE}; half a window when --max_seq_length leaves no room for it)."
        },
    )
    unknown_labels: str = field(
        default="error",
        metadata={
            "help": "A validation/test tag never seen in training: 'error', or 'O' to map it to O.",
            "choices": ["error", "O"],
        },
    )
    seqeval_mode: str = field(
        default="conlleval",
        metadata={
            "help": "'conlleval' (lenient, like conlleval.pl) or 'strict' (exact --seqeval_scheme spans).",
            "choices": ["conlleval", "strict"],
        },
    )
    seqeval_scheme: str = field(
        default="IOB2", metadata={"help": "Scheme for strict mode.", "choices": ["IOB2", "IOBES"]}
    )
    context_size: int = field(
        default=0,
        metadata={
            "help": "Document context (FLERT): up to N subword tokens of the neighbouring sentences of the same "
            "document on each side of a sentence, never labelled or scored; documents come from -DOCSTART- "
            "(CoNLL) or --document_column_name. 0: off. Saved in the model config, where predict.py finds it."
        },
    )
    decoding: str = field(
        default=CONSTRAINED,
        metadata={
            "help": "How word tags are decoded for evaluation and predictions: 'constrained' (the most probable tag "
            "sequence the data's scheme allows: never an I-X that continues no X entity; see docs/benchmarks.md) "
            "or 'argmax' (each word's most likely tag). Saved in the model config as predict.py's default.",
            "choices": list(DECODINGS),
        },
    )
    head: str | None = field(
        default=None,
        metadata={
            "help": "'token': one tag per word (BIO); 'span': every span of up to --max_span_length words is "
            "classified, so entities may nest or overlap (docs/span_head.md). Saved in the model config. Not given: "
            "the head (and span settings) of a saved span model given as --model, else 'token'.",
            "choices": ["token", "span"],
        },
    )
    max_span_length: int = field(
        default=8, metadata={"help": "--head span: the longest entity, in words, the head considers."}
    )
    max_span_tokens: int = field(
        default=24, metadata={"help": "--head span: the longest entity, in subword tokens, the head considers."}
    )
    span_decoding: str = field(
        default="nested",
        metadata={
            "help": "--head span: 'nested' keeps entities inside others (never two that cross), 'flat' keeps no "
            "overlap at all (and writes predictions.conll).",
            "choices": ["nested", "flat"],
        },
    )
    span_alignment: str = field(
        default="strict",
        metadata={
            "help": "Annotation-tool data (--data_format label-studio|doccano|brat): a span that cuts a word is "
            "an error (strict), or is widened to the words it touches (expand) or shrunk to the words inside "
            "it (contract); every adjusted span is counted in the log.",
            "choices": list(ALIGNMENTS),
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.task_name = (self.task_name or "ner").strip().lower()
        self.stride = settled_stride(self.stride, self.max_seq_length)
        if self.max_span_length < 1 or self.max_span_tokens < 1:
            raise ConfigError(
                f"--max_span_length ({self.max_span_length}) and --max_span_tokens ({self.max_span_tokens}) must "
                "be at least 1."
            )
        if self.head == "span" and self.context_size:
            raise ConfigError("--context_size is for the token head; the span head reads each sentence alone.")
        if self.context_size < 0:
            raise ConfigError(f"--context_size must be 0 (off) or a number of tokens, got {self.context_size}.")


#: Special tokens a model input holds at least ([CLS] ... [SEP], <s> ... </s>): the bound known before the tokenizer
#: is loaded (`NerWindows.build` checks the exact one).
MIN_SPECIAL_TOKENS = 2


def settled_stride(stride: int | None, max_seq_length: int) -> int:
    """The default stride where it fits the window, else half a window (as prediction's default), so a flag the user
    never set is never blamed; a --stride given that cannot fit is an error naming both flags, before anything is
    loaded."""
    room = max_seq_length - MIN_SPECIAL_TOKENS
    if stride is None:
        return DEFAULT_STRIDE if room > DEFAULT_STRIDE else room // 2
    check_stride(stride)
    if stride >= room:
        raise ConfigError(
            f"--stride {stride} must be smaller than --max_seq_length {max_seq_length} less the "
            f"special tokens (at most {room - 1} here): lower --stride or raise --max_seq_length."
        )
    return stride


def check_stride(stride: int) -> None:
    """A negative --stride is refused as what it is (the upper bound depends on the tokenizer: `NerWindows`)."""
    if stride < 0:
        raise ConfigError(
            f"--stride {stride} must be 0 or more: it is how many tokens consecutive windows of a long sentence share."
        )
