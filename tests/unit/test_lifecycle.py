"""Stop signals under a flood of cross-thread wakeups.

APScheduler's thread hands every due job to the event loop with one
``call_soon_threadsafe`` each; with a thousand jobs due while the loop is busy, the loop's
self-pipe fills. A SIGTERM arriving then must still stop the process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from sundial_scheduler.lifecycle import StopSignals

#: far more wakeups than the self-pipe's buffer holds
FLOOD = 200_000


async def flood_then_sigterm() -> None:
    """Fill the loop's self-pipe from another thread while the loop is busy, then send
    one SIGTERM, and let the loop work through everything the flood queued."""
    loop = asyncio.get_running_loop()
    drained = asyncio.Event()

    def flood() -> None:
        for _ in range(FLOOD):
            loop.call_soon_threadsafe(lambda: None)
        loop.call_soon_threadsafe(drained.set)

    thread = threading.Thread(target=flood)
    thread.start()
    thread.join()  # the loop is busy: nobody reads the pipe while it fills
    os.kill(os.getpid(), signal.SIGTERM)
    await drained.wait()


async def test_one_sigterm_stops_although_the_self_pipe_is_full() -> None:
    stop = asyncio.Event()
    signals = StopSignals(stop)
    signals.install()
    try:
        await flood_then_sigterm()
        await asyncio.wait_for(stop.wait(), timeout=10)
    finally:
        signals.restore()
    assert stop.is_set()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_the_flood_loses_a_signal_handled_by_asyncio() -> None:
    """The case above is real: asyncio's own handler never hears this SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await flood_then_sigterm()
        for _ in range(10):  # whatever the pipe still held has been read by now
            await asyncio.sleep(0)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    assert not stop.is_set()


async def test_restore_gives_the_signals_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    signals = StopSignals(asyncio.Event())
    signals.install()
    assert signal.getsignal(signal.SIGTERM) is not before
    signals.restore()
    assert signal.getsignal(signal.SIGTERM) is before
