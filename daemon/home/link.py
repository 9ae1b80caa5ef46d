"""The home's own connection to the broker: hears discovery and device states, sends commands.

It is a second client next to the daemon's link (`daemon.frontends.mqtt.link`), with the same broker
settings and credentials, because its traffic is of another kind: it follows every device's topics,
and a device command is awaited until the broker has it (QoS 1: acknowledged), so that a reply never
says something was done that never left Tektra. The daemon's outbox, by contrast, keeps messages for
later while the broker is away; a light switched on an hour late is worse than an honest "I could
not reach it"."""

from __future__ import annotations

import asyncio
import logging

import aiomqtt

from daemon.core.broker import broker_address, password, tls_context
from daemon.core.config.schema import MqttSettings
from daemon.core.errors import TektraError
from daemon.core.supervisor import backoff_delays, cancel_and_wait
from daemon.home.actions import DeviceCommand
from daemon.home.registry import EntityRegistry

log = logging.getLogger("tektra.home")


class BrokerAway(TektraError):
    code = "broker_unavailable"


class HomeLink:
    """Keeps `registry` current from the broker and publishes its devices' commands."""

    def __init__(self, settings: MqttSettings, node_id: str, registry: EntityRegistry) -> None:
        self.settings = settings
        self.client_id = f"{settings.client_id or f'tektra-{node_id}'}-home"
        self.registry = registry
        self.login: tuple[str, str] | None = None
        """The daemon's own login to its embedded broker (set at start); else `[mqtt]`'s."""
        self._client: aiomqtt.Client | None = None
        self._followed: set[str] = set()
        self._changed = asyncio.Event()
        registry.on_change.append(self._changed.set)

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def run(self) -> None:
        """Until cancelled: stay connected (retrying with backoff), hear and follow."""
        delays = backoff_delays(0.2, self.settings.reconnect_max_s)
        while True:
            try:
                async with self._new_client() as client:
                    delays = backoff_delays(0.2, self.settings.reconnect_max_s)
                    await self._session(client)
            except (aiomqtt.MqttError, TektraError) as exc:
                reason = exc.message if isinstance(exc, TektraError) else str(exc)
                log.warning("home: MQTT broker unavailable (%s); retrying", reason)
            finally:
                self._client = None
                self._followed = set()
            await asyncio.sleep(next(delays))

    def _new_client(self) -> aiomqtt.Client:
        address = broker_address(self.settings)
        username, secret = self.login or (self.settings.username, password(self.settings))
        return aiomqtt.Client(
            address.host,
            address.port,
            username=username,
            password=secret,
            identifier=self.client_id,
            keepalive=self.settings.keepalive_s,
            tls_context=tls_context(self.settings) if address.tls else None,
            timeout=10,
        )

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(f"{self.registry.discovery_prefix}/#", qos=1)
        self._client = client
        follow = asyncio.create_task(self._follow(client), name="home follow")
        try:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                self.registry.take(message.topic.value, payload)
        finally:
            await cancel_and_wait(follow)
        raise aiomqtt.MqttError("the broker closed the connection")

    async def _follow(self, client: aiomqtt.Client) -> None:
        """Subscribe to the state topics of entities as they appear (their retained states
        arrive at once)."""
        while True:
            self._changed.clear()
            wanted = self.registry.topics() - self._followed
            for topic in sorted(wanted):
                await client.subscribe(topic, qos=1)
                self._followed.add(topic)
            await self._changed.wait()

    async def publish(self, command: DeviceCommand, timeout_s: float) -> None:
        """Hand `command` to the broker; BrokerAway when it is not there to take it in time.
        QoS is at least 1, so returning means the broker has it."""
        client = self._client
        if client is None:
            raise BrokerAway("the MQTT broker is not reachable")
        try:
            await client.publish(
                command.topic,
                command.payload.encode(),
                qos=max(1, command.qos),
                retain=command.retain,
                timeout=timeout_s,
            )
        except aiomqtt.MqttError as exc:
            log.warning(
                "home: %s on %s was not taken by the broker: %s",
                command.payload[:80],
                command.topic,
                exc,
            )
            raise BrokerAway("the MQTT broker is not reachable") from exc
