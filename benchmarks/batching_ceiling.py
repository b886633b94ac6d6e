"""What gathering requests into batches can gain on this machine, with no HTTP at all: the ceiling of serve.py's
"throughput under load against one request at a time".

    python benchmarks/batching_ceiling.py --model /tmp/conll_ner --output benchmarks/results/batching_ceiling.json

With the PyTorch backend it measures, on the first --texts CoNLL-2003 test sentences (words joined by spaces):
- `Predictor.predict` with one text per call against calls of --batch texts (the service's --max_batch_size), the
  two alternating --rounds times (this virtual machine's speed drifts within minutes), each round's ratio given;
- inside the batched calls: the tokens the model ran (packed rows, padding included), the floating-point work of its
  matrix products (2 x inputs x outputs per token of every `nn.Linear`) and the share of the calls' time spent in
  them (torch.profiler's `aten::linear`), hence the rate the products ran at;
- the same products alone, at the same shapes (the batched pass's tokens x each layer's sizes), in float32 and
  bfloat16, the best of five timings: the rate this CPU reaches, so the first rate can be read as a fraction of what
  the cores give, and whether a lower precision would be faster here.
The host's other tenants slow small, latency-bound passes (one text) far more than large ones, so the gain of
batching is larger in a noisy moment: compare the rounds, and runs made at different times.
When the batched pass already runs its products near the cores' own rate, no batching scheme can gain more than the
measured ratio: only fewer operations (quantization, which makes answers depend on batchmates) or more cores would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.reporting import machine, write_results  # noqa: E402


def texts_per_second(predictor, texts: list[str], per_call: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), per_call):
        predictor.predict(texts[start : start + per_call])
    return len(texts) / (time.perf_counter() - started)


def linear_work(model: torch.nn.Module, run) -> tuple[dict[tuple[int, int], int], int]:
    """Tokens through each `nn.Linear` shape (in, out), and tokens into the model, while `run()` runs."""
    tokens: Counter = Counter()
    model_tokens = [0]

    def count(module, inputs):
        tokens[(module.in_features, module.out_features)] += inputs[0].numel() // module.in_features

    def count_model(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        model_tokens[0] += ids.numel()

    hooks = [
        module.register_forward_pre_hook(count) for module in model.modules() if isinstance(module, torch.nn.Linear)
    ]
    hooks.append(model.register_forward_pre_hook(count_model, with_kwargs=True))
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return dict(tokens), model_tokens[0]


def linear_seconds(run) -> tuple[float, float]:
    """Seconds inside `aten::linear` and in all, while `run()` runs under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        run()
    total = time.perf_counter() - started
    inside = sum(event.cpu_time_total for event in profiler.key_averages() if event.key == "aten::linear") / 1e6
    return inside, total


def product_rate(
    rows: int, shape: tuple[int, int], dtype: torch.dtype, trials: int = 5, seconds: float = 0.3
) -> float:
    """GFLOP/s of `F.linear` on [rows, in] x [out, in] in `dtype`: the best of `trials` timings of about `seconds`
    each (the least disturbed by the other tenants of the host: the rate the cores can give)."""
    inputs = torch.randn(rows, shape[0]).to(dtype)
    weight = torch.randn(shape[1], shape[0]).to(dtype)
    bias = torch.randn(shape[1]).to(dtype)
    best = 0.0
    with torch.inference_mode():
        for _ in range(3):
            torch.nn.functional.linear(inputs, weight, bias)
        for _ in range(trials):
            calls, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                torch.nn.functional.linear(inputs, weight, bias)
                calls += 1
            best = max(best, 2 * rows * shape[0] * shape[1] * calls / (time.perf_counter() - started) / 1e9)
    return best


def markdown(report: dict) -> str:
    gain = report["predict"]
    lines = [
        f"`{report['model']}`, PyTorch backend, {report['texts']} CoNLL-2003 test sentences, torch threads "
        f"{report['torch_threads']}, {report['machine']['cpu_count']} CPUs; load average "
        f"{report['load_average']:.2f} before.",
        "",
        f"| predict, 1 text per call | {report['batch']} texts per call | gain | per round |",
        "|---|---|---|---|",
        f"| {gain['one_per_call']:.1f} | {gain['batched']:.1f} | {gain['gain']:.2f}x | "
        + ", ".join(f"{ratio:.2f}" for ratio in gain["gain_by_round"])
        + " |",
        "",
        "Inside the batched calls, and the same matrix products alone at the same shapes:",
        "",
        "| tokens per call (packed rows) | real tokens | matrix products, GFLOP per call | share of the time | "
        "their rate, GFLOP/s | alone, float32 | alone, bfloat16 | batched rate / float32 alone |",
        "|---|---|---|---|---|---|---|---|",
    ]
    work = report["batched_pass"]
    lines.append(
        f"| {work['model_tokens_per_call']:.0f} | {work['real_tokens_per_call']:.0f} | "
        f"{work['linear_gflop_per_call']:.2f} | {work['linear_time_share']:.0%} | "
        f"{work['linear_gflops']:.0f} | {work['alone_float32_gflops']:.0f} | "
        f"{work['alone_bfloat16_gflops']:.0f} | {work['efficiency']:.0%} |"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A fine-tuned NER run directory (PyTorch weights).")
    parser.add_argument("--conll", default=str(ROOT.parent / "shared" / "data" / "conll2003" / "test.txt"))
    parser.add_argument("--texts", type=int, default=1280, help="Sentences per round of the batched calls.")
    parser.add_argument("--single_texts", type=int, default=300, help="Sentences per round, one per call.")
    parser.add_argument("--batch", type=int, default=64, help="Texts per batched call (serve.py --max_batch_size).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "batching_ceiling.json")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 20 or not 1 <= args.batch <= 512 or args.texts < args.batch:
        sys.exit("error: --rounds must be 1-20, --batch 1-512, and --texts at least --batch.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from utils.core.conll import read_conll
    from utils.serving.predictor import Predictor

    texts = [" ".join(tokens) for tokens in read_conll(args.conll).tokens if tokens][: args.texts]
    load_average = os.getloadavg()[0]
    predictor = Predictor.from_pretrained(args.model, device="cpu", backend="torch")
    singles = texts[: args.single_texts]
    texts_per_second(predictor, texts[: args.batch * 2], args.batch)  # warm-up
    one, many = [], []
    for _ in range(args.rounds):
        one.append(texts_per_second(predictor, singles, 1))
        many.append(texts_per_second(predictor, texts, args.batch))

    def batched() -> None:
        texts_per_second(predictor, texts, args.batch)

    shapes, model_tokens = linear_work(predictor.model, batched)
    inside, total = linear_seconds(batched)
    calls = -(-len(texts) // args.batch)
    real_tokens = sum(len(ids) for ids in predictor.tokenizer(texts)["input_ids"])
    flop = sum(2 * tokens * n_in * n_out for (n_in, n_out), tokens in shapes.items())
    rows = round(model_tokens / calls)
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):  # the shapes' rates, weighted by their share of the work
        seconds = sum(
            2 * tokens * n_in * n_out / (product_rate(rows, (n_in, n_out), dtype) * 1e9)
            for (n_in, n_out), tokens in shapes.items()
        )
        rates[dtype] = flop / seconds / 1e9
    linear_gflops = flop / inside / 1e9
    report = {
        "model": args.model,
        "texts": len(texts),
        "single_texts": len(singles),
        "batch": args.batch,
        "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "load_average": load_average,
        "load_average_after": os.getloadavg()[0],
        "predict": {
            "one_per_call": statistics.fmean(one),
            "batched": statistics.fmean(many),
            "gain": statistics.fmean(many) / statistics.fmean(one),
            "one_per_call_by_round": one,
            "batched_by_round": many,
            "gain_by_round": [b / a for a, b in zip(one, many)],
        },
        "batched_pass": {
            "calls": calls,
            "model_tokens_per_call": model_tokens / calls,
            "real_tokens_per_call": real_tokens / calls,
            "linear_gflop_per_call": flop / calls / 1e9,
            "linear_shapes": {f"{n_in}x{n_out}": tokens for (n_in, n_out), tokens in shapes.items()},
            "linear_time_share": inside / total,
            "linear_gflops": linear_gflops,
            "alone_float32_gflops": rates[torch.float32],
            "alone_bfloat16_gflops": rates[torch.bfloat16],
            "efficiency": linear_gflops / rates[torch.float32],
        },
        "machine": {**machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability()},
    }
    write_results(args.output, report, markdown(report))


if __name__ == "__main__":
    main()
