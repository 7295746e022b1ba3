"""Batching of concurrent requests: one forward pass for the inputs that arrive close together."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable

import torch


class Busy(Exception):
    """The queue of inputs waiting for the model is full."""


class Batcher:
    """Inputs wait in a queue; a batch opens with the first one and takes what is already waiting,
    and what else arrives within `max_wait` seconds, up to `max_batch`; then it runs on a single
    worker thread, so the event loop keeps accepting requests meanwhile, and inputs that arrive
    meanwhile make up the next batch. A batch waits only while other requests are on their way
    (announced, still being read or decoded): a lone request does not wait at all.

    A batch is one forward pass of `collate(inputs)`, unless `passes` cuts it into several (texts:
    groups of similar length, so that little of a pass is padding)."""

    def __init__(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        max_batch: int,
        max_wait: float,
        max_queue: int | None = None,
        collate: Callable[[list], object] = torch.stack,
        passes: Callable[[list], list[list[int]]] | None = None,
    ):
        if max_batch < 1 or max_wait < 0:
            raise ValueError(f"max_batch must be at least 1 and max_wait at least 0, got {max_batch}, {max_wait}")
        self.forward = forward
        self.collate = collate
        self.passes = passes or (lambda inputs: [list(range(len(inputs)))])
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue or 64 * max_batch
        # "batches" counts forward passes
        self.stats = {"requests": 0, "batches": 0, "largest_batch": 0, "requests_in_shared_batches": 0}
        self.arriving = 0  # requests announced whose input is not in the queue yet
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the batching loop on the running event loop (the server's startup)."""
        self.queue = asyncio.Queue(self.max_queue)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="headstart-model")
        self.task = asyncio.get_running_loop().create_task(self.loop())

    async def stop(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        self.executor.shutdown(wait=True, cancel_futures=True)

    @contextmanager
    def announce(self):
        """Wrap the reading and decoding of a request's input: batches wait for it meanwhile."""
        self.arriving += 1
        try:
            yield
        finally:
            self.arriving -= 1

    async def submit(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output row for one input. Raises Busy when the queue is full."""
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((x, future))
        except asyncio.QueueFull:
            raise Busy(f"{self.max_queue} inputs are already waiting for the model") from None
        return await future

    async def loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(items) < self.max_batch:
                if not self.queue.empty():
                    items.append(self.queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0 or not self.arriving:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            items = [(x, f) for x, f in items if not f.cancelled()]  # clients that went away
            if items:
                await self.run_batch(loop, items)

    async def run_batch(self, loop, items) -> None:
        inputs = [x for x, _ in items]
        try:
            groups = await loop.run_in_executor(self.executor, self.run_passes, inputs)
        except Exception as e:  # every waiting request hears of it; the loop goes on
            for _, future in items:
                if not future.done():
                    future.set_exception(e)
            return
        for group, outputs in groups:
            for i, row in zip(group, outputs):
                if not items[i][1].done():
                    items[i][1].set_result(row)
            n = len(group)
            self.stats["requests"] += n
            self.stats["batches"] += 1
            self.stats["largest_batch"] = max(self.stats["largest_batch"], n)
            if n > 1:
                self.stats["requests_in_shared_batches"] += n

    def run_passes(self, inputs: list) -> list[tuple[list[int], torch.Tensor]]:
        """(on the worker thread) Each pass's input indices and its outputs."""
        return [(group, self.forward(self.collate([inputs[i] for i in group]))) for group in self.passes(inputs)]
