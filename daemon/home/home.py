"""The home as the daemon runs it: the entities, the link that keeps them current, the intents
that act on them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from daemon.core.config.schema import TektraConfig
from daemon.core.events import EventBus, RequestId
from daemon.home.actions import DeviceCommand
from daemon.home.configured import configured_entities
from daemon.home.discovery import discovery_topic
from daemon.home.link import BrokerAway, HomeLink
from daemon.home.registry import EntityRegistry
from daemon.intents.engine import IntentEngine
from daemon.intents.tools import HomeTools


class Home:
    """`config` gives the daemon's configuration as it is now (the assistant's, which a reload
    replaces): `[[entities]]` and `[intents]` follow it. The broker settings are those of the
    start, like the daemon's own link."""

    def __init__(self, config: Callable[[], TektraConfig], bus: EventBus) -> None:
        self._config = config
        self._seen = start = config()
        mqtt, node_id = start.mqtt, start.daemon.node_id
        own = discovery_topic(mqtt.discovery_prefix, node_id)  # this daemon is no device to act on
        self.registry = EntityRegistry(
            mqtt.discovery_prefix, configured_entities(start.entities), ignore={own}
        )
        self.link = HomeLink(mqtt, node_id, self.registry) if mqtt.broker != "none" else None
        self.bus = bus
        self.intents: IntentEngine | None = None
        if start.intents.enabled:
            self.intents = IntentEngine(start, self.registry, self, bus)

    async def answer(self, request_id: RequestId, text: str) -> str | None:
        """The assistant's first try (`Assistant.intents`)."""
        self._follow_config()
        return None if self.intents is None else await self.intents.answer(request_id, text)

    def tools(self, request_id: RequestId, text: str) -> HomeTools | None:
        """The home's actions as tools for a model that takes them (`Assistant.tools`); None
        while the intents are off."""
        self._follow_config()
        return None if self.intents is None else self.intents.tools(request_id, text)

    async def publish(self, command: DeviceCommand, timeout_s: float) -> None:
        if self.link is None:
            raise BrokerAway('MQTT is off ([mqtt] broker = "none")')
        await self.link.publish(command, timeout_s)

    async def run(self) -> None:
        """Until cancelled: the link to the broker, and hassil's index built meanwhile."""
        jobs = [self.link.run()] if self.link is not None else []
        if self.intents is not None:
            jobs.append(self.intents.warm())
        await asyncio.gather(*jobs)

    def status(self) -> dict[str, Any]:
        """For `status`: the home's own broker link and what it knows."""
        entities = self.registry.entities()
        return {
            "connected": self.link is not None and self.link.connected,
            "entities": len(entities),
            "unavailable": sum(1 for e in entities if not e.available),
            "intents": self.intents.language if self.intents is not None else None,
        }

    def listing(self) -> list[dict[str, Any]]:
        self._follow_config()
        return [entity.listing() for entity in self.registry.entities()]

    def close(self) -> None:
        if self.intents is not None:
            self.intents.close()

    def _follow_config(self) -> None:
        config = self._config()
        if config is self._seen:
            return
        self._seen = config
        self.registry.set_configured(configured_entities(config.entities))
        if not config.intents.enabled:
            self.close()
            self.intents = None
        elif self.intents is None:
            self.intents = IntentEngine(config, self.registry, self, self.bus)
        else:
            self.intents.reconfigure(config)
