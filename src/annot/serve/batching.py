"""Batching concurrent requests through one worker: the encoder sees one batch for many uploads.

A request puts its job on a queue and awaits its future. The worker takes the first job waiting, gathers the others
that arrive within ``linger`` seconds (up to ``max_batch``), runs them together with jobs of the same key (the same
settings) in one call, and resolves each job's future with its own result, or with the exception that call raised.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Job(Generic[Item]):
    key: Hashable
    item: Item
    future: Future[Any] = field(default_factory=Future)


class Batcher(Generic[Item, Result]):
    """Run ``run(key, items)`` on batches of items submitted from many threads or coroutines."""

    def __init__(self, run: Callable[[Hashable, Sequence[Item]], Sequence[Result]], *, max_batch: int = 16,
                 linger: float = 0.004) -> None:
        self.run, self.max_batch, self.linger = run, max_batch, linger
        self._queue: queue.Queue[_Job[Item] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="annot-batcher", daemon=True)
        self._thread.start()
        self.batches = 0  # how many calls of run, and how many items they held (for /v1/health)
        self.items = 0

    def submit(self, key: Hashable, item: Item) -> Future[Result]:
        job: _Job[Item] = _Job(key, item)
        self._queue.put(job)
        return job.future

    async def __call__(self, key: Hashable, item: Item) -> Result:
        return await asyncio.wrap_future(self.submit(key, item))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            deadline = time.monotonic() + self.linger
            while len(jobs) < self.max_batch:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # stop after this batch
                    break
                jobs.append(job)
            by_key: dict[Hashable, list[_Job[Item]]] = {}
            for job in jobs:
                by_key.setdefault(job.key, []).append(job)
            for key, group in by_key.items():
                self._run(key, group)

    def _run(self, key: Hashable, group: list[_Job[Item]]) -> None:
        try:
            results = self.run(key, [job.item for job in group])
        except BaseException as exc:  # noqa: BLE001 - every waiting request gets the error, the worker lives on
            for job in group:
                job.future.set_exception(exc)
            return
        self.batches += 1
        self.items += len(group)
        for job, result in zip(group, results, strict=True):
            job.future.set_result(result)


__all__ = ["Batcher"]
