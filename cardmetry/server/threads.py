"""Threads of their own for long work (storing uploads, refining a dataset, loading models, measuring cards) and
for the live pages' event-log polls, so neither can starve the other or asyncio's default pool.

Storing an upload (writing, unzipping, hashing and validating gigabytes) takes minutes in a thread, and measuring
a card's two sides takes a core each. The run pages' WebSockets read their event logs every fraction of a second;
were they to share a pool with long jobs (or with anything else put in asyncio's default pool, such as thumbnails
being drawn), a few busy threads would freeze every live page. So:

- `run_long` runs at most `LONG_WORK_THREADS` jobs at a time (more wait their turn: the disk or the cores are the
  bottleneck anyway), each in a daemon thread of its own: a server stopping (Ctrl-C) does not wait for a refine
  or an upload to end; what such a job leaves half-written is left as a failed job leaves it.
- `run_poll` runs the WebSockets' event-log reads in `POLL_THREADS` threads that nothing else uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

LONG_WORK_THREADS = 2
POLL_THREADS = 4
_poll_pool = ThreadPoolExecutor(max_workers=POLL_THREADS, thread_name_prefix="event-poll")
# One bound per event loop: an asyncio.Semaphore belongs to the loop it first waited in.
_long_work_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
_thread_numbers = itertools.count(1)

P = ParamSpec("P")
T = TypeVar("T")


async def run_long(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in a daemon thread once one of the LONG_WORK_THREADS slots is free, awaited; as
    `asyncio.to_thread`, but never in the default pool. A caller that is cancelled stops waiting, but the slot
    stays taken until the thread's work ends: the bound counts threads running, not callers waiting."""
    loop = asyncio.get_running_loop()
    slots = _long_work_slots.setdefault(loop, asyncio.Semaphore(LONG_WORK_THREADS))
    await slots.acquire()
    done: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()  # as to_thread does: the caller's context variables go along
    work = functools.partial(context.run, fn, *args, **kwargs)
    try:
        thread = threading.Thread(target=_work_in_thread, args=(loop, slots, done, work), daemon=True,
                                  name=f"long-work-{next(_thread_numbers)}")
        thread.start()
    except BaseException:  # no thread to give the slot back: give it back here
        slots.release()
        raise
    return await done


def _work_in_thread(loop: asyncio.AbstractEventLoop, slots: asyncio.Semaphore, done: asyncio.Future[Any],
                    work: Callable[[], Any]) -> None:
    """Run `work` and hand its result (or its error) back to the loop, which also frees the slot."""
    try:
        outcome: tuple[Any, BaseException | None] = (work(), None)
    except BaseException as error:  # everything goes back to the caller; a thread must not die silently
        outcome = (None, error)
    with contextlib.suppress(RuntimeError):  # the loop is closed (the server stopped): no one is left to tell
        loop.call_soon_threadsafe(_settle, slots, done, *outcome)


def _settle(slots: asyncio.Semaphore, done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    slots.release()
    if done.done():  # the caller was cancelled and no longer waits
        return
    if isinstance(error, StopIteration):  # a future refuses it: it would end the awaiting coroutine instead
        error = RuntimeError(f"the long job raised StopIteration: {error!r}")
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


async def run_poll(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in the event-log poll pool, awaited: for short reads the live pages wait on."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    return await loop.run_in_executor(_poll_pool, functools.partial(context.run, fn, *args, **kwargs))
