"""The training options: `TrainingArguments` plus the run-level options the transformers examples lack, beside the
training code that reads them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from transformers import TrainingArguments

from utils.core.errors import ConfigError
from utils.training.distillation_arguments import DistillationArguments


def cpu_identity() -> tuple[str, frozenset[str]]:
    """The CPU's vendor (`GenuineIntel`, `AuthenticAMD`, ...) and instruction-set flags, from /proc/cpuinfo (empty
    where there is none: other systems, containers that hide it)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            head = stream.read(1 << 16)
    except OSError:
        return "", frozenset()
    vendor = re.search(r"^vendor_id\s*:\s*(\S+)", head, re.MULTILINE)
    flags = re.search(r"^flags\s*:(.*)$", head, re.MULTILINE)
    return (vendor.group(1) if vendor else ""), frozenset(flags.group(1).split() if flags else ())


def bf16_cpu_supported(flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 autocast is emulated."""
    flags = cpu_identity()[1] if flags is None else flags
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_pays_on_cpu(vendor: str, flags: frozenset[str]) -> bool:
    """Whether bf16 autocast trains faster than fp32 on this kind of CPU at the same accuracy, as measured
    (docs/architectures.md, "bf16 on CPU"): yes with AMX tiles, and on AMD processors with AVX512-BF16; no on Intel
    processors with AVX512-BF16 but no AMX (slower than fp32 there), nor where bf16 is emulated."""
    return "amx_bf16" in flags or (vendor == "AuthenticAMD" and "avx512_bf16" in flags)


@dataclass
class FinetuneTrainingArguments(DistillationArguments, TrainingArguments):
    """`TrainingArguments` plus the run-level options the transformers examples lack."""

    bf16: bool = field(  # None until settled: given, or this processor's faster precision (settle_device)
        default=None,
        metadata={
            "help": "bfloat16 mixed precision (autocast on CPU). Not given: on a CPU where it trains faster than fp32 "
            "at the same accuracy (AMX, or AMD with AVX512-BF16) it is on, elsewhere off; --bf16 false keeps fp32."
        },
    )
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
        metadata={
            "help": "Train into an output_dir that already holds a run (its checkpoints and results are "
            "replaced). Without it such a run is refused, unless --resume_from_checkpoint continues it."
        },
    )
    sort_eval_by_length: bool = field(
        default=True,
        metadata={"help": "Evaluate and predict in length-sorted batches (less padding); outputs keep input order."},
    )
    batching: str = field(
        default="auto",
        metadata={
            "help": "How training batches are made: packed (random batches, sequences laid end to end in rows "
            "of --pack_length: token tasks on models that can take packed rows), buckets (batches of similar "
            "lengths, shuffled across the epoch), random (--train_sampling_strategy, padded to the longest), "
            "max_length (padded to --max_seq_length, as --pad_to_max_length), or auto: packed where possible, "
            "else buckets. The older flags below still work and decide it the same way.",
            "choices": ["auto", "packed", "buckets", "random", "max_length"],
        },
    )
    pack_sequences: bool = field(
        default=True,
        metadata={
            "help": "Token tasks (NER) on BERT, ELECTRA, RoBERTa, XLM-R, CamemBERT, DistilBERT, MPNet, ALBERT, "
            "DeBERTa-v2/v3 and ModernBERT models (SDPA or eager attention): keep random batches, but lay each "
            "batch's sequences end to end in rows of --pack_length tokens, attention kept within each "
            "sequence, so almost no padding is computed. Every sequence gets the logits it gets alone. Other "
            "models (the log says why) and tasks use --bucket_by_length. --no_pack_sequences: length buckets "
            "(with --no_bucket_by_length: padded random batches)."
        },
    )
    pack_length: int = field(
        default=64,
        metadata={
            "help": "Row length for --pack_sequences; a row grows to the batch's longest sequence. Longer rows "
            "pack tighter but spend more on attention."
        },
    )
    bucket_by_length: bool = field(
        default=True,
        metadata={
            "help": "When sequences are not packed: train on batches of similar-length examples (little "
            "padding), cut from length-sorted pools of --bucket_pool_batches batches and shuffled across the "
            "epoch; token losses weigh every labelled token as random batches do. --no_bucket_by_length: "
            "random batches, as the transformers examples. Giving --train_sampling_strategy turns it off."
        },
    )
    bucket_pool_batches: int = field(
        default=50, metadata={"help": "Batches per length-sorted pool for --bucket_by_length (more: less padding)."}
    )
    hp_search_trials: int = field(
        default=0,
        metadata={
            "help": "Run an Optuna search of N trials over learning rate, batch size, epochs and weight decay "
            "(and LoRA r with --use_peft), scored on the validation split; every trial goes to "
            "hp_search.jsonl, then the best setting is trained into output_dir."
        },
    )
    hp_search_space: str | None = field(
        default=None, metadata={"help": "YAML/JSON file with the search space (see configs/hp_search_space.yaml)."}
    )
    hp_search_storage: str | None = field(
        default=None,
        metadata={
            "help": "Optuna storage URL the search keeps its trials in (default: sqlite:///OUTPUT_DIR/"
            "hp_search.db, so a crashed search resumes where it stopped). Several processes or machines "
            "started with the same storage and --hp_search_study_name share the trials: e.g. "
            "postgresql+psycopg2://user:password@host/db (see docs/hp_search.md)."
        },
    )
    hp_search_study_name: str = field(
        default="hp_search",
        metadata={
            "help": "Name of the Optuna study in --hp_search_storage; workers that give the same name share it."
        },
    )
    argmax_in_metrics: bool = field(
        default=True,
        metadata={
            "help": "Reduce logits batch by batch during evaluation to what the task decodes (e.g. NER's tag "
            "log-probabilities). --no_argmax_in_metrics keeps every logit of the split in memory, as the "
            "transformers examples do (for comparison only)."
        },
    )
    calibration: str = field(
        default="temperature",
        metadata={
            "help": "After training, fit the confidences on the validation split and save the fit with the model "
            "(config.json `calibration`; docs/calibration.md): 'temperature' (one temperature, argmax unchanged) "
            "or 'none'.",
            "choices": ["temperature", "none"],
        },
    )
    conformal_alpha: float | None = field(
        default=None,
        metadata={
            "help": "Classification: also calibrate split-conformal label sets on validation, each holding the "
            "right label with probability at least 1 - alpha on exchangeable data (e.g. 0.1)."
        },
    )

    def __post_init__(self) -> None:
        if self.conformal_alpha is not None and not 0 < self.conformal_alpha < 1:
            raise ConfigError(f"--conformal_alpha must be in (0, 1), such as 0.1; got {self.conformal_alpha}.")
        if self.hp_search_trials < 0:
            raise ConfigError(f"--hp_search_trials must be 0 or more, got {self.hp_search_trials}.")
        for flag in ("hp_search_space", "hp_search_storage"):
            if getattr(self, flag) and not self.hp_search_trials:
                raise ConfigError(f"--{flag} needs --hp_search_trials N.")
        if not self.hp_search_study_name.strip():
            raise ConfigError("--hp_search_study_name is empty: name the study (workers with the same name share it).")
        if self.pack_length < 1:
            raise ConfigError(f"--pack_length must be 1 or more, got {self.pack_length}.")
        if self.bucket_pool_batches < 1:
            raise ConfigError(f"--bucket_pool_batches must be 1 or more, got {self.bucket_pool_batches}.")
        self.settle_device()
        super().__post_init__()

    def settle_device(self) -> None:
        """With no accelerator, train on the CPU explicitly: that makes `accelerate launch`/`torchrun` with several
        processes real gloo DDP instead of independent copies. --bf16 without a bf16 GPU means bf16 autocast on the
        CPU (where the CPU supports it); --fp16 needs a GPU. Without --bf16 either way, a CPU on which bf16 pays
        (`bf16_pays_on_cpu`) trains in bf16, others and accelerators in fp32 as the transformers examples do."""
        import torch
        from transformers.utils import is_torch_bf16_gpu_available

        accelerator = (
            torch.cuda.is_available()
            or (hasattr(torch, "xpu") and torch.xpu.is_available())
            or (torch.backends.mps.is_available())
        )
        if not accelerator:
            if self.fp16:
                raise ConfigError("--fp16 needs a CUDA (or XPU) device and there is none; on CPU use --bf16.")
            vendor, flags = cpu_identity()
            if self.bf16 is None:
                self.bf16 = bf16_pays_on_cpu(vendor, flags)
            if self.bf16 and not bf16_cpu_supported(flags):
                raise ConfigError("--bf16: this CPU has no bfloat16 support (needs AVX512-BF16 or AMX); drop --bf16.")
            self.use_cpu = True
        else:
            self.bf16 = bool(self.bf16)
            if self.bf16 and not self.use_cpu and not is_torch_bf16_gpu_available():
                raise ConfigError("--bf16: this GPU has no bfloat16 support; use --fp16.")


def precision_note(args: TrainingArguments) -> str:
    """The run's precision and why, for the log: the CPU rule decides it silently otherwise."""
    if args.fp16:
        return "Precision: fp16 mixed precision (--fp16)."
    if not args.bf16:
        return "Precision: fp32."
    if args.use_cpu:
        return "Precision: bf16 autocast on the CPU (--bf16, or this CPU's faster precision; --bf16 false for fp32)."
    return "Precision: bf16 mixed precision (--bf16)."
