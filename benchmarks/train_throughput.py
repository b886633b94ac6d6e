"""Training-speed harness: the fast default path against a baseline that mirrors the transformers examples.

    python benchmarks/train_throughput.py                       # CoNLL-2003 (1 epoch) and SST-2 (fixed steps)
    python benchmarks/train_throughput.py --tasks ner --modes baseline fast bf16
    python benchmarks/train_throughput.py --tasks ner --modes fast buckets --model DIR   # another base model
    python benchmarks/train_throughput.py --tasks ner --modes fast bf16 --max_steps 30 --profile_steps 10

`--profile_steps N` records where the CPU time of N training steps (after 5 warm-up steps) goes, by kind of
operator: what keeps bf16 autocast from the bf16 matmul rate. The profiler slows those steps, so throughput
figures come from runs without it.

Each (task, mode) trains in a fresh process, then predicts the test file in another, so the peak RSS of training
and of evaluation are measured apart. Figures go to a JSON file and a markdown table; the speed of each run stands
beside its own test F1 / accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
from benchmarks.reporting import machine  # noqa: E402

#: What each task trains and scores on; the SST-2 train file is 67k rows, so it runs a fixed number of steps.
TASKS = {
    "ner": {
        "script": "run_ner.py",
        "metric": "f1",
        "train": DATA / "conll2003" / "train.txt",
        "test": DATA / "conll2003" / "test.txt",
        "length": ["--num_train_epochs", "1"],
    },
    "sst2": {
        "script": "run_classification.py",
        "metric": "accuracy",
        "train": DATA / "sst2" / "train.tsv",
        "test": DATA / "sst2" / "test.tsv",
        "length": ["--max_steps", "150"],
    },
}
#: Flags per mode. The baseline reproduces the transformers examples' choices: random batches, full logits kept
#: for evaluation, evaluation in input order, fp32, and (classification) every example padded to 128.
MODES = {
    "baseline": {
        "common": [
            "--no_pack_sequences",
            "--no_bucket_by_length",
            "--no_sort_eval_by_length",
            "--no_argmax_in_metrics",
        ],
        "classification": ["--pad_to_max_length"],
    },
    "fast": {"common": [], "classification": []},
    "bf16": {"common": ["--bf16"], "classification": []},
    "buckets": {"common": ["--no_pack_sequences"], "classification": []},
    "grouped": {
        "common": ["--no_pack_sequences", "--train_sampling_strategy", "group_by_length"],
        "classification": [],
    },
    "eager": {"common": ["--attn_implementation", "eager"], "classification": []},
    "compile": {"common": ["--torch_compile"], "classification": []},
}
COMMON = [
    "--per_device_train_batch_size",
    "32",
    "--per_device_eval_batch_size",
    "64",
    "--learning_rate",
    "5e-5",
    "--max_seq_length",
    "128",
    "--seed",
    "42",
    "--report_to",
    "none",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--logging_steps",
    "50",
]


def mode_flags(task: str, mode: str) -> list[str]:
    flags = MODES[mode]
    return flags["common"] + (flags["classification"] if task == "sst2" else [])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as stream:
            return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except OSError:
        return 0.0


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 10) -> float:
    """Achieved GFLOP/s of a square matmul: the machine's practical ceiling for this precision."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


#: Operator kinds of a training step, by (lower-case) name fragments; self CPU time is counted, so nothing twice.
OPERATOR_KINDS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "mkldnn", "onednn"),
    "attention kernels": ("scaled_dot_product", "flash_attention"),
    "casts and copies": ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous"),
    "optimizer": ("adam", "_foreach"),
    "normalisation and softmax": ("layer_norm", "softmax"),
    "activations": ("gelu", "tanh"),
}


def operator_kind(name: str) -> str:
    lowered = name.lower()
    for kind, fragments in OPERATOR_KINDS.items():
        if any(lowered == fragment or lowered.startswith(fragment) or fragment in lowered for fragment in fragments):
            return kind
    return "other"


def profile_callback(steps: int, warmup: int = 5):
    """A callback that profiles `steps` training steps after `warmup` ones and keeps self CPU time by kind."""
    import torch
    from transformers import TrainerCallback

    class StepProfile(TrainerCallback):
        def __init__(self) -> None:
            self.profiler = None
            self.summary: dict = {}

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == warmup and self.profiler is None:
                self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.profiler.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if self.profiler is not None and not self.summary and state.global_step >= warmup + steps:
                self.profiler.__exit__(None, None, None)
                events = [e for e in self.profiler.key_averages() if e.self_cpu_time_total > 0]
                total = sum(e.self_cpu_time_total for e in events)
                kinds: dict[str, float] = {}
                for event in events:
                    kind = operator_kind(event.key)
                    kinds[kind] = kinds.get(kind, 0.0) + event.self_cpu_time_total
                top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]
                self.summary = {
                    "steps": steps,
                    "self_cpu_ms_per_step": total / steps / 1000,
                    "share_by_kind": {k: v / total for k, v in sorted(kinds.items(), key=lambda i: -i[1])},
                    "top_operators": [
                        {"name": e.key, "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps}
                        for e in top
                    ],
                }

    return StepProfile()


def child_train(
    task: str,
    mode: str,
    out: Path,
    max_steps: int | None = None,
    model: str | None = None,
    profile_steps: int | None = None,
) -> None:
    """Train once; real tokens are counted from the batches the sampler forms, the padding computed on (after
    packing, when sequences are packed) is the trainer's `train_padding_fraction`."""
    from transformers import TrainerCallback

    import run_classification
    import run_ner

    class PaddingStats(TrainerCallback):
        def __init__(self) -> None:
            self.real = self.batches = 0

        def on_train_end(self, args, state, control, train_dataloader=None, **kwargs):
            steps = state.global_step * args.gradient_accumulation_steps
            for i, batch in enumerate(train_dataloader):
                if i >= steps:
                    break
                self.real += int(batch["attention_mask"].sum())
                self.batches += 1

    spec = TASKS[task]
    stats = PaddingStats()
    profile = profile_callback(profile_steps) if profile_steps else None
    main = run_ner.main if task == "ner" else run_classification.main
    length = ["--max_steps", str(max_steps)] if max_steps else spec["length"]
    argv = [
        "--train_file",
        str(spec["train"]),
        "--output_dir",
        str(out),
        "--do_train",
        *COMMON,
        *length,
        *mode_flags(task, mode),
        *(["--model", model] if model else []),
    ]
    start = time.perf_counter()
    results = main(argv, callbacks=[stats] + ([profile] if profile else []))
    wall = time.perf_counter() - start
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(out)
    non_embedding = sum_parameters(out, config)
    record = {
        "train_samples_per_second": results["train_samples_per_second"],
        "train_runtime_s": results["train_runtime"],
        "train_wall_s": wall,
        "train_samples": results["train_samples"],
        "real_tokens": stats.real,
        "padded_tokens": round(stats.real / (1 - results["train_padding_fraction"])),
        "batches": stats.batches,
        "train_peak_rss_mb": peak_rss_mb(),
        "non_embedding_parameters": non_embedding,
    }
    if profile is not None:
        record["profile"] = profile.summary
    (out / "bench_train.json").write_text(json.dumps(record, indent=2))


def sum_parameters(directory: Path, config) -> int:
    """Parameters outside the embedding tables (the ones each token's matmuls use)."""
    from math import prod

    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as tensors:
        return sum(
            prod(tensors.get_slice(name).get_shape())
            for name in tensors.keys()  # noqa: SIM118
            if "embeddings" not in name
        )


def child_eval(task: str, mode: str, out: Path) -> None:
    """Predict the full test file with the trained model, in a fresh process (its own peak RSS)."""
    from transformers import TrainerCallback

    import run_classification
    import run_ner

    class PredictionMemory(TrainerCallback):
        """Resident memory after each prediction step: what evaluation itself adds (kept logits or argmaxes)
        apart from the libraries, model and data that the process holds anyway."""

        def __init__(self) -> None:
            self.first = self.highest = 0.0

        def on_prediction_step(self, args, state, control, **kwargs):
            self.first = self.first or current_rss_mb()
            self.highest = max(self.highest, current_rss_mb())

    spec = TASKS[task]
    memory = PredictionMemory()
    main = run_ner.main if task == "ner" else run_classification.main
    argv = [
        "--model",
        str(out),
        "--test_file",
        str(spec["test"]),
        "--output_dir",
        str(out / "eval"),
        *COMMON,
        *mode_flags(task, mode),
    ]
    start = time.perf_counter()
    results = main(argv, callbacks=[memory])
    record = {
        "eval_wall_s": time.perf_counter() - start,
        "eval_runtime_s": results["predict_runtime"],
        "eval_samples": results["predict_samples"],
        "eval_peak_rss_mb": peak_rss_mb(),
        "eval_rss_growth_mb": memory.highest - memory.first,
        "test_metric": results[f"predict_{spec['metric']}"],
    }
    (out / "bench_eval.json").write_text(json.dumps(record, indent=2))


def run_child(
    stage: str,
    task: str,
    mode: str,
    out: Path,
    max_steps: int | None = None,
    model: str | None = None,
    profile_steps: int | None = None,
) -> dict:
    """One stage in a fresh process; the machine's load before and after is recorded (other work skews timings)."""
    load_before = os.getloadavg()[0]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = out.parent / f"{task}-{mode}-{stage}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stream:
        steps = ["--max_steps", str(max_steps)] if max_steps else []
        base = ["--model", model] if model else []
        profile = ["--profile_steps", str(profile_steps)] if profile_steps and stage == "train" else []
        command = [
            sys.executable,
            __file__,
            f"_{stage}",
            "--task",
            task,
            "--mode",
            mode,
            "--out",
            str(out),
            *steps,
            *base,
            *profile,
        ]
        subprocess.run(command, check=True, env=env, stdout=stream, stderr=subprocess.STDOUT)
    record = json.loads((out / f"bench_{stage}.json").read_text())
    record[f"{stage}_load_average_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return record


def summarise(task: str, mode: str, train: dict, evaluation: dict, peaks: dict[str, float]) -> dict:
    precision = "bfloat16" if "bf16" in mode else "float32"
    tokens_per_s = train["real_tokens"] / train["train_runtime_s"]
    flops = 6 * train["non_embedding_parameters"] * tokens_per_s / 1e9
    return {
        "task": task,
        "mode": mode,
        **train,
        **evaluation,
        "padding_fraction": 1 - train["real_tokens"] / max(train["padded_tokens"], 1),
        "real_tokens_per_second": tokens_per_s,
        "model_gflops_per_second": flops,
        "fraction_of_matmul_peak": flops / peaks[precision],
        "peak_precision": precision,
    }


def markdown(rows: list[dict], peaks: dict[str, float]) -> str:
    lines = [
        f"Matmul peak (2048x2048): fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.0f} GFLOP/s.",
        "",
        "| task | mode | train samples/s | speed-up | real tokens/s | padding | model GFLOP/s (% of peak) | "
        "train peak RSS MB | eval s | eval peak RSS MB | eval RSS growth MB | test metric |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {r["task"]: r for r in rows if r["mode"] == "baseline"}
    for r in rows:  # without a baseline in the run, ratios are against the task's first mode
        base.setdefault(r["task"], r)
        ratio = r["train_samples_per_second"] / base[r["task"]]["train_samples_per_second"]
        lines.append(
            f"| {r['task']} | {r['mode']} | {r['train_samples_per_second']:.1f} | {ratio:.2f}x | "
            f"{r['real_tokens_per_second']:.0f} | {r['padding_fraction']:.1%} | {r['model_gflops_per_second']:.1f} "
            f"({r['fraction_of_matmul_peak']:.1%}) | {r['train_peak_rss_mb']:.0f} | "
            f"{r.get('eval_runtime_s', float('nan')):.1f} | {r.get('eval_peak_rss_mb', float('nan')):.0f} | "
            f"{r.get('eval_rss_growth_mb', float('nan')):.0f} | {r.get('test_metric', float('nan')):.4f} |"
        )
    profiled = [r for r in rows if r.get("profile")]
    if profiled:
        kinds = [*OPERATOR_KINDS, "other"]
        lines += [
            "",
            "Self CPU time of profiled training steps, by operator kind (not timed runs):",
            "",
            "| task | mode | ms per step | " + " | ".join(kinds) + " |",
            "|---|---|---|" + "---|" * len(kinds),
        ]
        for r in profiled:
            shares = r["profile"]["share_by_kind"]
            lines.append(
                f"| {r['task']} | {r['mode']} | {r['profile']['self_cpu_ms_per_step']:.0f} | "
                + " | ".join(f"{shares.get(kind, 0.0):.1%}" for kind in kinds)
                + " |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", nargs="?", default="all", choices=["all", "_train", "_eval"])
    parser.add_argument("--tasks", nargs="+", default=["ner", "sst2"], choices=list(TASKS))
    parser.add_argument("--modes", nargs="+", default=["baseline", "fast"], choices=list(MODES))
    parser.add_argument("--task", choices=list(TASKS))
    parser.add_argument("--mode", choices=list(MODES))
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--max_steps",
        type=int,
        default=None,
        help="Train every task for N steps instead of its default length (quick mode comparisons).",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="Base model to train (default: the embedded MiniLM), e.g. a random model of another "
        "architecture made by `python -m tests.tiny_architectures`.",
    )
    parser.add_argument(
        "--skip_eval",
        action="store_true",
        help="Train only (no test-set prediction): speed comparisons where the test metric is not the "
        "point, e.g. random models of other architectures.",
    )
    parser.add_argument(
        "--profile_steps",
        type=int,
        default=None,
        help="Profile N training steps (after 5 warm-up steps) and record CPU time by operator kind; "
        "needs --max_steps of at least N + 5. Not for throughput figures (the profiler slows them).",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/finetune-kit-bench"))
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "train_throughput.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "benchmarks" / "results" / "train_throughput.md")
    args = parser.parse_args()
    if args.stage == "_train":
        return child_train(args.task, args.mode, args.out, args.max_steps, args.model, args.profile_steps)
    if args.stage == "_eval":
        return child_eval(args.task, args.mode, args.out)
    missing = [str(TASKS[t][k]) for t in args.tasks for k in ("train", "test") if not TASKS[t][k].exists()]
    if missing:
        sys.exit(f"error: missing data {missing}; this benchmark needs ../shared/data beside the project.")
    peaks = {"float32": matmul_peak("float32"), "bfloat16": matmul_peak("bfloat16")}
    rows, failed = [], []
    for task in args.tasks:
        for mode in args.modes:
            out = args.workdir / f"{task}-{mode}"
            print(f"{task} / {mode} ...", flush=True)
            try:
                train = run_child("train", task, mode, out, args.max_steps, args.model, args.profile_steps)
                evaluation = {} if args.skip_eval else run_child("eval", task, mode, out)
            except subprocess.CalledProcessError:
                failed.append({"task": task, "mode": mode, "log": str(args.workdir / f"{task}-{mode}-*.log")})
                print(f"{task} / {mode} failed: see {failed[-1]['log']}", flush=True)
                continue
            rows.append(summarise(task, mode, train, evaluation, peaks))
            print(json.dumps(rows[-1], indent=2), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "matmul_peak_gflops": peaks,
                "runs": rows,
                "failed": failed,
                "model": args.model or "embedded MiniLM",
                "max_steps": args.max_steps,
                "machine": machine(),
            },
            indent=2,
        )
    )
    table = markdown(rows, peaks)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
