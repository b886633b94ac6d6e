"""The service's dynamic batcher: who waits for batchmates, and every job gets its own results."""

from __future__ import annotations

import asyncio
import threading

import pytest

from utils.core.examples import Example
from utils.serving.batching import DynamicBatcher, Job, ShuttingDown, StoppableForward, predict_jobs


class Echo:
    """A stand-in predictor: each text's result names it (and its document), and every call is recorded."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def predict_examples(self, examples):
        self.calls.append([example.text for example in examples])
        return [{"text": e.text} if e.document is None else {"text": e.text, "document": e.document} for e in examples]


def texts(*values: str, documents=None) -> Job:
    return Job(
        [Example(text=value, document=None if documents is None else documents[i]) for i, value in enumerate(values)]
    )


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def test_a_client_alone_does_not_wait_but_concurrent_clients_fill_the_batch():
    async def scenario():
        batcher = DynamicBatcher(Echo(), max_batch_size=2, max_wait_ms=60_000)  # a wait would hang the test
        batcher.queue = asyncio.Queue()
        await batcher.queue.put(texts("a"))
        assert [[e.text for e in job.examples] for job in (await asyncio.wait_for(batcher.next_batch(), 5))[0]] == [
            ["a"]
        ]
        batcher.last_requests = 1  # the last batch was one client's: no wait
        await batcher.queue.put(texts("b"))
        assert [[e.text for e in job.examples] for job in (await asyncio.wait_for(batcher.next_batch(), 5))[0]] == [
            ["b"]
        ]
        batcher.last_requests = 2  # clients are sending concurrently: wait for the batch to fill
        await batcher.queue.put(texts("c"))
        pending = asyncio.ensure_future(batcher.next_batch())
        await asyncio.sleep(0.05)
        assert not pending.done()
        await batcher.queue.put(texts("d"))
        batch, stop = await asyncio.wait_for(pending, 5)
        assert [[e.text for e in job.examples] for job in batch] == [["c"], ["d"]] and not stop

    run(scenario())


def test_concurrent_jobs_are_predicted_together_and_each_gets_its_own_results():
    async def scenario():
        echo = Echo()
        batcher = DynamicBatcher(echo, max_batch_size=64, max_wait_ms=50)
        await batcher.start()
        first = await batcher.submit(texts("alone"))
        batcher.arriving = 1  # as the HTTP layer counts a request being read
        jobs = [asyncio.ensure_future(batcher.submit(texts(f"t{i}", f"u{i}"))) for i in range(5)]
        await asyncio.sleep(0.01)
        batcher.arriving = 0
        results = await asyncio.gather(*jobs)
        await batcher.stop()
        assert first == [{"text": "alone"}]
        assert results == [[{"text": f"t{i}"}, {"text": f"u{i}"}] for i in range(5)]
        assert echo.calls[0] == ["alone"] and sorted(map(len, echo.calls[1:])) == [10]
        assert batcher.stats.as_dict()["requests"] == 6 and batcher.last_requests == 5

    run(scenario())


def test_a_document_id_only_groups_the_inputs_of_its_own_request():
    """Two requests naming the same document id: each keeps its own documents (namespaced by job)."""
    echo = Echo()
    results = predict_jobs(echo, [texts("a", "b", documents=["d", None]), texts("c", documents=["d"])])
    assert echo.calls == [["a", "b", "c"]]
    assert results == [[{"text": "a", "document": (0, "d")}, {"text": "b"}], [{"text": "c", "document": (1, "d")}]]


def test_a_stopped_forward_raises_before_the_next_batch_and_closes_the_inner_one():
    closed, stop = [], threading.Event()

    def forward(inputs):
        try:
            for index in range(len(inputs["input_ids"])):
                yield [index], {"logits": index}
        finally:
            closed.append(True)

    forward.parallel_rows = 3
    wrapped = StoppableForward(forward, stop)
    assert wrapped.parallel_rows == 3  # the inner forward's attributes show through
    batches = wrapped({"input_ids": [[1], [2], [3]]})
    assert next(batches) == ([0], {"logits": 0})
    stop.set()
    with pytest.raises(ShuttingDown):
        next(batches)
    assert closed == [True]


def test_abort_answers_every_queued_job_with_shutting_down_and_refuses_new_ones():
    async def scenario():
        batcher = DynamicBatcher(Echo(), max_batch_size=2, max_wait_ms=0)
        batcher.queue = asyncio.Queue()  # no worker: the jobs stay queued
        loop = asyncio.get_running_loop()
        jobs = [texts(f"t{i}") for i in range(3)]
        for job in jobs:
            job.future = loop.create_future()
            await batcher.queue.put(job)
        batcher.drain()
        assert not batcher.running
        assert batcher.abort("over the grace period") == 3
        for job in jobs:
            with pytest.raises(ShuttingDown, match="over the grace period"):
                await job.future
        with pytest.raises(ShuttingDown, match="shutting down"):
            await batcher.submit(texts("late"))
        assert batcher.stopped.is_set()

    run(scenario())
