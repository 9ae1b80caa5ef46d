"""How to reach the configured MQTT broker: its address, the password, the TLS context.

Shared by every client Tektra opens (the daemon's link, the home's, `tektra doctor`), so they
all read `[mqtt]` the same way."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from daemon.core.config.schema import MqttSettings
from daemon.core.config.urls import redact
from daemon.core.errors import TektraError


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def broker_address(settings: MqttSettings) -> BrokerAddress:
    if settings.broker == "embedded":
        wildcard = settings.bind in ("0.0.0.0", "::")
        return BrokerAddress(
            "127.0.0.1" if wildcard else settings.bind, settings.embedded_port, False
        )
    url = urlsplit(settings.broker)
    tls = url.scheme == "mqtts"
    if not url.hostname:
        raise TektraError(f"[mqtt] broker {redact(settings.broker)!r} names no host")
    return BrokerAddress(url.hostname, url.port or (8883 if tls else 1883), tls)


def password(settings: MqttSettings) -> str | None:
    """The password from `password_env` or `password_file`; never logged."""
    if settings.password_env:
        value = os.environ.get(settings.password_env)
        if value is None:
            raise TektraError(f"[mqtt] password_env: ${settings.password_env} is not set")
        return value
    if settings.password_file:
        try:
            return Path(settings.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise TektraError(
                f"[mqtt] password_file: cannot read {settings.password_file}: {exc.strerror}"
            ) from exc
    return None


def tls_context(settings: MqttSettings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TektraError(f"[mqtt] TLS files: {exc}") from exc
    return context
