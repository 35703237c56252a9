"""Group commit: requests that are ready at the same moment share one transaction.

An MLLP sender keeps one message in flight per connection and waits for its ACK, which may
only go out after the message is committed. With N connections open, committing each
message on its own costs N transactions (N round trips for BEGIN/COMMIT and N log flushes)
per round. The :class:`GroupCommitter` hands whatever has queued up to one ``commit`` call
and answers each caller from that call's result, so the same N messages cost one
transaction; while one batch commits, the next gathers. Nobody waits on purpose for company:
a lone message is committed at once (after one turn of the event loop).

Generic over what is committed; :class:`~openvisit.feed.intake.SiuFeed` uses it with
its ``commit_batch``, which promises one reply per item, in order, and never raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Reply = TypeVar("Reply")


class GroupCommitter(Generic[Item, Reply]):
    """Batches concurrent :meth:`submit` calls into calls of ``commit`` (one at a time)."""

    def __init__(
        self,
        commit: Callable[[Sequence[Item]], Awaitable[list[Reply]]],
        *,
        max_batch: int = 100,
    ) -> None:
        self.commit = commit
        self.max_batch = max_batch
        self._queue: list[tuple[Item, asyncio.Future[Reply]]] = []
        self._task: asyncio.Task[None] | None = None
        #: Sizes of the batches committed so far (for tests, benchmarks and metrics).
        self.batches = 0
        self.items = 0

    async def submit(self, item: Item) -> Reply:
        """Queue ``item`` and return its reply once the batch holding it has committed."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        # Shielded: a caller that goes away mid-commit must not cancel everyone's batch.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        # One turn of the event loop lets connections whose bytes arrived together queue too.
        await asyncio.sleep(0)
        while self._queue:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            try:
                replies = await self.commit([item for item, _ in batch])
                if len(replies) != len(batch):
                    raise RuntimeError(f"{len(replies)} replies for {len(batch)} items")
            except BaseException as exc:
                failure = exc if isinstance(exc, Exception) else asyncio.CancelledError()
                if not isinstance(exc, Exception):  # cancelled: nobody will commit the rest
                    batch += self._queue
                    self._queue.clear()
                for _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
                if not isinstance(exc, Exception):
                    raise
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, future), reply in zip(batch, replies, strict=True):
                if not future.done():
                    future.set_result(reply)
