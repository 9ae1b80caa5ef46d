"""Entities from `[[entities]]`: plain MQTT devices that publish no discovery config."""

from __future__ import annotations

from daemon.core.config.schema import EntitySettings
from daemon.home.discovery import slug
from daemon.home.entity import Entity


def configured_entities(settings: list[EntitySettings]) -> list[Entity]:
    entities = []
    for index, entry in enumerate(settings):
        config = entry.model_dump(exclude_none=True, exclude={"name", "aliases", "area", "domain"})
        entities.append(
            Entity(
                id=f"{entry.domain}.{slug(entry.name)}",
                domain=entry.domain,
                name=entry.name,
                aliases=tuple(entry.aliases),
                area=entry.area,
                origin="models.toml",
                source=f"[[entities]] #{index + 1}",
                config=config,
            )
        )
    return entities
