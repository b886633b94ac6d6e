"""Serve a fine-tuned model over HTTP: POST /predict, GET /health, GET /info, a page at /, OpenAPI docs at /docs,
the Open Inference Protocol (KServe v2) under /v2 and Prometheus metrics at /metrics.

    python serve.py --model outputs/ner                      # the ONNX export when DIR/onnx/ holds one, else torch
    python serve.py --model outputs/ner --backend onnx --port 8000
    curl -s localhost:8000/predict -d '{"texts": ["Angela Merkel met Emmanuel Macron in Paris."]}'

Each result is the line predict.py writes for the same input. Concurrent requests are gathered into batches of at
most --max_batch_size inputs, waiting at most --max_wait_ms for the first one's batchmates; a request over the
limits (--max_texts_per_request, --max_chars_per_text) gets a 413 that names the limit. SIGTERM or Ctrl-C stops
new connections and lets the requests in flight finish within a grace period long enough for the largest request the
limits allow (measured at start, or --shutdown_grace_seconds); what is still running then gets a JSON 503 and the
model's work stops. How: utils/serving/http.py, utils/serving/batching.py, utils/serving/lifecycle.py.
"""

from __future__ import annotations

import logging
import time

from utils.core.errors import run_command
from utils.serving.arguments import ServeArguments, ServePredictorArguments, parse_script_args
from utils.serving.http import Limits, hosts_note, serve, server_notes
from utils.serving.lifecycle import bind_socket, shutdown_grace

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    model, args = parse_script_args((ServePredictorArguments, ServeArguments), argv)
    sock = bind_socket(args.host, args.port)  # a port in use is an error before the model loads
    try:
        started = time.perf_counter()
        predictor = model.load()
        load_seconds = time.perf_counter() - started
        for note in [*hosts_note(args.host), *server_notes(args.http, args.loop)]:
            logger.warning(note)
        limits = Limits(
            max_texts=args.max_texts_per_request,
            max_chars=args.max_chars_per_text,
            max_batch_size=args.max_batch_size,
            max_wait_ms=args.max_wait_ms,
        )
        limits = shutdown_grace(predictor, limits, args.shutdown_grace_seconds)
    except BaseException:
        sock.close()
        raise
    serve(
        predictor,
        model.model_name_or_path,
        sock,
        limits,
        args.log_level,
        args.access_log,
        http=args.http,
        loop=args.loop,
        model_name=args.model_name,
        load_seconds=load_seconds,
    )


if __name__ == "__main__":
    run_command(main)
