"""Module-level job functions for tests (APScheduler stores functions by import path)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

calls: Counter[str] = Counter()
_lock = threading.Lock()


def _count(name: str) -> None:
    with _lock:
        calls[name] += 1


async def succeed() -> None:
    _count("succeed")
    await asyncio.sleep(0.01)


async def fail() -> None:
    _count("fail")
    raise RuntimeError("the partner API answered 503")


async def hang() -> None:
    _count("hang")
    await asyncio.sleep(30)


def sync_sleep(seconds: float = 0.05) -> None:
    _count("sync_sleep")
    time.sleep(seconds)


async def slow(seconds: float = 2.5) -> None:
    _count("slow")
    await asyncio.sleep(seconds)


async def greet(name: str) -> None:
    _count(f"greet:{name}")


async def block_loop(seconds: float = 1.5) -> None:
    """An async job with a blocking call in it: every other job on the loop stalls."""
    _count("block_loop")
    time.sleep(seconds)  # noqa: ASYNC251 - the mistake this job stands for
