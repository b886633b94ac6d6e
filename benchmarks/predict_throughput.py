"""Prediction speed: `Predictor` (utils/serving/predictor.py) against the transformers token-classification pipeline,
and the ONNX Runtime backends of the same `Predictor` (export first: `export.py --model DIR --quantize int8`).

    python benchmarks/predict_throughput.py --model outputs/ner --conll ../shared/data/conll2003/test.txt \
        --sentences 3000 --output benchmarks/results/predict_throughput.json
    python benchmarks/predict_throughput.py --model outputs/ner --systems predictor,onnx-fp32,onnx-int8 \
        --output benchmarks/results/predict_throughput_onnx.json

Both systems tag the same raw texts (the CoNLL sentences' words joined by single spaces) with the same model, each in
a fresh process, so its peak RSS (`ru_maxrss`, which sees torch's allocations where tracemalloc does not) is its
own. Reported: sentences per second (after loading and one warm-up call), load time, memory (the system's imports,
then the growth from loading and predicting, and the process peak), and entity agreement: the fraction of sentences
whose (label, start, end) sets are equal. The pipeline's "simple" strategy groups subword tokens, not words: a
word whose continuation subwords get a B- tag (or another type) becomes several entity fragments. So agreement is
also given over the comparable sentences: those the pipeline splits into our words (its pre-tokenizer separates
every punctuation mark) and whose pipeline entities all start and end on word boundaries.
The ONNX systems are compared with the PyTorch `Predictor` (`predictor`, always the torch backend): the fraction of
sentences whose entities are equal.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.reporting import machine  # noqa: E402

SYSTEMS = ("predictor", "pipeline", "onnx-fp32", "onnx-int8", "onnx-int8-rows")
# Predictor's backend; "-rows": each row alone (`--row_parallel`)
BACKENDS = {"predictor": "torch", "onnx-fp32": "onnx-fp32", "onnx-int8": "onnx-int8", "onnx-int8-rows": "onnx-int8"}
WARMUP = 16  # sentences run once before timing: first calls pay for lazy initialisation


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def run_predictor(
    model: str,
    texts: list[str],
    device: str,
    batch_size: int,
    imported,
    backend: str = "torch",
    threads: int | None = None,
    row_parallel: bool = False,
) -> tuple[list[list], float, float]:
    from utils.serving.predictor import Predictor

    imported()
    start = time.perf_counter()
    predictor = Predictor.from_pretrained(
        model, device=device, batch_size=batch_size, backend=backend, threads=threads, row_parallel=row_parallel
    )
    loaded = time.perf_counter() - start
    predictor.predict(texts[:WARMUP])
    start = time.perf_counter()
    results = predictor.predict(texts)
    seconds = time.perf_counter() - start
    return [[(e["label"], e["start"], e["end"]) for e in r["entities"]] for r in results], loaded, seconds


def run_pipeline(
    model: str, texts: list[str], device: str, batch_size: int | None, strategy: str, imported
) -> tuple[list[list], float, float]:
    import torch
    from transformers import pipeline

    imported()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    tagger = pipeline("token-classification", model=model, aggregation_strategy=strategy, device=device)
    loaded = time.perf_counter() - start
    kwargs = {"batch_size": batch_size} if batch_size else {}
    tagger(texts[:WARMUP], **kwargs)
    start = time.perf_counter()
    results = tagger(texts, **kwargs)
    seconds = time.perf_counter() - start
    return [[(e["entity_group"], int(e["start"]), int(e["end"])) for e in r] for r in results], loaded, seconds


def worker(args: argparse.Namespace) -> None:
    """One system in this (fresh) process: time it, measure its memory, write its entities."""
    import torch
    import transformers  # noqa: F401  (imported before the baseline, as both systems need it)

    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    if args.threads:
        torch.set_num_threads(args.threads)
    memory = {"start": peak_rss_mib()}

    def imported() -> None:
        memory["imported"] = peak_rss_mib()

    if args.worker in BACKENDS:
        entities, loaded, seconds = run_predictor(
            args.model,
            texts,
            args.device,
            args.batch_size,
            imported,
            BACKENDS[args.worker],
            args.threads,
            row_parallel=args.worker.endswith("-rows"),
        )
    else:
        entities, loaded, seconds = run_pipeline(
            args.model, texts, args.device, args.pipeline_batch_size, args.pipeline_strategy, imported
        )
    peak = peak_rss_mib()
    record = {
        "system": args.worker,
        "sentences": len(texts),
        "seconds": seconds,
        "load_seconds": loaded,
        "sentences_per_second": len(texts) / seconds,
        "peak_rss_mib": peak,
        "import_mib": memory["imported"] - memory["start"],
        "rss_growth_mib": peak - memory["imported"],
        "torch_threads": torch.get_num_threads(),
        "entities": entities,
    }
    Path(args.result).write_text(json.dumps(record), encoding="utf-8")


def run_worker(system: str, args: argparse.Namespace, texts_path: str, workdir: str) -> dict:
    result = os.path.join(workdir, f"{system}.json")
    command = [
        sys.executable,
        __file__,
        "--worker",
        system,
        "--model",
        args.model,
        "--texts",
        texts_path,
        "--result",
        result,
        "--device",
        args.device,
        "--batch_size",
        str(args.batch_size),
    ]
    command += ["--pipeline_strategy", args.pipeline_strategy]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.pipeline_batch_size:
        command += ["--pipeline_batch_size", str(args.pipeline_batch_size)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"error: the {system} run failed:\n{completed.stderr[-3000:]}")
    return json.loads(Path(result).read_text(encoding="utf-8"))


def word_boundaries(text: str) -> tuple[list[tuple[int, int]], set[int], set[int]]:
    """Our words' offsets, and the offsets where words start and where they end."""
    from utils.tasks.ner.words import words_with_offsets

    words = [(word.start, word.end) for word in words_with_offsets(text)]
    return words, {start for start, _ in words}, {end for _, end in words}


def comparable(tokenizer, text: str, pipeline_entities: list) -> tuple[bool, bool]:
    """(same words, comparable): whether the pipeline's pre-tokenizer splits `text` into our words, and also puts
    every entity boundary on a word boundary (no word cut into fragments)."""
    words, starts, ends = word_boundaries(text)
    theirs = [offsets for _, offsets in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]
    same = theirs == words
    return same, same and all(start in starts and end in ends for _, start, end in pipeline_entities)


def compare(texts: list[str], ours: list[list], theirs: list[list], tokenizer) -> dict:
    equal = [{tuple(e) for e in a} == {tuple(e) for e in b} for a, b in zip(ours, theirs, strict=True)]
    flags = [comparable(tokenizer, text, entities) for text, entities in zip(texts, theirs)]
    subset = [e for e, (_, c) in zip(equal, flags) if c]
    return {
        "entity_agreement": sum(equal) / len(equal),
        "same_words_sentences": sum(same for same, _ in flags),
        "comparable_sentences": len(subset),
        "entity_agreement_comparable": sum(subset) / len(subset) if subset else None,
        "entities_predictor": sum(len(a) for a in ours),
        "entities_pipeline": sum(len(b) for b in theirs),
        "first_disagreements": [
            {"text": t, "predictor": a, "pipeline": b} for t, a, b, e in zip(texts, ours, theirs, equal) if not e
        ][:5],
    }


def system_name(system: str, report: dict) -> str:
    if system == "pipeline":
        return f"pipeline, aggregation_strategy={report['pipeline_strategy']}"
    backend = "" if system == "predictor" else f", ONNX Runtime {system.removeprefix('onnx-').removesuffix('-rows')}"
    if system.endswith("-rows"):
        return f"Predictor{backend} (--row_parallel: each row alone)"
    return f"Predictor{backend} (batch {report['batch_size']})"


def markdown(report: dict) -> str:
    runs = {run["system"]: run for run in report["runs"]}
    first = next(iter(runs.values()))
    lines = [
        f"Model `{report['model']}`, {report['sentences']} sentences of `{report['conll']}` as raw text, "
        f"device {report['device']}, {first['torch_threads']} torch threads"
        + (f" ({report['threads']} ONNX Runtime threads)" if report.get("threads") else "")
        + (f", load average {report['load_average']:.2f} before the runs." if report.get("load_average") else "."),
        "",
        "| system | sentences/s | x PyTorch Predictor | predict s | load s | imports MiB | load + predict MiB | "
        "peak RSS MiB | entities |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = runs.get("predictor", {}).get("sentences_per_second")
    for system, run in runs.items():
        ratio = f"{run['sentences_per_second'] / base:.2f}x" if base else "-"
        lines.append(
            f"| {system_name(system, report)} | {run['sentences_per_second']:.1f} | {ratio} | "
            f"{run['seconds']:.2f} | {run['load_seconds']:.2f} | {run['import_mib']:.0f} | "
            f"{run['rss_growth_mib']:.0f} | {run['peak_rss_mib']:.0f} | {run['entity_count']} |"
        )
    agreement = report.get("agreement")
    if agreement:
        comparable = agreement["entity_agreement_comparable"]
        lines += [
            "",
            f"Predictor against the pipeline: {report['speedup']:.2f}x. Same entities (label, start, end) in "
            f"{agreement['entity_agreement']:.1%} of the sentences. {agreement['same_words_sentences']} sentences are "
            f"split into the same words by both; in {agreement['comparable_sentences']} of them the pipeline also "
            "cuts no word into entity fragments, and "
            + (f"{comparable:.1%} of those agree." if comparable is not None else "none are comparable."),
        ]
    for system, same in report.get("backend_agreement", {}).items():
        lines += [
            "",
            f"{system_name(system, report)}: the same entities as the PyTorch Predictor in {same:.2%} of "
            "the sentences.",
        ]
    return "\n".join(lines) + "\n"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A fine-tuned NER model directory (run_ner.py output).")
    parser.add_argument("--conll", default=str(ROOT.parent / "shared" / "data" / "conll2003" / "test.txt"))
    parser.add_argument("--sentences", type=int, default=3000, help="The first N sentences of the file.")
    parser.add_argument("--batch_size", type=int, default=32, help="Predictor batch size.")
    parser.add_argument(
        "--pipeline_batch_size",
        type=int,
        default=None,
        help="Pipeline batch size (default: the pipeline's own, one text at a time).",
    )
    parser.add_argument(
        "--pipeline_strategy",
        default="simple",
        choices=["simple", "first", "average", "max"],
        help="The pipeline's aggregation_strategy; 'first' is word-level, like Predictor.",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto, for every system.")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="Intra-op threads of torch and ONNX Runtime in every system (default: theirs).",
    )
    parser.add_argument(
        "--systems",
        default="predictor,pipeline",
        help=f"Comma-separated, run in this order, each in a fresh process: {', '.join(SYSTEMS)}. "
        "predictor is the PyTorch backend; onnx-* need `export.py --model DIR [--quantize int8]`.",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "predict_throughput.json")
    parser.add_argument("--markdown", type=Path, default=None, help="Markdown table (default: --output as .md).")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse()
    if args.worker:
        return worker(args)
    from transformers import AutoTokenizer

    from utils.core.conll import read_conll
    from utils.core.errors import FinetuneError
    from utils.core.files import write_json

    try:
        sentences = read_conll(args.conll).tokens[: args.sentences]
    except FinetuneError as err:
        sys.exit(f"error: {err}")
    texts = [" ".join(tokens) for tokens in sentences]
    systems = [system.strip() for system in args.systems.split(",") if system.strip()]
    unknown = [system for system in systems if system not in SYSTEMS]
    if unknown or not systems:
        sys.exit(f"error: --systems {args.systems}: use some of {', '.join(SYSTEMS)}.")
    load_average = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as workdir:
        texts_path = os.path.join(workdir, "texts.json")
        Path(texts_path).write_text(json.dumps(texts), encoding="utf-8")
        runs = []
        for system in systems:
            print(f"{system} ...", flush=True)
            runs.append(run_worker(system, args, texts_path, workdir))
    entities = {run["system"]: run.pop("entities") for run in runs}
    for run in runs:
        run["entity_count"] = sum(len(sentence) for sentence in entities[run["system"]])
    report = {
        "model": args.model,
        "conll": args.conll,
        "sentences": len(texts),
        "device": args.device,
        "batch_size": args.batch_size,
        "pipeline_batch_size": args.pipeline_batch_size,
        "pipeline_strategy": args.pipeline_strategy,
        "load_average": load_average,
        "runs": runs,
        "threads": args.threads,
        "machine": machine(),
    }
    if "predictor" in entities and "pipeline" in entities:
        report["agreement"] = compare(
            texts, entities["predictor"], entities["pipeline"], AutoTokenizer.from_pretrained(args.model)
        )
        report["speedup"] = (
            runs[systems.index("predictor")]["sentences_per_second"]
            / runs[systems.index("pipeline")]["sentences_per_second"]
        )
    if "predictor" in entities:
        report["backend_agreement"] = {
            system: sum(
                {tuple(e) for e in a} == {tuple(e) for e in b} for a, b in zip(entities[system], entities["predictor"])
            )
            / len(texts)
            for system in systems
            if system.startswith("onnx-")
        }
    write_json(args.output, report)
    table = markdown(report)
    markdown_path = args.markdown or args.output.with_suffix(".md")
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(table, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
