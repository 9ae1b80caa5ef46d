"""Timers Tektra keeps itself ("set a timer for five minutes"), announced when they end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from daemon.core.events import new_request_id


@dataclass
class Timer:
    id: str
    seconds: float
    name: str | None
    ends: float
    """On the monotonic clock."""
    handle: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def left_s(self) -> float:
        return max(0.0, self.ends - time.monotonic())

    @property
    def described(self) -> str:
        """ "2 second timer", "pasta timer"."""
        return f"{self.name} timer" if self.name else f"{duration(self.seconds)} timer"


class Timers:
    """Running timers; `on_done` is called (on the loop) with each that ends."""

    def __init__(self, on_done: Callable[[Timer], None]) -> None:
        self._on_done = on_done
        self._running: dict[str, Timer] = {}

    def start(self, seconds: float, name: str | None = None) -> Timer:
        # The id is the announcement's request id: unique across restarts, like every other.
        timer = Timer(new_request_id("timer"), seconds, name, time.monotonic() + seconds)
        timer.handle = asyncio.get_running_loop().call_later(seconds, self._end, timer)
        self._running[timer.id] = timer
        return timer

    def running(self) -> list[Timer]:
        return sorted(self._running.values(), key=lambda t: t.ends)

    def cancel(self, name: str | None = None) -> Timer | None:
        """The named timer, else the one started last, cancelled; None when there is none."""
        found = [t for t in self._running.values() if name is None or t.name == name]
        if not found:
            return None
        timer = found[-1]
        if timer.handle is not None:
            timer.handle.cancel()
        del self._running[timer.id]
        return timer

    def cancel_all(self) -> None:
        while self.cancel() is not None:
            pass

    def _end(self, timer: Timer) -> None:
        self._running.pop(timer.id, None)
        self._on_done(timer)


def duration(seconds: float) -> str:
    """ "2 second", "1 minute and 30 second" style words for a whole number of seconds, in the
    singular form that goes before "timer"; use `spoken_duration` for a plural sentence."""
    return _parts(seconds, plural=False)


def spoken_duration(seconds: float) -> str:
    """ "2 seconds", "1 minute and 30 seconds"."""
    return _parts(seconds, plural=True)


def _parts(seconds: float, *, plural: bool) -> str:
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    words = []
    for amount, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second")):
        if amount:
            words.append(f"{amount} {unit}{'s' if plural and amount != 1 else ''}")
    if not words:
        return "0 seconds" if plural else "0 second"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
