"""Tektra as a Wyoming server: how Home Assistant's Assist pipeline reaches its ears and brain.

Each Wyoming domain Tektra offers is a `WyomingService` (see `base`): speech-to-text (`asr`), the
conversation agent (`handle`), spoken replies (`tts`) and the wake-word engine (`wake`).
`build_server` chooses the services, `server` serves them over TCP, and `info` answers
`describe` from the services present.
"""

from __future__ import annotations

from daemon.frontends.wyoming.base import ServiceSession, WyomingService
from daemon.frontends.wyoming.server import WyomingServer, build_server

__all__ = ["ServiceSession", "WyomingServer", "WyomingService", "build_server"]
