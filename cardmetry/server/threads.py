"""A thread pool of its own for long work (storing uploads, refining a dataset, measuring cards), so it never
holds the threads the live pages need.

Storing an upload (writing, unzipping, hashing and validating gigabytes) takes minutes in a thread, and measuring
a card's two sides takes a core each. The run pages' WebSockets read their event logs with `asyncio.to_thread`
every fraction of a second, in asyncio's default pool; were long jobs run there too, a few of them could take
every thread and freeze every live page. They run here instead, `LONG_WORK_THREADS` at a time (more wait their
turn: the disk or the cores are the bottleneck anyway).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

LONG_WORK_THREADS = 2
_long_work = ThreadPoolExecutor(max_workers=LONG_WORK_THREADS, thread_name_prefix="long-work")

P = ParamSpec("P")
T = TypeVar("T")


async def run_long(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in the long-work pool, awaited; as `asyncio.to_thread`, but never in the default pool."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()  # as to_thread does: the caller's context variables go along
    return await loop.run_in_executor(_long_work, functools.partial(context.run, fn, *args, **kwargs))
