"""How serve.py starts and stops.

- The listening socket is bound before the model loads (`bind_socket`): a port in use is one error line at once, not
  an uvicorn line among the shutdown logs after the model has loaded.
- The grace period SIGTERM gives the requests in flight covers the largest request the limits allow: at start, the
  loaded model predicts one text of `--max_chars_per_text` characters (twice: the first call warms it up), and the
  grace period is that time for `--max_texts_per_request` texts, with a margin (`grace_seconds`); or
  `--shutdown_grace_seconds`.
- `GracefulServer` (uvicorn's server) on SIGTERM or Ctrl-C stops accepting connections, marks the service not ready,
  lets the requests in flight finish within the grace period, then answers those still waiting or running with a JSON
  503 and stops the model's work at its next forward pass (`DynamicBatcher.abort`), and exits.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import socket
import time
from typing import Any

import uvicorn

from utils.core.errors import ConfigError
from utils.core.examples import TEXT, TOKENS, Example
from utils.serving.batching import DynamicBatcher
from utils.serving.requests import Limits

logger = logging.getLogger(__name__)

#: Words of the text whose prediction time sets the grace period (repeated up to the character limit).
SAMPLE = "Officials in Brussels and Washington said the talks would resume in Geneva next week . "

#: The grace period is this many times the measured time of the largest request, plus MARGIN_SECONDS: a busy machine
#: (other tenants, the requests queued beside it) is slower than the idle one measured at start.
SAFETY, MARGIN_SECONDS = 2.0, 5.0

#: uvicorn cancels what is left this long after the grace period, should a 503 not have gone out by then.
BACKSTOP_SECONDS = 10.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` (listening starts with uvicorn), or one error line that says what to do."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as err:
        raise ConfigError(f"--host {host}: not an address of this machine ({err.strerror}).") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port in TIME_WAIT can be reused
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"--port {port}: {host}:{port} is already in use (another serve.py?); choose another --port, or stop "
                "what listens there."
            ) from None
        if err.errno == errno.EACCES:
            raise ConfigError(
                f"--port {port}: binding {host}:{port} needs privileges (ports under 1024); choose a --port of 1024 "
                "or more."
            ) from None
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({err.strerror}).") from None
    sock.set_inheritable(True)
    return sock


def sample_example(kinds: Any, characters: int) -> Example:
    """A text of `characters` characters, as an input of a kind the task takes (a text, else pre-split words)."""
    text = (SAMPLE * (characters // len(SAMPLE) + 1))[:characters].rsplit(" ", 1)[0] or "word"
    if TEXT in kinds:
        return Example(text=text)
    if TOKENS in kinds:
        return Example(text=text, tokens=tuple(text.split()))
    raise ConfigError(f"cannot measure the largest request: the task takes {sorted(kinds)}.")


def largest_text_seconds(predictor, max_chars: int) -> float:
    """Seconds the loaded model takes to predict one text of `max_chars` characters (the second of two calls)."""
    example = sample_example(predictor.task.serving.input_kinds, max_chars)
    predictor.predict_examples([example])  # warms the model up (first-call allocations, kernel choice)
    started = time.perf_counter()
    predictor.predict_examples([example])
    return time.perf_counter() - started


def grace_seconds(text_seconds: float, max_texts: int) -> float:
    """The grace period for requests of up to `max_texts` texts that take `text_seconds` each."""
    return round(SAFETY * text_seconds * max_texts + MARGIN_SECONDS, 1)


def shutdown_grace(predictor, limits: Limits, given: float | None = None) -> Limits:
    """`limits` with their grace period: `given` (--shutdown_grace_seconds), else measured on `predictor`."""
    if given is None:
        seconds = largest_text_seconds(predictor, limits.max_chars)
        given = grace_seconds(seconds, limits.max_texts)
        logger.info(
            "A text of %d characters takes %.2f s here: on SIGTERM, requests in flight get %.1f s to finish "
            "(enough for %d such texts; --shutdown_grace_seconds to choose)",
            limits.max_chars,
            seconds,
            given,
            limits.max_texts,
        )
    return dataclasses.replace(limits, shutdown_grace_seconds=given)


class GracefulServer(uvicorn.Server):
    """uvicorn's server, whose shutdown gives the requests in flight `grace` seconds, then answers the rest with a
    JSON 503 (`DynamicBatcher.abort`) before uvicorn would cancel them (a plain-text 500)."""

    def __init__(self, config: uvicorn.Config, batcher: DynamicBatcher, grace: float):
        super().__init__(config)
        self.batcher, self.grace = batcher, grace

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        import asyncio

        self.batcher.drain()
        logger.info("Stopping: the requests in flight have %.1f s to finish (--shutdown_grace_seconds)", self.grace)

        def abort() -> None:
            refused = self.batcher.abort(
                f"the service is shutting down: this request did not finish within the {self.grace:g} s grace period."
            )
            if refused:
                logger.warning("Grace period over: %d request(s) answered 503, the model's work stopped", refused)

        timer = asyncio.get_running_loop().call_later(self.grace, abort)
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()
            if self.force_exit and not self.batcher.closed:  # a second Ctrl-C: no lifespan shutdown, stop the work now
                abort()
