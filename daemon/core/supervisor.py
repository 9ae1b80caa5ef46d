"""Named, supervised tasks: a long-lived task that fails is logged, reported and restarted.

Every long-lived piece of the daemon (MQTT link, socket server, voice pipeline, watchdog) runs under
one Supervisor, so nothing dies silently and shutdown cancels everything in one place, bounded by a
timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from daemon.core.errors import TektraError
from daemon.core.events import ErrorRaised, EventBus

log = logging.getLogger("tektra.supervisor")

TaskFactory = Callable[[], Coroutine[Any, Any, None]]

RECANCEL_S = 1.0


def backoff_delays(
    first_s: float, max_s: float, rng: random.Random | None = None
) -> Iterator[float]:
    """Exponential delays with full jitter (uniform in [d/2, d]), capped at `max_s`.

    Jitter keeps many daemons that lost the same broker from all reconnecting at once.
    """
    rng = rng or random.Random()
    delay = first_s
    while True:
        yield rng.uniform(delay / 2, delay)
        delay = min(delay * 2, max_s)


@dataclass
class RestartBackoff:
    """How long to wait before restarting a task that failed: doubling from `first_s` up to
    `max_s`, jittered, and back to `first_s` once the task had run `healthy_s` before failing.

    Without the reset, a link that fails once a day after weeks of good service would wait as
    long as one that fails at every start.
    """

    first_s: float = 0.5
    max_s: float = 30.0
    healthy_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    """Failures in a row, each after less than `healthy_s` of running."""

    def delay(self, ran_for_s: float) -> float:
        """The wait after a failure that came `ran_for_s` after the task (re)started."""
        if ran_for_s >= self.healthy_s:
            self.failures = 0
        # The exponent stops growing at the cap, so the delay stays bounded however long it fails.
        cap = self.first_s
        for _ in range(self.failures):
            if cap >= self.max_s:
                break
            cap *= 2
        cap = min(cap, self.max_s)
        self.failures += 1
        return self.rng.uniform(cap / 2, cap)


class Supervisor:
    """Runs tasks by name and restarts the ones that fail, with backoff."""

    def __init__(
        self,
        bus: EventBus,
        *,
        first_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        healthy_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._bus = bus
        self._first = first_delay_s
        self._max = max_delay_s
        self._healthy = healthy_s
        self._clock = clock
        self._sleep = sleep
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: dict[str, int] = {}

    def spawn(self, name: str, factory: TaskFactory) -> None:
        """Run `factory()` as task `name`; run it again whenever it raises."""
        self.restarts.setdefault(name, 0)
        self.tasks[name] = asyncio.create_task(self._keep(name, factory), name=name)

    async def _keep(self, name: str, factory: TaskFactory) -> None:
        backoff = RestartBackoff(self._first, self._max, self._healthy)
        while True:
            started = self._clock()
            try:
                await factory()
                log.info("task %s finished", name)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of a task is reported, then the task restarts
                code = exc.code if isinstance(exc, TektraError) else "internal"
                log.exception("task %s failed; restarting", name)
                self._bus.publish(ErrorRaised(None, code, f"{name}: {type(exc).__name__}: {exc}"))
                self.restarts[name] += 1
                await self._sleep(backoff.delay(self._clock() - started))

    async def stop(self, name: str, timeout_s: float = 2.0) -> None:
        """Cancel one task and wait (bounded) for it to finish its cleanup."""
        task = self.tasks.pop(name, None)
        if task is not None:
            await _cancel([task], timeout_s)

    async def finish(self, name: str, timeout_s: float) -> None:
        """Let a task that was asked to end do so on its own; cancel it after `timeout_s`."""
        task = self.tasks.pop(name, None)
        if task is None:
            return
        _, pending = await asyncio.wait([task], timeout=timeout_s)
        if pending:
            log.warning("task %s did not end within %.1f s; cancelling it", name, timeout_s)
            await _cancel([task], 1.0)

    async def stop_all(self, timeout_s: float) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        await _cancel(tasks, timeout_s)


async def _cancel(tasks: list[asyncio.Task[None]], timeout_s: float) -> None:
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        log.warning("task %s did not stop within %.1f s", task.get_name(), timeout_s)


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel `tasks` and wait until every one has ended; their errors are not news.

    A task still running a second later is cancelled again: before Python 3.12,
    `asyncio.wait_for` (aiomqtt waits for every acknowledgement with it) returns normally when
    its result and the cancel arrive together, so the cancel is lost and the task runs on; a
    plain cancel-then-gather would wait for it forever.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved, so that asyncio does not log it as lost


async def run_together(*coros: Coroutine[Any, Any, None]) -> None:
    """Run coroutines side by side until the first one ends; then cancel the others.

    The first one's exception (if any) is raised. Python 3.10 has no TaskGroup, hence this.
    """
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(*tasks)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
