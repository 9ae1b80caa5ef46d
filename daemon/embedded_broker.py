"""The `embedded` broker: amqtt in-process on 127.0.0.1, so a first run needs nothing installed."""

from __future__ import annotations

import logging

from amqtt.broker import Broker  # type: ignore[import-untyped]  # amqtt ships no types

from daemon.errors import TektraError

log = logging.getLogger("tektra.mqtt")


class EmbeddedBroker:
    """An MQTT 3.1.1 broker on 127.0.0.1:`port`, anonymous (it listens on loopback only)."""

    def __init__(self, port: int) -> None:
        self.port = port
        # Only the anonymous-auth plugin: the $SYS plugin warns about psutil on every start.
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        # amqtt (and its state machine library) log every connection at INFO; the daemon's own
        # log says what matters.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._broker = Broker(config)

    async def start(self) -> None:
        try:
            await self._broker.start()
        except Exception as exc:  # amqtt wraps the bind error in its own exception types
            raise TektraError(
                f"cannot start the embedded MQTT broker on 127.0.0.1:{self.port}: {exc}; "
                "set [mqtt] embedded_port to a free port, or [mqtt] broker to another broker"
            ) from exc
        log.info("embedded MQTT broker on 127.0.0.1:%d", self.port)

    async def stop(self) -> None:
        await self._broker.shutdown()
