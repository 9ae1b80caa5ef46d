"""`tektra satellite`: its settings from the flags and an optional models.toml, then run it.

A models.toml is optional: on a satellite box only its `[satellite]` (id, room, devices), `[mqtt]`
(the hub's broker, credentials, TLS, topic prefix, reconnect), `[daemon]` (the hub's node id, log
level), `[audio]` (VAD, wake word, block size) and `[tts]` (volume, hold) tables matter; a flag
wins over the file, and a service runs with the file alone. With no `[mqtt] username`, a
satellite on the hub's own machine presents the embedded broker's user login, as
`tektra mqtt credentials` prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from urllib.parse import urlsplit

import tomllib

from daemon.core.config.load import ConfigNotFound, default_config_path
from daemon.core.config.partial import validate
from daemon.core.config.schema import TektraConfig
from daemon.core.errors import ConfigError, ConfigIssue, TektraError, print_error
from daemon.frontends.mqtt.credentials import CredentialsError
from daemon.frontends.mqtt.credentials import load as load_credentials
from daemon.frontends.satellites.station import SatelliteSettings, Station
from daemon.frontends.satellites.wire import valid_id

LOOPBACK = ("127.0.0.1", "localhost", "::1")
TABLES = ("daemon", "audio", "tts", "mqtt", "satellite")
"""The models.toml tables a satellite reads."""


class BadOption(TektraError):
    """A `tektra satellite` flag that cannot be used."""

    code = "bad_option"


def start_satellite(args: argparse.Namespace) -> int:
    try:
        config = _config(args.config)
        settings, config = _settings(args, config)
    except TektraError as exc:
        print_error(exc, args.config or "models.toml")
        return 1
    logging.basicConfig(
        level=config.daemon.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    station = Station(config, settings, login=_local_login(config))
    return asyncio.run(_serve(station))


async def _serve(station: Station) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await station.run()
    except TektraError as exc:  # a wake word model that cannot load
        logging.getLogger("tektra.satellite").error("%s", exc.message)
        return 1
    except asyncio.CancelledError:
        pass  # a stop signal: `offline` was said on the way out
    return 0


def _config(path: Path | None) -> TektraConfig:
    """The tables a satellite uses, from `path` (else the usual places, else the defaults);
    every other table (models, backends, …) is the hub's business and is not read."""
    if path is None:
        try:
            path = default_config_path()
        except ConfigNotFound:
            return TektraConfig()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue("", f"cannot read {path}: {exc}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigIssue("", f"not valid TOML: {exc}")]) from exc
    issues: list[ConfigIssue] = []
    sections = {
        key: validate(TektraConfig.model_fields[key].annotation, raw[key], key, issues)
        for key in TABLES
        if key in raw
    }
    if issues:
        raise ConfigError(issues)
    return TektraConfig.model_validate({key: raw[key] for key in sections})


def _settings(
    args: argparse.Namespace, config: TektraConfig
) -> tuple[SatelliteSettings, TektraConfig]:
    table = config.satellite
    if args.id is not None and not valid_id(args.id):
        raise BadOption(f"--id {args.id!r}: use letters, digits, - and _ (at most 64)")
    satellite_id = args.id or table.id
    if satellite_id is None:
        raise BadOption("which satellite is this? give --id NAME, or [satellite] id in models.toml")
    node = args.node or config.daemon.node_id
    mqtt = config.mqtt
    if args.hub:
        if not args.hub.startswith(("mqtt://", "mqtts://")) or not urlsplit(args.hub).hostname:
            raise BadOption(f"--hub {args.hub!r}: give the hub's broker as mqtt://host:port")
        mqtt = mqtt.model_copy(update={"broker": args.hub})
    elif mqtt.broker == "none":
        raise BadOption("no hub to reach: give --hub mqtt://host:port, or [mqtt] broker")
    audio = config.audio
    if args.wake:
        audio = audio.model_copy(
            update={"wake": audio.wake.model_copy(update={"model": args.wake})}
        )
    config = config.model_copy(update={"mqtt": mqtt, "audio": audio})
    room = args.room or table.room or satellite_id
    devices = (args.input or table.input, args.output or table.output)
    return SatelliteSettings(satellite_id, room, node, *devices), config


def _local_login(config: TektraConfig) -> tuple[str, str] | None:
    """The embedded broker's user login, for a satellite on the hub's own machine whose
    models.toml names no username."""
    mqtt = config.mqtt
    local = mqtt.broker == "embedded" or urlsplit(mqtt.broker).hostname in LOOPBACK
    if mqtt.username is not None or not local:
        return None
    try:
        login = load_credentials().user
    except CredentialsError:
        return None  # no embedded broker here: an anonymous client
    return login.username, login.password
