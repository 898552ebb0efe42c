"""Dynamic micro-batching: concurrent requests share one forward pass.

A collector task takes the first waiting request, then keeps adding requests until the batch
holds `max_batch` images or `max_wait_ms` have passed. It stops waiting early when no other
request is on its way (nothing queued and none being received), so a lone client pays no
batching delay. The forward pass is called from a dedicated worker thread (which, with
`veil serve --inference process`, hands it to the inference process); the event loop keeps
accepting and validating requests meanwhile, so the next batch forms while this one runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .prometheus import Metrics


@dataclass
class _Job:
    images: np.ndarray
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, infer: Callable[[np.ndarray], np.ndarray], max_batch: int = 32,
                 max_wait_ms: float = 2.0, metrics: Metrics | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.infer, self.max_batch, self.max_wait = infer, max_batch, max_wait_ms / 1000
        self.metrics = metrics or Metrics()
        self.arriving = 0  # requests being received/validated, not yet submitted
        self._queue: asyncio.Queue[_Job] | None = None
        self._carry: _Job | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="veil-inference")
        self._task = asyncio.create_task(self._loop(), name="veil-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        pending = [self._carry] if self._carry else []
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for job in pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for uint8 (N, H, W, 3) images, batched with other requests."""
        if self._queue is None:
            raise RuntimeError("the batcher is not running")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(images, future))
        self.metrics.record_queue_depth(self._queue.qsize())
        return await future

    async def _loop(self) -> None:
        while True:
            jobs = await self._collect()
            await self._run([j for j in jobs if not j.future.done()])

    async def _collect(self) -> list[_Job]:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        first, self._carry = self._carry or await self._queue.get(), None
        jobs, n = [first], len(first.images)
        deadline = loop.time() + self.max_wait
        while n < self.max_batch:
            job = await self._next_job(deadline - loop.time())
            if job is None:
                break
            if n + len(job.images) > self.max_batch:
                self._carry = job
                break
            jobs.append(job)
            n += len(job.images)
        self.metrics.record_queue_depth(self._queue.qsize())
        return jobs

    async def _next_job(self, remaining: float) -> _Job | None:
        assert self._queue is not None
        if not self._queue.empty():
            return self._queue.get_nowait()
        if remaining <= 0 or self.arriving <= 0:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), remaining)
        except asyncio.TimeoutError:
            return None

    async def _run(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        batch = jobs[0].images if len(jobs) == 1 else np.concatenate([j.images for j in jobs])
        start = time.perf_counter()
        try:
            probs = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._infer_chunked, batch)
        except Exception as e:  # fail the requests, keep serving
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        self.metrics.record_batch(len(batch), time.perf_counter() - start)
        offset = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(probs[offset:offset + len(job.images)])
            offset += len(job.images)

    def _infer_chunked(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) <= self.max_batch:
            return self.infer(batch)
        parts = [self.infer(batch[i:i + self.max_batch])
                 for i in range(0, len(batch), self.max_batch)]
        return np.concatenate(parts)
