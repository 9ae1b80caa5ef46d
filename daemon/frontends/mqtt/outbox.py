"""The MQTT outbox: messages waiting for the broker, bounded, oldest dropped first.

Pure bookkeeping, no I/O: the MQTT link peeks the head, publishes it, and acknowledges it only once
the broker took it, so a message in flight when the link drops is sent again after reconnect.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Outgoing:
    """One message for the broker."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    keep: bool = True
    """Worth delivering late: answers, transcripts and errors are; live chunks and state are not
    (a reconnect republishes the current state)."""


class Outbox:
    """A bounded FIFO of Outgoing messages; `dropped` counts what did not fit."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.dropped = 0
        self._connected = False
        self._items: deque[Outgoing] = deque()
        self._changed = asyncio.Event()

    @property
    def connected(self) -> bool:
        """While False, messages not worth keeping are not queued at all."""
        return self._connected

    @connected.setter
    def connected(self, connected: bool) -> None:
        # Live pieces queued before the link dropped are stale by the time it returns (the
        # reconnect republishes the state), and must not take an answer's place meanwhile.
        if self._connected and not connected:
            self._items = deque(m for m in self._items if m.keep)
        self._connected = connected

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: Outgoing) -> None:
        if not self.connected and not message.keep:
            return
        if len(self._items) >= self.maxsize:
            self._evict()
            self.dropped += 1
        self._items.append(message)
        self._changed.set()

    def _evict(self) -> None:
        """Make room: the oldest live message goes first, so chunks never push out an answer;
        only a box full of answers loses its oldest answer."""
        for i, queued in enumerate(self._items):
            if not queued.keep:
                del self._items[i]
                return
        self._items.popleft()

    async def head(self) -> Outgoing:
        """The oldest message, once there is one; it stays queued until `ack`."""
        while not self._items:
            self._changed.clear()
            await self._changed.wait()
        return self._items[0]

    def ack(self, message: Outgoing) -> None:
        """The broker has `message`; forget it (unless it was dropped meanwhile)."""
        if self._items and self._items[0] is message:
            self._items.popleft()
