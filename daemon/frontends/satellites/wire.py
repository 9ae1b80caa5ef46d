"""What a satellite and the hub say to each other over MQTT: topics and payloads (the README's
"Satellites" contract).

Everything lives under `<topic_prefix>/<hub node_id>/satellite/<satellite id>/`:
- satellite → hub: `status` (retained `online`/`offline`, also its last will), `state` (retained),
  `mic` (retained `ON`/`OFF`), `wake` (JSON, `Heard`), `audio/<wake id>` (binary s16le 16 kHz mono
  chunks of the request, in order; an empty payload ends it);
- hub → satellite: `cancel` (JSON `{"wake", "reason"}`: another room keeps this wake),
  `play/<rate>` (binary s16le mono chunks of the spoken answer at `<rate>` Hz; an empty payload
  ends the answer), `answer` (JSON `{"wake", "transcript", "text"}`), `transcript` (retained: the
  last thing heard there); Home Assistant → satellite: `mic/set` (`ON`/`OFF`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from daemon.core.config.schema import SATELLITE_ID
from daemon.core.errors import TektraError

AUDIO_RATE = 16_000
"""Requests are sent as 16 kHz mono s16le, the rate Whisper hears."""
CHUNK_SAMPLES = 8_000
"""Samples per `audio` message (0.5 s): small messages, few of them."""
QUIET_DB = -100.0
"""The loudness of digital silence, in dBFS (a finite floor instead of minus infinity)."""


class BadPayload(TektraError):
    """A satellite message the hub cannot use."""

    code = "bad_satellite_message"


def base(topic_prefix: str, hub_node: str, satellite: str) -> str:
    return f"{topic_prefix}/{hub_node}/satellite/{satellite}"


def valid_id(text: str) -> bool:
    return re.match(SATELLITE_ID, text) is not None


@dataclass(frozen=True)
class Heard:
    """A wake word heard by one satellite (its `wake` message)."""

    wake: str
    """The wake's id, made by the satellite; its request's audio goes to `audio/<wake>`."""
    model: str
    """The wake word model that fired (`okay_nabu`)."""
    score: float
    """The model's probability when it fired."""
    loudness_db: float
    """RMS of the last second of audio before it fired, in dBFS: the louder room is the nearer."""
    time: float
    """The satellite's clock (Unix seconds) when it fired: for logs; the hub orders by arrival."""

    def payload(self) -> bytes:
        return json.dumps(self.__dict__).encode()

    @classmethod
    def parse(cls, payload: bytes) -> Heard:
        try:
            data: Any = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadPayload("a `wake` message is not JSON") from exc
        if not isinstance(data, dict):
            raise BadPayload("a `wake` message must be a JSON object")
        wake, model = data.get("wake"), data.get("model", "")
        if not isinstance(wake, str) or not valid_id(wake):
            raise BadPayload("a `wake` message needs `wake`: an id of letters, digits, - and _")
        numbers = [data.get(key, 0.0) for key in ("score", "loudness_db", "time")]
        if not all(_finite(n) for n in numbers) or not isinstance(model, str):
            raise BadPayload("`score`, `loudness_db` and `time` of a `wake` must be numbers")
        score, loudness, when = (float(n) for n in numbers)
        return cls(wake, model[:64], score, loudness, when)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def loudness_db(samples: np.ndarray) -> float:
    """RMS level of float samples in dBFS (QUIET_DB for silence)."""
    if not len(samples):
        return QUIET_DB
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(QUIET_DB, round(20 * math.log10(rms), 1)) if rms > 0 else QUIET_DB


def play_rate(topic_tail: str) -> int:
    """The sample rate named by a `play/<rate>` topic's last level."""
    if not topic_tail.isdigit() or not 4_000 <= int(topic_tail) <= 192_000:
        raise BadPayload(f"`play/{topic_tail[:12]}`: the rate must be from 4000 to 192000 Hz")
    return int(topic_tail)
