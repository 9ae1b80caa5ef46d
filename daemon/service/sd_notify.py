"""The systemd notify protocol: datagrams of `KEY=value` lines to `$NOTIFY_SOCKET`.

A few lines instead of a dependency. Outside systemd (no `$NOTIFY_SOCKET`) every call is a no-op,
so the daemon runs the same way in a terminal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("tektra.sd_notify")


class Notifier:
    """Sends READY=1, STATUS=…, WATCHDOG=1 and STOPPING=1 to the service manager."""

    def __init__(self, address: str | None) -> None:
        self._address = address
        if address is not None and address.startswith("@"):
            # A leading '@' is Linux's abstract namespace, written as a NUL byte on the wire.
            self._address = "\0" + address[1:]

    @classmethod
    def from_env(cls) -> Notifier:
        return cls(os.environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send one message; False (logged) when it could not be delivered."""
        if self._address is None:
            return False
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:
            log.warning("cannot notify the service manager: %s", exc)
            return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def reloading(self) -> None:
        self.send("RELOADING=1", "STATUS=reloading models.toml")


def watchdog_interval_s() -> float | None:
    """Half of `$WATCHDOG_USEC` (as systemd advises), or None when no watchdog is asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2_000_000, 0.01)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None


async def feed_watchdog(notifier: Notifier, interval_s: float) -> None:
    """WATCHDOG=1 from the event loop itself: a stuck loop stops feeding and gets restarted."""
    while True:
        notifier.send("WATCHDOG=1")
        await asyncio.sleep(interval_s)
