"""GPU check: verify the GPU topologies the README lists as unverified, and measure bf16 training throughput and
model FLOP utilisation (MFU) on one GPU, in a few minutes (run through benchmarks/gpu_check.sh, at most 8).

    bash benchmarks/gpu_check.sh                       # writes benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --dry_run            # the runs it would make (works without a GPU)

Runs, each `accelerate launch` of run_ner.py on the shipped NER sample for a fixed number of optimizer steps:
the embedded MiniLM and a bert-base-sized configuration (random weights built locally, with the embedded
tokenizer: the Hub is not reachable), packed batches and length buckets, on one GPU (configs/accelerate/
single_gpu.yaml) and, for the embedded model, FSDP on one GPU (configs/accelerate/fsdp.yaml with one process).
Throughput is real (non-padding) training tokens per second; MFU is the Trainer's own FLOP count (6 x parameters x
tokens, `total_flos`) per second over the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "data" / "ner"
#: Dense bf16 peak of the GPUs we may be lent, in FLOP/s (vendor figures, without sparsity).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
TOPOLOGIES = {"single_gpu": "single_gpu.yaml", "fsdp_one_gpu": "fsdp.yaml"}
MODES = {"packed": [], "buckets": ["--no_pack_sequences"]}


def bert_base_sized(directory: Path) -> str:
    """A 12-layer, 768-wide BERT with random weights and the embedded tokenizer (bert-base's shape)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from utils.core.modeling import embedded_model_path

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def plan(models: dict[str, str], steps: int, work: Path) -> list[dict]:
    """Every run: name, command, output directory."""
    runs = []
    for model_name, model in models.items():
        for topology, config in TOPOLOGIES.items():
            for mode, flags in MODES.items():
                if topology != "single_gpu" and (model_name != "minilm" or mode != "packed"):
                    continue  # FSDP is checked once, the sweep runs on the plain single-GPU launch
                name = f"{model_name}-{topology}-{mode}"
                out = work / name
                extra = ["--num_processes", "1"] if topology == "fsdp_one_gpu" else []
                command = [
                    "accelerate",
                    "launch",
                    "--config_file",
                    str(ROOT / "configs" / "accelerate" / config),
                    *extra,
                    str(ROOT / "run_ner.py"),
                    "--model",
                    model,
                    "--train_file",
                    str(SAMPLE / "train.conll"),
                    "--validation_file",
                    str(SAMPLE / "validation.conll"),
                    "--test_file",
                    str(SAMPLE / "test.conll"),
                    "--output_dir",
                    str(out),
                    "--overwrite_output_dir",
                    "--bf16",
                    "--max_steps",
                    str(steps),
                    "--per_device_train_batch_size",
                    "32",
                    "--save_strategy",
                    "no",
                    "--eval_strategy",
                    "no",
                    "--report_to",
                    "none",
                    "--eval_before_training",
                    "false",
                    *flags,
                ]
                runs.append(
                    {
                        "name": name,
                        "model": model_name,
                        "topology": topology,
                        "mode": mode,
                        "command": command,
                        "output_dir": str(out),
                    }
                )
    return runs


def gpu_peak() -> tuple[str, float | None]:
    import torch

    name = torch.cuda.get_device_name(0)
    return name, next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def measure(run: dict, peak: float | None, timeout: float) -> dict:
    started = time.monotonic()
    proc = subprocess.run(
        run["command"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    record = {key: run[key] for key in ("name", "model", "topology", "mode")}
    record.update(returncode=proc.returncode, wall_seconds=round(time.monotonic() - started, 1))
    if proc.returncode != 0:
        record["error"] = (proc.stdout + proc.stderr)[-2000:]
        return record
    results = json.loads((Path(run["output_dir"]) / "all_results.json").read_text())
    state = json.loads((Path(run["output_dir"]) / "trainer_state.json").read_text())
    seconds = results["train_runtime"]
    padding = results.get("train_padding_fraction", 0.0)
    tokens = state.get("num_input_tokens_seen") or 0
    record.update(
        train_runtime=seconds,
        train_samples_per_second=results["train_samples_per_second"],
        train_padding_fraction=padding,
        predict_f1=results.get("predict_f1"),
        trainable_parameters=results.get("trainable_parameters"),
    )
    flops = state.get("total_flos") or results.get("total_flos")
    if flops:
        record["model_flops_per_second"] = flops / seconds
        record["mfu"] = round(flops / seconds / peak, 4) if peak else None
    if tokens:
        record["tokens_per_second"] = round(tokens * (1 - padding) / seconds, 1)
    return record


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    parser.add_argument("--budget_seconds", type=float, default=420, help="stop starting runs after this")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    parser.add_argument("--dry_run", action="store_true", help="print the runs, run nothing")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = {"minilm": "", "bert_base_sized": str(work / "bert-base-sized")}
        if not args.dry_run:
            bert_base_sized(Path(models["bert_base_sized"]))
        runs = plan({name: path or _embedded() for name, path in models.items()}, args.steps, work)
        if args.dry_run:
            for run in runs:
                print(run["name"] + ": " + shlex.join(run["command"]))
            return {"runs": [run["name"] for run in runs]}
        name, peak = gpu_peak()
        started, records = time.monotonic(), []
        for run in runs:
            left = args.budget_seconds - (time.monotonic() - started)
            if left < 30:
                records.append({"name": run["name"], "skipped": "time budget spent"})
                continue
            records.append(measure(run, peak, timeout=left))
            print(json.dumps(records[-1]), flush=True)
    report = {
        "gpu": name,
        "bf16_peak_flops": peak,
        "steps": args.steps,
        "runs": records,
        "verified": sorted({r["topology"] for r in records if r.get("returncode") == 0}),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _embedded() -> str:
    from utils.core.modeling import embedded_model_path

    return embedded_model_path()


if __name__ == "__main__":
    main()
