"""Streaming from a synchronous engine running on its own thread, without blocking the event loop.

In-process engines (llama.cpp, mistral.rs) expose blocking iterators. The work runs on a dedicated
thread and hands each chunk to the loop with `call_soon_threadsafe`; closing or cancelling the
async iterator sets a flag the worker checks between chunks, so a client that goes away stops the
engine within one token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from daemon.core.errors import GenerationError

Emit = Callable[[str], None]
Work = Callable[[Emit, threading.Event], None]
"""Runs on the worker thread: calls `emit(chunk)` per chunk, returns when done or when the event
is set; raising reports a GenerationError to the consumer."""


@dataclass(frozen=True)
class _End:
    error: str | None = None


async def stream_from_thread(backend: str, name: str, work: Work) -> AsyncGenerator[str, None]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | _End] = asyncio.Queue()
    cancel = threading.Event()

    def put(item: str | _End) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            cancel.set()

    def run() -> None:
        try:
            work(put, cancel)
        except Exception as exc:  # any engine failure must reach the consumer, not die here
            put(_End(error=f"{type(exc).__name__}: {exc}"))
        else:
            put(_End())

    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise GenerationError(backend, item.error)
                return
            yield item
    finally:
        cancel.set()
