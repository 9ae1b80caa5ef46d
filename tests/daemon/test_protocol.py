"""One reader of requests for the socket and MQTT: JSON with limits, plain MQTT payloads, ids kept
with their type, the command table and the MQTT allow-list. Pure: no daemon, no broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon.assistant.assistant import Assistant
from daemon.assistant.commands import COMMANDS, Commands, Outcome
from daemon.assistant.protocol import (
    AskArgs,
    Envelope,
    MicrophoneArgs,
    NoArgs,
    ProtocolError,
    Request,
    check_args,
    read_line,
)
from daemon.core.config.load import load_config
from daemon.core.config.schema import MqttSettings
from daemon.core.events import EventBus, new_request_id
from daemon.models.backends.registry import BackendRegistry

MQTT_DEFAULT = MqttSettings().commands


@pytest.fixture
def commands(tmp_path: Path) -> Commands:
    config = tmp_path / "models.toml"
    config.write_text(
        '[daemon]\nnode_id = "unit"\n[[models]]\nid = "echo"\nsource = { path = "models.toml" }\n'
    )
    loaded = load_config(config, BackendRegistry().names())
    return Commands(Assistant(loaded, None, EventBus()))


def refused(outcome: Request | Outcome) -> tuple[Any, str, str]:
    assert isinstance(outcome, Outcome), outcome
    return outcome.id, outcome.code, outcome.message


@pytest.mark.parametrize(
    ("line", "request_id", "message"),
    [
        (b'{"id": 5, "cmd": "ask", "text": ' + b"1" * 5000 + b"}", 5, "more than 40 digits"),
        (b'{"id": 6, "cmd": "ask", "text": ' + b"[" * 100_000, 6, "nested deeper than 32"),
        (b"[" * 100_000 + b"]" * 100_000, None, "nested deeper than 32 levels"),
        (b'{"id": "\\ud800", "cmd": "status"}', None, "`id` holds a lone surrogate"),
        (b'{"id": 1, "cmd": "\\udfff"}', 1, "`cmd` holds a lone surrogate"),
        (b'{"id": 2, "cmd": "ask", "text": "a\\ud800b"}', 2, "`text` holds a lone surrogate"),
        (b'{"id": 3, "cmd": "load_model", "model": "\\ud83d"}', 3, "`model` holds a lone"),
        (b'{"id": 4, "cmd": "ask", "text": "x", "\\ud800": 1}', 4, "a field name holds a lone"),
        (b'{"id": 7, "cmd": "set_system_prompt", "prompt": "\\udc00"}', 7, "`prompt` holds"),
        (b'{"id": 8, "cmd": "switch_backend", "backend": "\\ud800"}', 8, "`backend` holds"),
        (b'{"id": "k", "cmd": "as', "k", "not valid JSON: Unterminated string"),
        (b'{"id": 9, "x": NaN}', 9, "NaN is not a JSON value"),
        (b'{"id": 10, "x": 1e999}', 10, "the number 1e999 is out of range"),
        (b'\xff{"id": 1}', None, "not UTF-8 (byte 0)"),
    ],
)
def test_json_beyond_our_limits_is_bad_json_with_the_id_when_it_can_be_read(
    commands: Commands, line: bytes, request_id: object, message: str
) -> None:
    got_id, code, text = refused(commands.read_line(line))
    assert (got_id, code) == (request_id, "bad_json")
    assert message in text
    text.encode("utf-8")  # what we say about it is real text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"id": 1, "cmd": "ask"}', "ask: `text` is required"),
        (b'{"id": 1, "cmd": "ask", "text": ""}', "ask: `text` must not be empty"),
        (b'{"id": 1, "cmd": "ask", "text": 5}', "ask: `text` must be a string, not a number"),
        (
            b'{"id": 1, "cmd": "status", "loud": true}',
            "status: unknown field `loud` (it takes no fields)",
        ),
        (
            b'{"id": 1, "cmd": "push_audio", "pcm": "", "sample_rate": 4000}',
            "push_audio: `sample_rate` must be at least 8000 (got 4000)",
        ),
        (b'{"id": 1, "cmd": 5}', "`cmd` must be a string"),
        (b'{"id": 1}', "missing field `cmd` (the command to run)"),
        (b'"text"', "a request is a JSON object, not a string"),
    ],
)
def test_a_bad_field_is_named_once_in_our_words(
    commands: Commands, line: bytes, message: str
) -> None:
    _, code, text = refused(commands.read_line(line))
    assert (code, text) == ("bad_request", message)


def test_an_id_keeps_its_type_and_a_missing_id_is_made_up_unique(commands: Commands) -> None:
    numbered = commands.read_line(b'{"id": 5, "cmd": "status"}')
    named = commands.read_line(b'{"id": "5", "cmd": "status"}')
    assert isinstance(numbered, Request) and isinstance(named, Request)
    assert (numbered.id, named.id) == (5, "5")
    made = [commands.read_message("ask", b"hello", MQTT_DEFAULT) for _ in range(100)]
    ids = {r.id for r in made if isinstance(r, Request)}
    assert len(ids) == 100 and all(str(i).startswith("mqtt-") for i in ids)
    assert new_request_id("voice") != new_request_id("voice")
    assert refused(commands.read_line(b'{"id": true, "cmd": "status"}'))[1] == "bad_request"


@pytest.mark.parametrize(
    ("name", "payload", "command", "args"),
    [
        ("ask", b"What is 2+2?", "ask", AskArgs(text="What is 2+2?")),
        ("ask", b'{"id": "q", "text": "json"}', "ask", AskArgs(text="json")),
        ("microphone", b"ON", "microphone", MicrophoneArgs(on=True)),
        ("microphone", b"off", "microphone", MicrophoneArgs(on=False)),
        ("mute", b"", "mute", NoArgs()),
        ("unmute", b"", "unmute", NoArgs()),
        ("status", b"", "status", NoArgs()),
        ("models", b"", "models", NoArgs()),
        ("reload", b"PRESS", "reload", NoArgs()),  # a Home Assistant button's payload
    ],
)
def test_mqtt_takes_plain_payloads_where_their_meaning_is_clear(
    commands: Commands, name: str, payload: bytes, command: str, args: object
) -> None:
    request = commands.read_message(name, payload, MQTT_DEFAULT)
    assert isinstance(request, Request), request
    assert (request.command, request.args, request.front_end) == (command, args, "mqtt")


@pytest.mark.parametrize(
    ("name", "payload", "code", "message"),
    [
        ("microphone", b"maybe", "bad_request", 'microphone takes ON, OFF or {"on": true|false}'),
        ("load_model", b"", "bad_request", "load_model takes a JSON object, such as"),
        ("ask", b"", "bad_request", "ask: `text` must not be empty"),
        ("ask", b"{not json", "bad_json", "not valid JSON: Expecting property name"),
        ("ask", b"\xff\xfe", "bad_request", "the payload is not UTF-8 (byte 0)"),
        ("dance", b"{}", "unknown_command", "unknown command 'dance' (commands: ask, "),
        ("subscribe", b"", "unsupported", "subscribe works over the socket only"),
        (
            "set_system_prompt",
            b'{"prompt": "Be rude."}',
            "forbidden",
            'set_system_prompt is not allowed over MQTT: add "set_system_prompt" to '
            "[mqtt] commands in models.toml to allow it",
        ),
        ("switch_backend", b'{"backend": null}', "forbidden", "switch_backend is not allowed"),
    ],
)
def test_mqtt_refusals_have_their_own_code_and_say_it_once(
    commands: Commands, name: str, payload: bytes, code: str, message: str
) -> None:
    _, got_code, text = refused(commands.read_message(name, payload, MQTT_DEFAULT))
    assert got_code == code
    assert text.startswith(message), text
    assert "command/" not in text and "String should" not in text


def test_the_mqtt_allow_list_opens_what_home_assistant_needs_and_nothing_riskier() -> None:
    assert set(MQTT_DEFAULT) >= {"ask", "status", "models", "load_model", "microphone", "mute"}
    assert not set(MQTT_DEFAULT) & {"set_system_prompt", "switch_backend", "push_audio"}


def test_listing_a_command_in_the_allow_list_opens_it(commands: Commands) -> None:
    request = commands.read_message(
        "set_system_prompt", b'{"id": 1, "prompt": "Hi"}', [*MQTT_DEFAULT, "set_system_prompt"]
    )
    assert isinstance(request, Request) and request.id == 1


def test_every_command_has_a_handler_or_is_served_by_its_front_end() -> None:
    assert [name for name, c in COMMANDS.items() if c.run is None] == ["subscribe"]
    assert {name for name, c in COMMANDS.items() if c.streaming} == {"ask", "multimodal", "look"}


def test_fields_are_checked_against_the_commands_model() -> None:
    with pytest.raises(ProtocolError) as caught:
        check_args(AskArgs, Envelope(1, "ask", {}), 1)
    assert (caught.value.code, caught.value.request_id) == ("bad_request", 1)
    assert read_line(b'{"cmd": "status"}') == Envelope(None, "status", {})
