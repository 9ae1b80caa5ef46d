"""The one reconnect loop of the satellites' MQTT clients (the hub's and each satellite's).

It reconnects the way the daemon's link does (`daemon.frontends.mqtt.link`): the broker and its
credentials read from `[mqtt]` by `daemon.core.broker`, jittered exponential backoff up to
`[mqtt] reconnect_max_s`, started over after a session that lasted. A lost broker is logged in
words and retried, never the end of the process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import aiomqtt

from daemon.core.broker import broker_address, password, tls_context
from daemon.core.config.schema import MqttSettings
from daemon.core.config.urls import redact
from daemon.core.errors import TektraError
from daemon.core.supervisor import backoff_delays

log = logging.getLogger("tektra.satellites")

HEALTHY_SESSION_S = 10.0
"""A session at least this long counts as healthy: the backoff starts over."""


def new_client(
    settings: MqttSettings,
    client_id: str,
    *,
    login: tuple[str, str] | None = None,
    will: aiomqtt.Will | None = None,
) -> aiomqtt.Client:
    """A client of the configured broker, with `[mqtt]`'s credentials unless `login` says."""
    address = broker_address(settings)
    username, secret = login or (settings.username, password(settings))
    return aiomqtt.Client(
        address.host,
        address.port,
        username=username,
        password=secret,
        identifier=client_id,
        will=will,
        keepalive=settings.keepalive_s,
        tls_context=tls_context(settings) if address.tls else None,
        timeout=10,
    )


async def stay_connected(
    settings: MqttSettings,
    make_client: Callable[[], aiomqtt.Client],
    session: Callable[[aiomqtt.Client], Awaitable[None]],
    *,
    who: str,
    on_link: Callable[[bool], None] = lambda up: None,
) -> None:
    """Run `session` on a connected client until cancelled, reconnecting whenever it is lost."""
    delays = backoff_delays(0.2, settings.reconnect_max_s)
    was_up = False
    while True:
        began: float | None = None
        try:
            async with make_client() as client:
                began = time.monotonic()
                was_up = True
                on_link(True)
                log.info("%s: connected to the MQTT broker %s", who, redact(settings.broker))
                await session(client)
        except (aiomqtt.MqttError, TektraError) as exc:
            reason = exc.message if isinstance(exc, TektraError) else str(exc)
            if began is not None:
                log.warning("%s: lost the MQTT broker (%s); reconnecting", who, reason)
            else:
                what = "still cannot" if was_up else "cannot"
                log.warning(
                    "%s: %s reach the MQTT broker %s: %s",
                    who,
                    what,
                    redact(settings.broker),
                    reason,
                )
        finally:
            if began is not None:
                on_link(False)
        if began is not None and time.monotonic() - began >= HEALTHY_SESSION_S:
            delays = backoff_delays(0.2, settings.reconnect_max_s)
        await asyncio.sleep(next(delays))
