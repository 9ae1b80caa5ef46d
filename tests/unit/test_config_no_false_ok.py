"""No false "OK": a file the daemon could not run with fails validation, saying why.

Broker URLs that cannot be dialled, files named but absent, and secrets where they would leak.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.assistant.assistant import Assistant
from daemon.assistant.commands import Commands
from daemon.core.config.load import check_text
from daemon.core.config.schema import MqttSettings
from daemon.core.config.urls import redact
from daemon.core.events import EventBus
from daemon.frontends.mqtt.link import MqttLink

MODEL = '[[models]]\nid = "m"\nsource = { ollama = "m:1" }\n'
CREDENTIALS = (
    "credentials do not belong in the broker URL (they would end up in logs and in "
    "`tektra status`); write the URL without them and set [mqtt] username and "
    "password_env or password_file"
)


def problems(text: str, base: Path) -> list[str]:
    config, issues = check_text(text + MODEL, base)
    assert (config is None) == bool(issues)
    return [str(i) for i in issues]


@pytest.mark.parametrize(
    ("broker", "message"),
    [
        (
            "mqtt://localhost:99999",
            "mqtt://localhost:99999 has a port that is not a number from 1 to 65535",
        ),
        (
            "mqtt://localhost:abc",
            "mqtt://localhost:abc has a port that is not a number from 1 to 65535",
        ),
        (
            "mqtt://localhost:0",
            "mqtt://localhost:0 has a port that is not a number from 1 to 65535",
        ),
        ("mqtt://:1883", "mqtt://:1883 names no host (write mqtt://HOST:PORT)"),
        (
            "mqtt://host:1883/tektra",
            "mqtt://host:1883/tektra: a broker URL is only mqtt://HOST:PORT (no path or query)",
        ),
        ("mqtt://tektra:s3cret@broker.lan:1883", CREDENTIALS),
        ("mqtts://tektra@broker.lan", CREDENTIALS),
    ],
)
def test_a_broker_url_that_cannot_be_used_is_an_error(
    broker: str, message: str, tmp_path: Path
) -> None:
    assert problems(f'[mqtt]\nbroker = "{broker}"\n', tmp_path) == [f"mqtt.broker: {message}"]


@pytest.mark.parametrize("broker", ["embedded", "none", "mqtt://broker.lan", "mqtts://[::1]:8883"])
def test_usable_broker_settings_pass(broker: str, tmp_path: Path) -> None:
    assert problems(f'[mqtt]\nbroker = "{broker}"\n', tmp_path) == []


@pytest.mark.parametrize("key", ["password_file", "ca_file", "cert_file", "key_file"])
def test_a_missing_mqtt_file_is_an_error_with_its_absolute_path(key: str, tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("certificate")
    cert = "" if key in ("cert_file", "key_file") else 'cert_file = "cert.pem"\n'
    text = f'[mqtt]\nbroker = "mqtts://broker.lan"\n{cert}{key} = "absent"\n'
    expected = [f"mqtt.{key}: file not found: {tmp_path / 'absent'}"]
    if key == "key_file":
        expected.append("mqtt.key_file: needs cert_file (the certificate it signs)")
    assert problems(text, tmp_path) == expected


def test_mqtt_files_are_found_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("s3cret\n")
    config, issues = check_text(
        '[mqtt]\nbroker = "mqtt://broker.lan"\nusername = "t"\npassword_file = "password"\n'
        + MODEL,
        tmp_path,
    )
    assert issues == []
    assert config is not None and config.mqtt.password_file == str(tmp_path / "password")


def test_a_missing_replay_file_is_an_error(tmp_path: Path) -> None:
    assert problems('[audio]\nsource = "file:/nonexistent.wav"\n', tmp_path) == [
        "audio.source: file not found: /nonexistent.wav"
    ]


def test_a_replay_file_is_found_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "speech.wav").write_bytes(b"RIFF")
    config, issues = check_text('[audio]\nsource = "file:speech.wav"\n' + MODEL, tmp_path)
    assert issues == []
    assert config is not None and config.audio.source == f"file:{tmp_path / 'speech.wav'}"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://tektra:s3cret@broker.lan:1883", "mqtt://tektra:***@broker.lan:1883"),
        ("mqtt://:s3cret@broker.lan", "mqtt://:***@broker.lan"),
        ("mqtt://tektra:s3cret@broker.lan:abc", "mqtt://tektra:***@broker.lan:abc"),
        ("mqtt://tektra@broker.lan", "mqtt://tektra@broker.lan"),
        ("mqtt://broker.lan:1883", "mqtt://broker.lan:1883"),
        ("embedded", "embedded"),
    ],
)
def test_redact_hides_the_password_of_any_url(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_the_mqtt_status_never_shows_a_password_even_past_validation() -> None:
    # Validation refuses such a URL; the status redacts anyway, in case one ever gets through.
    settings = MqttSettings(broker="mqtt://tektra:s3cret@broker.lan:1883")
    config, issues = check_text(MODEL, Path.cwd())
    assert not issues and config is not None
    commands = Commands(Assistant(config, None, EventBus()))
    link = MqttLink(settings, "tektra", EventBus(), commands)
    assert link.status()["mqtt"]["broker"] == "mqtt://tektra:***@broker.lan:1883"
