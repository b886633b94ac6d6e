"""Serve a fine-tuned model over HTTP: POST /predict, GET /health, GET /info, a page at /, OpenAPI docs at /docs.

    python serve.py --model outputs/ner                      # the ONNX export when DIR/onnx/ holds one, else torch
    python serve.py --model outputs/ner --backend onnx --port 8000
    curl -s localhost:8000/predict -d '{"texts": ["Angela Merkel met Emmanuel Macron in Paris."]}'

Each result is the line predict.py writes for the same input. Concurrent requests are gathered into batches of at
most --max_batch_size inputs, waiting at most --max_wait_ms for the first one's batchmates; a request over the
limits (--max_texts_per_request, --max_chars_per_text) gets a 413 that names the limit. SIGTERM or Ctrl-C stops
new connections, finishes the requests in flight, then exits. How: utils/serving/http.py, utils/serving/batching.py.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

import torch
import transformers

from utils.core.errors import ConfigError, run_command
from utils.core.parsing import parse_args
from utils.serving.http import Limits, hosts_note, serve
from utils.serving.onnx_backend import BACKENDS
from utils.serving.predictor import Predictor

logger = logging.getLogger(__name__)


@dataclass
class ServeArguments:
    """serve.py's options (a YAML/JSON config file with these keys works too)."""

    model_name_or_path: str = field(
        metadata={"help": "Directory of a fine-tuned model: a run's --output_dir.", "aliases": ["--model"]}
    )
    backend: str = field(
        default="auto", metadata={"help": "torch, onnx (the int8 graph if exported, else fp32), onnx-fp32, "
                                  "onnx-int8, or auto: ONNX when the directory holds an export.",
                                  "choices": list(BACKENDS)}
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (loopback by default)."})
    port: int = field(default=8000, metadata={"help": "Port to listen on."})
    max_batch_size: int = field(default=64, metadata={"help": "Most inputs gathered into one model call."})
    max_wait_ms: float = field(default=5.0, metadata={"help": "Longest wait for batchmates of a request (ms)."})
    max_texts_per_request: int = field(default=256, metadata={"help": "Most texts (or sentences) per request."})
    max_chars_per_text: int = field(default=20_000, metadata={"help": "Most characters per text."})
    batch_size: int = field(
        default=8, metadata={"help": "Model inputs per forward pass. Smaller than predict.py's 32: a gathered batch "
                             "holds a few dozen texts of any length, and forward passes of 8 similar lengths pad "
                             "less (64 clients: 1.2x the requests/s of 32 with torch, 1.45x with int8; "
                             "docs/serving.md)."}
    )
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:N, or auto (a GPU when there is one)."})
    max_seq_length: int | None = field(default=None, metadata={"help": "Most tokens per model input."})
    stride: int | None = field(default=None, metadata={"help": "NER: tokens shared by consecutive windows."})
    threshold: float = field(default=0.5, metadata={"help": "Multi-label: probability above which a label is on."})
    context_size: int | None = field(default=None, metadata={"help": "NER: document context tokens per side."})
    threads: int | None = field(default=None, metadata={"help": "Intra-op threads of ONNX Runtime and torch "
                                                        "(default: one per core)."})
    log_level: str = field(default="info", metadata={"help": "uvicorn's log level.",
                                                     "choices": ["critical", "error", "warning", "info", "debug"]})
    access_log: bool = field(default=False, metadata={"help": "Log every request."})


def main(argv: list[str] | None = None) -> None:
    (args,), _ = parse_args((ServeArguments,), argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr, level=logging.INFO)
    transformers.utils.logging.disable_progress_bar()
    for name, value in (("--max_batch_size", args.max_batch_size), ("--max_texts_per_request",
                        args.max_texts_per_request), ("--max_chars_per_text", args.max_chars_per_text)):
        if value < 1:
            raise ConfigError(f"{name} must be positive, got {value}.")
    if args.max_wait_ms < 0:
        raise ConfigError(f"--max_wait_ms must be 0 or more, got {args.max_wait_ms}.")
    if not 0 <= args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a port number (0-65535).")
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be positive, got {args.threads}.")
        torch.set_num_threads(args.threads)
    predictor = Predictor.from_pretrained(args.model_name_or_path, device=args.device, batch_size=args.batch_size,
                                          max_seq_length=args.max_seq_length, stride=args.stride,
                                          threshold=args.threshold, context_size=args.context_size,
                                          backend=args.backend, threads=args.threads)
    for note in hosts_note(args.host):
        logger.warning(note)
    limits = Limits(max_texts=args.max_texts_per_request, max_chars=args.max_chars_per_text,
                    max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms)
    serve(predictor, args.model_name_or_path, args.host, args.port, limits, args.log_level, args.access_log)


if __name__ == "__main__":
    run_command(main)
