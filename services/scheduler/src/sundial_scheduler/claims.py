"""Backend calls for the runs of one wakeup, batched: one call for many runs.

When many jobs fire at once, each run's claim (or dispatch to the workers) would
otherwise cost a transaction (or a Redis round trip) and a hop to the I/O pool. A
:class:`Batcher` collects what runs ask for on the event loop within a few milliseconds
and sends it as one backend call, then wakes each run with its own answer.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Generic, TypeVar

from sundial.backends import Backend, BackendError

#: how long the first request of a batch waits for others to join it; short next to the
#: round trip it saves, and next to the lag a run may have before it counts as late
WINDOW_SECONDS = 0.002
#: requests per backend call; a larger burst goes out as several calls
MAX_BATCH = 500
#: backend calls out at once; requests arriving meanwhile wait and go out together when
#: one returns, so a slow backend gets fewer, larger calls instead of a queue of small ones
MAX_IN_FLIGHT = 2

Claim = tuple[str, datetime]
_I = TypeVar("_I")
_R = TypeVar("_R")


class Batcher(Generic[_I, _R]):
    """Sends requests ``_I`` in batches through ``call``, which answers each with ``_R``.

    ``call`` is blocking (it runs on the I/O pool) and returns one answer per request, in
    order. Use from one event loop. A failed call fails every request in it.
    """

    def __init__(
        self,
        call: Callable[[list[_I]], Sequence[_R]],
        *,
        operation: str,
        io_pool: ThreadPoolExecutor,
        on_error: Callable[[str], None],
        window: float = WINDOW_SECONDS,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        if window < 0 or max_batch < 1 or max_in_flight < 1:
            raise ValueError(
                f"a batcher needs window >= 0, max_batch >= 1 and max_in_flight >= 1; "
                f"got {window}, {max_batch} and {max_in_flight}"
            )
        self._call = call
        self._operation = operation
        self._io_pool = io_pool
        self._on_error = on_error
        self._window = window
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._waiting: list[tuple[_I, asyncio.Future[_R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight = 0

    async def submit(self, request: _I) -> _R:
        """The answer to ``request``, once its batch's call returns."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[_R] = loop.create_future()
        self._waiting.append((request, answer))
        if len(self._waiting) >= self._max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._window, self._flush)
        return await answer

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting and self._in_flight < self._max_in_flight:
            batch = [item for item in self._waiting[: self._max_batch] if not item[1].done()]
            del self._waiting[: self._max_batch]
            if batch:
                self._send(batch)

    def _send(self, batch: list[tuple[_I, asyncio.Future[_R]]]) -> None:
        requests = [request for request, _ in batch]
        loop = asyncio.get_running_loop()
        try:
            call = loop.run_in_executor(self._io_pool, self._call, requests)
        except RuntimeError as error:  # the I/O pool is shut down: the process is stopping
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(error)
            return
        self._in_flight += 1
        call.add_done_callback(functools.partial(self._answer, batch))

    def _answer(
        self, batch: list[tuple[_I, asyncio.Future[_R]]], call: asyncio.Future[Sequence[_R]]
    ) -> None:
        self._in_flight -= 1
        if call.cancelled():
            for _, answer in batch:
                answer.cancel()
        elif (error := call.exception()) is not None:
            if isinstance(error, BackendError):
                self._on_error(self._operation)
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(error)
        else:
            for (_, answer), result in zip(batch, call.result(), strict=True):
                if not answer.done():  # else its run was cancelled while it waited
                    answer.set_result(result)
        self._flush()


class ClaimBatcher:
    """Claims ``(job_id, scheduled_time)`` pairs on behalf of runs, many per backend call.

    A failed call fails every claim in it: those runs must not run, since nobody can
    tell whether another instance holds their fire times.
    """

    def __init__(
        self,
        *,
        backend: Backend,
        instance_id: str,
        io_pool: ThreadPoolExecutor,
        on_error: Callable[[str], None],
        window: float = WINDOW_SECONDS,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._backend = backend
        self._instance_id = instance_id
        self._batcher: Batcher[Claim, bool] = Batcher(
            self._claim_all,
            operation="claim_run",
            io_pool=io_pool,
            on_error=on_error,
            window=window,
            max_batch=max_batch,
            max_in_flight=max_in_flight,
        )

    async def claim(self, job_id: str, scheduled_time: datetime) -> bool:
        """True if this instance won the fire time; :class:`BackendError` if unknown."""
        return await self._batcher.submit((job_id, scheduled_time))

    def _claim_all(self, claims: list[Claim]) -> list[bool]:
        won = self._backend.claim_runs(claims, self._instance_id)
        answers = []
        for claim in claims:
            # A fire time asked for twice in one batch is won by the first asker only.
            answers.append(claim in won)
            won.discard(claim)
        return answers
