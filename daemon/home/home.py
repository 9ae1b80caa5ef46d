"""The home as the daemon runs it: the entities, the link that keeps them current, the intents
that act on them."""

from __future__ import annotations

from typing import Any

from daemon.config.schema import TektraConfig
from daemon.events import EventBus, RequestId
from daemon.ha_discovery import discovery_topic
from daemon.home.actions import DeviceCommand
from daemon.home.configured import configured_entities
from daemon.home.link import BrokerAway, HomeLink
from daemon.home.registry import EntityRegistry
from daemon.intents.engine import IntentEngine


class Home:
    def __init__(self, config: TektraConfig, bus: EventBus) -> None:
        mqtt, node_id = config.mqtt, config.daemon.node_id
        own = discovery_topic(mqtt.discovery_prefix, node_id)  # this daemon is no device to act on
        self.registry = EntityRegistry(
            mqtt.discovery_prefix, configured_entities(config.entities), ignore={own}
        )
        self.link = HomeLink(mqtt, node_id, self.registry) if mqtt.broker != "none" else None
        self.intents = (
            IntentEngine(config, self.registry, self, bus) if config.intents.enabled else None
        )

    async def answer(self, request_id: RequestId, text: str) -> str | None:
        """The assistant's first try (`Assistant.intents`)."""
        return None if self.intents is None else await self.intents.answer(request_id, text)

    async def publish(self, command: DeviceCommand, timeout_s: float) -> None:
        if self.link is None:
            raise BrokerAway('MQTT is off ([mqtt] broker = "none")')
        await self.link.publish(command, timeout_s)

    async def run(self) -> None:
        if self.link is not None:
            await self.link.run()

    def listing(self) -> list[dict[str, Any]]:
        return [entity.listing() for entity in self.registry.entities()]

    def close(self) -> None:
        if self.intents is not None:
            self.intents.close()
