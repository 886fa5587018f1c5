"""Running blocking model work off the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


async def iterate_in_thread(make: Callable[[], Iterator[T]], cancel: threading.Event) -> AsyncGenerator[T, None]:
    """Run a blocking iterator in a worker thread and yield its items on the loop.

    If the consumer stops early (or is cancelled), ``cancel`` is set so the producer can
    stop at its next item instead of running to the end; closing the iterator waits until the
    producer has stopped, so a model slot is never handed on while its thread still runs.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def produce() -> None:
        try:
            for item in make():
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if cancel.is_set():
                    break
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)
        except BaseException as e:  # handed to the consumer
            loop.call_soon_threadsafe(queue.put_nowait, e)

    worker = loop.run_in_executor(None, produce)
    try:
        while (item := await queue.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
        await worker
    finally:
        cancel.set()
        cancelled = False
        while not worker.done():
            try:
                await asyncio.shield(worker)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
