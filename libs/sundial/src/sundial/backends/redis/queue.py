"""Dramatiq on the Redis backend: the engine that carries queued runs to workers.

The broker is the backend's own Redis server and database, its keys under
``sundial:dramatiq:``. One actor, ``sundial.run``, takes a message naming one run; its
Dramatiq queue is the run's Sundial queue, and a retry waiting out its backoff waits in
Dramatiq's delay queue. Dramatiq acknowledges a message once its handler returned, and
puts back the messages of a worker whose broker heartbeat stopped. Its middleware is
left out on purpose: no retries, no time limit, no age limit — Sundial decides those.

Redis has no transaction spanning the run record and the message: the record is written
``queued`` first, and the leader sends again a message for a run that stays queued
(:meth:`RedisBackend.reconcile_queued`); a second message starts nothing, since only a
queued run starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from concurrent.futures import Future
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from sundial.backends.history import due
from sundial.backends.queue import Handler, RunMessage, RunQueue
from sundial.backends.redis.connection import Target
from sundial.backends.redis.keys import PREFIX
from sundial.constants import DEFAULT_QUEUE
from sundial.models import Run, utcnow

ACTOR_NAME = "sundial.run"
NAMESPACE = PREFIX + "dramatiq"
#: a worker whose broker heartbeat is this old counts as gone; its messages go back
HEARTBEAT_TIMEOUT_MS = 15_000
#: how long a worker thread waits for a message before it looks again
IDLE_TIMEOUT_MS = 1_000


class DramatiqQueue(RunQueue):
    """Enqueueing for the leader and the workers; consumption by a Dramatiq worker."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._broker = self._new_broker()

    def _new_broker(self) -> RedisBroker:
        """A broker on a client of its own: Dramatiq speaks bytes, not decoded text."""
        client: redis.Redis[bytes] = redis.Redis(db=self._target.db, **self._target.connect_args())
        return RedisBroker(  # type: ignore[no-untyped-call]
            client=client,
            namespace=NAMESPACE,
            middleware=[],
            heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        )

    def enqueue(self, runs: Sequence[Run]) -> None:
        """One message per run; a run due later waits in the delay queue until then."""
        now = utcnow()
        for run in runs:
            message: dramatiq.Message[None] = dramatiq.Message(
                queue_name=run.queue or DEFAULT_QUEUE,
                actor_name=ACTOR_NAME,
                args=(),
                kwargs=RunMessage.of(run).as_json(),
                options={},
            )
            wait_ms = int((due(run) - now).total_seconds() * 1000)
            self._broker.enqueue(message, delay=wait_ms if wait_ms > 0 else None)

    async def consume(
        self,
        *,
        queues: Collection[str],
        concurrency: int,
        handle: Handler,
        stop: asyncio.Event,
        grace: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        handling: set[Future[None]] = set()
        broker = self._new_broker()  # a worker's actor is declared on a broker of its own

        def run(**message: Any) -> None:
            # On a Dramatiq thread: the run itself runs on the worker's event loop, and
            # the message is acknowledged when it is done.
            future: Future[None] = asyncio.run_coroutine_threadsafe(
                handle(RunMessage.from_json(message)), loop
            )
            handling.add(future)
            try:
                future.result()
            finally:
                handling.discard(future)

        dramatiq.Actor(
            run,
            broker=broker,
            actor_name=ACTOR_NAME,
            queue_name=DEFAULT_QUEUE,
            priority=0,
            options={},
        )
        for queue in queues:
            broker.declare_queue(queue)
        worker = dramatiq.Worker(
            broker,
            queues=set(queues),
            worker_threads=concurrency,
            worker_timeout=IDLE_TIMEOUT_MS,
        )
        await loop.run_in_executor(None, worker.start)
        await stop.wait()
        stopping = loop.run_in_executor(None, lambda: worker.stop(timeout=int(grace * 1000)))
        if handling:
            await asyncio.wait([asyncio.wrap_future(f) for f in list(handling)], timeout=grace)
        for future in list(handling):
            future.cancel()  # past the grace: the run is recorded interrupted
        await stopping
        broker.close()

    def close(self) -> None:
        self._broker.close()
