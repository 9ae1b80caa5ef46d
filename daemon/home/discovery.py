"""Entities from the discovery configs devices publish for Home Assistant.

Two shapes: one entity per topic (`<prefix>/<component>/[<node_id>/]<object_id>/config`) and a
whole device per topic (`<prefix>/device/<id>/config` with its parts under `cmps`, each naming its
component in `p` and sharing the device's top-level options). An empty payload removes what the
topic described. Components Tektra cannot use are skipped."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from daemon.core.config.schema import EntityDomain
from daemon.home.abbreviations import KEYS, expand
from daemon.home.entity import Entity

DOMAINS: tuple[EntityDomain, ...] = (
    "light",
    "switch",
    "fan",
    "cover",
    "lock",
    "climate",
    "scene",
    "button",
    "sensor",
    "binary_sensor",
)


def discovery_topic(discovery_prefix: str, node_id: str) -> str:
    """Where a device-based discovery config for `node_id` lives (Tektra's own among them)."""
    return f"{discovery_prefix}/device/{node_id}/config"


@dataclass(frozen=True)
class Discovered:
    """What one discovery message says: the entities now described by `topic` (none: removed)."""

    topic: str
    entities: list[Entity]


def read_discovery(prefix: str, topic: str, payload: bytes) -> Discovered | None:
    """The entities of a discovery message; None when `topic` is not a discovery config or its
    payload cannot be read (a device's mistake: logged by the caller, never fatal)."""
    parts = topic[len(prefix) + 1 :].split("/") if topic.startswith(prefix + "/") else []
    if len(parts) not in (3, 4) or parts[-1] != "config":
        return None
    component, object_id = parts[0], parts[-2]
    if not payload.strip():
        return Discovered(topic, [])
    try:
        raw = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    if component == "device":
        return Discovered(topic, _device(topic, raw))
    if component not in DOMAINS:
        return Discovered(topic, [])
    entity = _entity(topic, component, object_id, expand(raw))
    return Discovered(topic, [entity] if entity is not None else [])


def _device(topic: str, raw: dict[str, Any]) -> list[Entity]:
    shared = {k: v for k, v in raw.items() if KEYS.get(k, k) != "components"}
    parts = raw.get("cmps", raw.get("components"))
    if not isinstance(parts, dict):
        return []
    entities = []
    for object_id, part in parts.items():
        if not isinstance(part, dict):
            continue
        config = expand({**shared, **part})
        domain = config.get("platform")
        if domain in DOMAINS and isinstance(domain, str):
            entity = _entity(topic, domain, str(object_id), config)
            if entity is not None:
                entities.append(entity)
    return entities


def _entity(topic: str, domain: str, object_id: str, config: dict[str, Any]) -> Entity | None:
    name = entity_name(config, object_id)
    if name is None:
        return None
    own = config.get("object_id") or config.get("unique_id") or object_id
    device = config.get("device") if isinstance(config.get("device"), dict) else {}
    area = device.get("suggested_area") if isinstance(device, dict) else None
    aliases = tuple(
        a
        for a in (config.get("name"), device.get("name") if isinstance(device, dict) else None)
        if isinstance(a, str) and a and a.lower() != name.lower()
    )
    return Entity(
        id=f"{domain}.{slug(str(own))}",
        domain=domain,
        name=name,
        aliases=aliases[:1],
        area=area if isinstance(area, str) and area else None,
        origin="discovery",
        source=topic,
        config=config,
    )


def entity_name(config: dict[str, Any], object_id: str) -> str | None:
    """The name people call it by, as Home Assistant builds it: the device's name when the
    entity's is null (a device with one job: a Zigbee bulb), the device's name in front when the
    entity's does not already start with it ("Kitchen" + "Fan" = "Kitchen Fan")."""
    device = config.get("device") if isinstance(config.get("device"), dict) else {}
    device_name = device.get("name") if isinstance(device, dict) else None
    device_name = (
        device_name.strip() if isinstance(device_name, str) and device_name.strip() else None
    )
    if "name" in config and config["name"] is None:
        return device_name
    own = config.get("name")
    own = own.strip() if isinstance(own, str) and own.strip() else None
    if own is None:
        return device_name or object_id.replace("_", " ")
    if device_name and not own.lower().startswith(device_name.lower()):
        return f"{device_name} {own}"
    return own


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "unnamed"
