"""Rhasspy's Hermes topics for handled intents (`[intents] hermes = true`), so that Node-RED flows
written for Rhasspy (`hermes/intent/<name>`) run on Tektra's intents unchanged."""

from __future__ import annotations

import json
from typing import Any

from daemon.core.config.schema import TektraConfig
from daemon.frontends.mqtt.outbox import Outgoing
from daemon.intents.engine import IntentHandled


def hermes_messages(event: IntentHandled, config: TektraConfig, qos: int) -> list[Outgoing]:
    """The `hermes/intent/<intentName>` message of a handled intent (none when Hermes is off, or
    when the request named a device nobody has: Rhasspy would not have recognised it)."""
    if not config.intents.hermes or event.result.get("code") == "no_entity":
        return []
    payload: dict[str, Any] = {
        "input": event.text,
        "rawInput": event.text,
        "intent": {"intentName": event.intent, "confidenceScore": 1.0},
        "slots": [
            {
                "entity": name,
                "slotName": name,
                "rawValue": str(value),
                "value": {"kind": "Unknown", "value": value},
                "confidence": 1.0,
            }
            for name, value in event.slots.items()
        ],
        "id": str(event.id),
        "sessionId": str(event.id),
        "siteId": config.daemon.node_id,
        "customData": None,
        "asrTokens": [],
    }
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8", "replace")
    return [Outgoing(f"hermes/intent/{event.intent}", data, qos)]
