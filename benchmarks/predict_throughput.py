"""Prediction speed: `Predictor` (utils/serving/predictor.py) against the transformers token-classification pipeline.

    python benchmarks/predict_throughput.py --model outputs/ner --conll ../shared/data/conll2003/test.txt \
        --sentences 3000 --output benchmarks/results/predict_throughput.json

Both systems tag the same raw texts (the CoNLL sentences' words joined by single spaces) with the same model, each in
a fresh process, so its peak RSS (`ru_maxrss`, which sees torch's allocations where tracemalloc does not) is its
own. Reported: sentences per second (after loading and one warm-up call), load time, memory (the system's imports,
then the growth from loading and predicting, and the process peak), and entity agreement: the fraction of sentences
whose (label, start, end) sets are equal. The pipeline's "simple" strategy groups subword tokens, not words: a
word whose continuation subwords get a B- tag (or another type) becomes several entity fragments. So agreement is
also given over the comparable sentences: those the pipeline splits into our words (its pre-tokenizer separates
every punctuation mark) and whose pipeline entities all start and end on word boundaries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYSTEMS = ("predictor", "pipeline")
WARMUP = 16  # sentences run once before timing: first calls pay for lazy initialisation


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def run_predictor(model: str, texts: list[str], device: str, batch_size: int, imported) -> tuple[list[list], float,
                                                                                                    float]:
    from utils.serving.predictor import Predictor

    imported()
    start = time.perf_counter()
    predictor = Predictor.from_pretrained(model, device=device, batch_size=batch_size)
    loaded = time.perf_counter() - start
    predictor.predict(texts[:WARMUP])
    start = time.perf_counter()
    results = predictor.predict(texts)
    seconds = time.perf_counter() - start
    return [[(e["label"], e["start"], e["end"]) for e in r["entities"]] for r in results], loaded, seconds


def run_pipeline(model: str, texts: list[str], device: str, batch_size: int | None, strategy: str, imported
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
    memory = {"start": peak_rss_mib()}

    def imported() -> None:
        memory["imported"] = peak_rss_mib()

    if args.worker == "predictor":
        entities, loaded, seconds = run_predictor(args.model, texts, args.device, args.batch_size, imported)
    else:
        entities, loaded, seconds = run_pipeline(args.model, texts, args.device, args.pipeline_batch_size,
                                                 args.pipeline_strategy, imported)
    peak = peak_rss_mib()
    record = {"system": args.worker, "sentences": len(texts), "seconds": seconds, "load_seconds": loaded,
              "sentences_per_second": len(texts) / seconds, "peak_rss_mib": peak,
              "import_mib": memory["imported"] - memory["start"], "rss_growth_mib": peak - memory["imported"],
              "torch_threads": torch.get_num_threads(), "entities": entities}
    Path(args.result).write_text(json.dumps(record), encoding="utf-8")


def run_worker(system: str, args: argparse.Namespace, texts_path: str, workdir: str) -> dict:
    result = os.path.join(workdir, f"{system}.json")
    command = [sys.executable, __file__, "--worker", system, "--model", args.model, "--texts", texts_path,
               "--result", result, "--device", args.device, "--batch_size", str(args.batch_size)]
    command += ["--pipeline_strategy", args.pipeline_strategy]
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
        "first_disagreements": [{"text": t, "predictor": a, "pipeline": b}
                                for t, a, b, e in zip(texts, ours, theirs, equal) if not e][:5],
    }


def markdown(report: dict) -> str:
    runs = {run["system"]: run for run in report["runs"]}
    speedup = runs["predictor"]["sentences_per_second"] / runs["pipeline"]["sentences_per_second"]
    agreement = report["agreement"]
    comparable = agreement["entity_agreement_comparable"]
    lines = [
        f"Model `{report['model']}`, {report['sentences']} sentences of `{report['conll']}` as raw text, "
        f"device {report['device']}, {runs['predictor']['torch_threads']} torch threads.",
        "",
        "| system | sentences/s | predict s | load s | imports MiB | load + predict MiB | peak RSS MiB | entities |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for system, name in (("predictor", f"Predictor (batch {report['batch_size']})"),
                         ("pipeline", f"pipeline, aggregation_strategy={report['pipeline_strategy']}")):
        run = runs[system]
        lines.append(f"| {name} | {run['sentences_per_second']:.1f} | {run['seconds']:.2f} | "
                     f"{run['load_seconds']:.2f} | {run['import_mib']:.0f} | {run['rss_growth_mib']:.0f} | "
                     f"{run['peak_rss_mib']:.0f} | "
                     f"{agreement['entities_' + system]} |")
    lines += [
        "",
        f"Speed-up: {speedup:.2f}x. Same entities (label, start, end) in {agreement['entity_agreement']:.1%} of the "
        f"sentences. {agreement['same_words_sentences']} sentences are split into the same words by both; in "
        f"{agreement['comparable_sentences']} of them the pipeline also cuts no word into entity fragments, and "
        + (f"{comparable:.1%} of those agree." if comparable is not None else "none are comparable."),
    ]
    return "\n".join(lines) + "\n"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A fine-tuned NER model directory (run_ner.py output).")
    parser.add_argument("--conll", default=str(ROOT.parent / "shared" / "data" / "conll2003" / "test.txt"))
    parser.add_argument("--sentences", type=int, default=3000, help="The first N sentences of the file.")
    parser.add_argument("--batch_size", type=int, default=32, help="Predictor batch size.")
    parser.add_argument("--pipeline_batch_size", type=int, default=None,
                        help="Pipeline batch size (default: the pipeline's own, one text at a time).")
    parser.add_argument("--pipeline_strategy", default="simple", choices=["simple", "first", "average", "max"],
                        help="The pipeline's aggregation_strategy; 'first' is word-level, like Predictor.")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto, for both systems.")
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
    with tempfile.TemporaryDirectory() as workdir:
        texts_path = os.path.join(workdir, "texts.json")
        Path(texts_path).write_text(json.dumps(texts), encoding="utf-8")
        runs = []
        for system in SYSTEMS:
            print(f"{system} ...", flush=True)
            runs.append(run_worker(system, args, texts_path, workdir))
    agreement = compare(texts, runs[0]["entities"], runs[1]["entities"], AutoTokenizer.from_pretrained(args.model))
    for run in runs:
        del run["entities"]
    report = {"model": args.model, "conll": args.conll, "sentences": len(texts), "device": args.device,
              "batch_size": args.batch_size, "pipeline_batch_size": args.pipeline_batch_size,
              "pipeline_strategy": args.pipeline_strategy,
              "speedup": runs[0]["sentences_per_second"] / runs[1]["sentences_per_second"], "runs": runs,
              "agreement": agreement, "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()}}
    write_json(args.output, report)
    table = markdown(report)
    markdown_path = args.markdown or args.output.with_suffix(".md")
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(table, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
