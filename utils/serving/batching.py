"""Dynamic batching for the HTTP service: requests that arrive together are predicted together.

Each request is a `Job` (its inputs as `Example`s, whatever the task); `DynamicBatcher` gathers jobs from a queue
until `max_batch_size` inputs are waiting or `max_wait_ms` have passed since the first, then runs one `Predictor`
call over all of them on a single worker thread (the event loop keeps answering meanwhile) and hands
each job its own results. It waits for batchmates only while other requests are arriving (being read and checked:
`arriving`), or when the last batch held several requests: then clients are sending concurrently, and those just
answered send their next request within a millisecond or two. So a client alone pays no wait, and under load the
batches fill (64 clients: 56-59 inputs per model call on average instead of 31; docs/serving.md).

A document id only groups the sentences of its own request (ids are namespaced by job), so a result never depends on
another client's input; with document context off, a result does not depend on its batchmates at all (up to float
rounding; the int8 graph runs each row alone by default, so its activation scales are the row's own). A batch that
fails is retried job by job, so one bad input fails only its own request.

Stopping (SIGTERM, utils/serving/lifecycle.py): `drain()` marks the service not ready while the jobs in flight go on;
`abort()`, at the end of the grace period, answers every job still queued or running with `ShuttingDown` (a JSON
503) and stops the model's work at its next forward pass (`StoppableForward`), so nothing runs on for minutes after.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from utils.core.examples import Example
from utils.core.task import ForwardBatch

logger = logging.getLogger(__name__)


class ShuttingDown(Exception):
    """The service is stopping and will not (or no longer) predict this request: a 503."""


class StoppableForward:
    """A forward callable that passes another's batches on until `stop` is set, then raises `ShuttingDown` instead of
    asking for the next batch; closing the inner generator cancels what it queued (ONNX rows in parallel)."""

    def __init__(self, forward, stop: threading.Event):
        self.forward, self.stop = forward, stop

    def __getattr__(self, name: str) -> Any:
        """The inner forward's attributes (e.g. `parallel_rows`, which the predictor's settings report)."""
        if name == "forward":
            raise AttributeError(name)
        return getattr(self.forward, name)

    def __call__(self, inputs: Mapping[str, Sequence[Sequence[int]]]) -> Iterator[ForwardBatch]:
        batches = self.forward(inputs)
        try:
            for batch in batches:
                if self.stop.is_set():
                    raise ShuttingDown("the service stopped")
                yield batch
                if self.stop.is_set():
                    raise ShuttingDown("the service stopped")
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()


def stoppable(predictor, stop: threading.Event):
    """`predictor` with its forward pass wrapped in `StoppableForward` (a `Predictor`; another object, e.g. a test's
    stand-in, is returned as it is)."""
    if not dataclasses.is_dataclass(predictor) or getattr(predictor, "forward", None) is None:
        return predictor
    return dataclasses.replace(predictor, forward=StoppableForward(predictor.forward, stop))


@dataclass
class Job:
    """One request's inputs."""

    examples: Sequence[Example]
    future: asyncio.Future | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.examples)


@dataclass
class BatchStats:
    requests: int = 0
    inputs: int = 0
    batches: int = 0
    failed_requests: int = 0
    largest_batch: int = 0
    busy_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        mean = self.inputs / self.batches if self.batches else 0.0
        return {
            "requests": self.requests,
            "inputs": self.inputs,
            "batches": self.batches,
            "mean_batch_size": round(mean, 2),
            "largest_batch": self.largest_batch,
            "failed_requests": self.failed_requests,
            "busy_seconds": round(self.busy_seconds, 3),
        }


def predict_jobs(predictor, jobs: Sequence[Job]) -> list[list[dict[str, Any]]]:
    """Every job's results, from one predictor call over the inputs of all jobs. A document id is namespaced by its
    job, so a request's documents never meet another request's."""
    examples = [
        dataclasses.replace(example, document=(index, example.document)) if example.document is not None else example
        for index, job in enumerate(jobs)
        for example in job.examples
    ]
    outputs = predictor.predict_examples(examples) if examples else []
    results, start = [], 0
    for job in jobs:
        results.append(outputs[start : start + job.size])
        start += job.size
    return results


class DynamicBatcher:
    """Gathers `Job`s into batches of at most `max_batch_size` inputs (a larger job runs alone), waiting at most
    `max_wait_ms` after the first; `start()` and `stop()` run inside the event loop (the app's lifespan)."""

    def __init__(self, predictor, max_batch_size: int = 64, max_wait_ms: float = 5.0):
        self.stopped = threading.Event()  # set by `abort()`: the model's work stops at its next forward pass
        self.predictor = stoppable(predictor, self.stopped)
        self.max_batch_size, self.max_wait = max_batch_size, max_wait_ms / 1000
        self.draining = False  # SIGTERM came: the jobs in flight go on, the service is no longer ready
        self.running_batch: list[Job] = []
        self.abort_reason = "the service is shutting down"
        self.stats = BatchStats()
        self.queue: asyncio.Queue[Job | None] | None = None
        self.held: deque[Job] = deque()  # a job that did not fit the last batch goes first in the next
        self.worker: asyncio.Task | None = None
        self.closed = False
        self.arriving = 0  # requests being read and checked, soon to be submitted (the HTTP layer counts them)
        self.last_requests = 0  # requests in the last batch: more than one means clients are sending concurrently
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self.observers: list[Callable[[int], None]] = []  # called with the inputs of every model call (metrics)

    @property
    def running(self) -> bool:
        """Started and not stopping: the service is ready for requests."""
        return self.worker is not None and not self.closed and not self.draining and not self.worker.done()

    def waiting(self) -> int:
        """Requests queued for a batch (the queue depth)."""
        return (self.queue.qsize() if self.queue is not None else 0) + len(self.held)

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.create_task(self.run(), name="dynamic-batcher")

    async def stop(self) -> None:
        """Finish the jobs queued so far (none after `abort()`), then stop the worker."""
        if self.worker is None or self.queue is None:
            return
        if not self.closed:
            self.closed = True
            await self.queue.put(None)
        await self.worker
        self.executor.shutdown(wait=True)

    def drain(self) -> None:
        """SIGTERM came: report not ready; the jobs in flight go on until `abort()`."""
        self.draining = True

    def abort(self, reason: str) -> int:
        """Answer every job still queued or running with `ShuttingDown(reason)` and stop the model's work; returns how
        many jobs were refused. Runs in the event loop."""
        self.closed, self.abort_reason = True, reason
        self.stopped.set()
        jobs = [*self.running_batch, *self.held]
        self.held.clear()
        while self.queue is not None and not self.queue.empty():
            job = self.queue.get_nowait()
            if job is not None:
                jobs.append(job)
        refused = 0
        for job in jobs:
            if job.future is not None and not job.future.done():
                job.future.set_exception(ShuttingDown(reason))
                refused += 1
        if self.queue is not None:
            self.queue.put_nowait(None)  # the worker stops once its running batch has given up
        return refused

    async def submit(self, job: Job) -> list[dict[str, Any]]:
        """The job's results, once its batch has run (an exception if its own input failed)."""
        if self.queue is None or self.closed:
            raise ShuttingDown("the service is shutting down")
        job.future = asyncio.get_running_loop().create_future()
        self.stats.requests += 1
        await self.queue.put(job)
        return await job.future

    async def next_batch(self) -> tuple[list[Job], bool]:
        """The next batch, and whether the stop marker was met (the batch is the last one)."""
        assert self.queue is not None
        first = self.held.popleft() if self.held else await self.queue.get()
        if first is None:
            return [], True
        batch, size = [first], first.size
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch_size:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not (self.arriving or self.last_requests > 1):
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), remaining)
                except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
                    break
            if job is None:
                return batch, True
            if size + job.size > self.max_batch_size:
                self.held.append(job)
                break
            batch.append(job)
            size += job.size
        return batch, False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping or self.held:
            batch, stop = await self.next_batch()
            stopping = stopping or stop
            if self.stopped.is_set():  # aborted while gathering this batch
                for job in batch:
                    if job.future is not None and not job.future.done():
                        job.future.set_exception(ShuttingDown(self.abort_reason))
                return
            batch = [job for job in batch if job.future is not None and not job.future.done()]  # gone clients
            if not batch:
                continue
            self.last_requests = len(batch)
            self.running_batch = batch
            started = time.perf_counter()
            try:
                outcomes: list[Any] = await loop.run_in_executor(self.executor, predict_jobs, self.predictor, batch)
            except ShuttingDown:
                return  # `abort()` answered the batch's jobs
            except Exception:  # one job's input broke the batch: run each alone, so only that job fails
                if self.stopped.is_set():
                    return
                logger.warning("A batch of %d requests failed; retrying them one by one", len(batch), exc_info=True)
                outcomes = [await loop.run_in_executor(self.executor, self.one_job, job) for job in batch]
            finally:
                self.running_batch = []
            self.stats.busy_seconds += time.perf_counter() - started
            self.stats.batches += 1
            self.stats.inputs += sum(job.size for job in batch)
            self.stats.largest_batch = max(self.stats.largest_batch, sum(job.size for job in batch))
            for observe in self.observers:
                observe(sum(job.size for job in batch))
            for job, outcome in zip(batch, outcomes, strict=True):
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    self.stats.failed_requests += 1
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    def one_job(self, job: Job) -> list[dict[str, Any]] | BaseException:
        try:
            return predict_jobs(self.predictor, [job])[0]
        except Exception as err:
            return err
