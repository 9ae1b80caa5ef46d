"""Every entity Tektra knows, kept current from the broker's messages."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection

from daemon.home.discovery import read_discovery
from daemon.home.entity import Entity

log = logging.getLogger("tektra.home")


class EntityRegistry:
    """Entities by id: those of `[[entities]]`, then those discovery configs describe. Feed it
    every message of the discovery prefix and of `topics()`."""

    def __init__(
        self,
        discovery_prefix: str,
        configured: list[Entity] | None = None,
        *,
        ignore: Collection[str] = (),
    ) -> None:
        self.discovery_prefix = discovery_prefix
        self._ignore = set(ignore)
        """Discovery topics that are not devices to act on (this daemon's own)."""
        self._configured = list(configured or [])
        self._discovered: dict[str, list[Entity]] = {}
        self.version = 0
        """Counts changes of the entities' names or topics (not of their states)."""
        self.on_change: list[Callable[[], None]] = []

    def set_configured(self, configured: list[Entity]) -> None:
        """`[[entities]]` read again (a reload): states already heard are kept."""
        before = {e.id: e for e in self._configured}
        fresh = []
        for entity in configured:
            old = before.get(entity.id)
            same = old is not None and old.topics() == entity.topics()
            fresh.append(_keep_state(entity, old) if same and old is not None else entity)
        if [_shape(e) for e in fresh] == [_shape(e) for e in self._configured]:
            return
        self._configured = fresh
        self._changed()

    def entities(self) -> list[Entity]:
        found = list(self._configured)
        for entities in self._discovered.values():
            found.extend(entities)
        return found

    def get(self, entity_id: str) -> Entity | None:
        return next((e for e in self.entities() if e.id == entity_id), None)

    def topics(self) -> set[str]:
        """The topics every entity follows its state on."""
        return {topic for entity in self.entities() for topic in entity.topics()}

    def take(self, topic: str, payload: bytes) -> None:
        """One message from the broker: a discovery config, or a state an entity follows."""
        if topic.startswith(self.discovery_prefix + "/") and topic not in self._ignore:
            discovered = read_discovery(self.discovery_prefix, topic, payload)
            if discovered is not None:
                self._replace(topic, discovered.entities)
                return
        text = payload.decode("utf-8", "replace")
        for entity in self.entities():
            if topic in entity.topics():
                entity.hear(topic, text)

    def _replace(self, topic: str, entities: list[Entity]) -> None:
        old = {e.id: e for e in self._discovered.get(topic, [])}
        taken = {e.id for e in self.entities() if e.id not in old}
        fresh = []
        for entity in entities:
            entity = _unique(entity, taken)
            taken.add(entity.id)
            before = old.get(entity.id)
            if before is not None and before.topics() == entity.topics():
                entity = _keep_state(entity, before)  # a config sent again: same device
            fresh.append(entity)
        if fresh:
            self._discovered[topic] = fresh
        elif self._discovered.pop(topic, None) is None:
            return
        if [_shape(e) for e in fresh] == [_shape(e) for e in old.values()]:
            return  # the same config again (brokers replay retained ones on every subscribe)
        log.info("discovered %s: %s", topic, ", ".join(e.id for e in fresh) or "removed")
        self._changed()

    def _changed(self) -> None:
        self.version += 1
        for notify in self.on_change:
            notify()


def _shape(entity: Entity) -> tuple[object, ...]:
    """What matching and following depend on."""
    return (entity.id, entity.name, entity.aliases, entity.area, entity.topics(), entity.config)


def _unique(entity: Entity, taken: set[str]) -> Entity:
    if entity.id not in taken:
        return entity
    n = 2
    while f"{entity.id}_{n}" in taken:
        n += 1
    return dataclasses.replace(entity, id=f"{entity.id}_{n}")


def _keep_state(entity: Entity, before: Entity) -> Entity:
    kept = dataclasses.replace(
        entity,
        state=before.state,
        brightness=before.brightness,
        position=before.position,
        current_temperature=before.current_temperature,
        target_temperature=before.target_temperature,
    )
    kept._heard.update(before._heard)
    kept._latest = before._latest
    return kept
