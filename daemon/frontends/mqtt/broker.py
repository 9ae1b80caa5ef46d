"""The `embedded` broker: amqtt in-process, so a first run needs nothing installed.

amqtt as shipped is not a broker users could keep; daemon.amqtt_fixes makes it one. Logins are
required unless `[mqtt] allow_anonymous` says otherwise, and the broker listens on `[mqtt] bind`.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from amqtt.plugins.base import BaseAuthPlugin  # type: ignore[import-untyped]  # ships no types

from daemon.core.errors import TektraError
from daemon.frontends.mqtt.amqtt_fixes import ConformingBroker

log = logging.getLogger("tektra.mqtt")


class EmbeddedBrokerError(TektraError):
    code = "embedded_broker"


class LoginAuth(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no types
    """Accepts the logins in its config (compared in constant time), anonymous clients only when
    allowed. amqtt's AnonymousAuthPlugin, when it allows anonymous clients, marks every session
    anonymous, and amqtt then queues nothing for persistent sessions; this plugin marks none."""

    @dataclass
    class Config:
        logins: dict[str, str] = field(default_factory=dict)
        allow_anonymous: bool = False

    async def authenticate(self, *, session: Any) -> bool:
        username, password = session.username, session.password
        if username is None:
            return bool(self.config.allow_anonymous)
        expected = self.config.logins.get(username)
        if expected is None or password is None:
            return False
        given = password.encode() if isinstance(password, str) else bytes(password)
        return hmac.compare_digest(given, expected.encode())


class EmbeddedBroker:
    """An MQTT 3.1.1 broker on `bind`:`port` that accepts `logins` (and anonymous clients only
    when `allow_anonymous`)."""

    def __init__(
        self, port: int, *, bind: str, logins: dict[str, str], allow_anonymous: bool
    ) -> None:
        self.port = port
        self.bind = bind
        self.allow_anonymous = allow_anonymous
        host = f"[{bind}]" if ":" in bind else bind
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            # Only our login check: the $SYS plugin warns about psutil on every start.
            "plugins": {
                f"{__name__}.LoginAuth": {"logins": logins, "allow_anonymous": allow_anonymous}
            },
        }
        # amqtt (and its state machine library) log every connection at INFO; the daemon's own
        # log says what matters.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._broker = ConformingBroker(config)

    @property
    def address(self) -> str:
        return f"[{self.bind}]:{self.port}" if ":" in self.bind else f"{self.bind}:{self.port}"

    async def start(self) -> None:
        self._check_port_free()
        try:
            await self._broker.start()
        except Exception as exc:  # amqtt wraps every start failure in its own exception types
            raise EmbeddedBrokerError(
                f"cannot start the embedded MQTT broker on {self.address}: {exc}"
            ) from exc
        log.info(
            "embedded MQTT broker on %s (%s)",
            self.address,
            "anonymous clients allowed" if self.allow_anonymous else "login required",
        )

    def _check_port_free(self) -> None:
        """Refuse a port another broker holds, in our words; without this the daemon's link would
        talk to that broker while saying it uses its own."""
        try:
            version = ipaddress.ip_address(self.bind).version
        except ValueError:
            raise EmbeddedBrokerError(
                f"[mqtt] bind: {self.bind!r} is not an IP address (127.0.0.1, 0.0.0.0, ::1, …)"
            ) from None
        family = socket.AF_INET6 if version == 6 else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
            try:
                probe.bind((self.bind, self.port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise EmbeddedBrokerError(
                        f"port {self.port} on {self.bind} is already in use (another MQTT "
                        "broker?), so the embedded broker cannot start: set [mqtt] embedded_port "
                        'to a free port, or [mqtt] broker = "mqtt://HOST:PORT" to use that broker'
                    ) from None
                raise EmbeddedBrokerError(
                    f"cannot listen on {self.address} for the embedded MQTT broker: {exc.strerror}"
                ) from None

    async def stop(self) -> None:
        await self._broker.shutdown()
