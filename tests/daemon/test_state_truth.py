"""Each fact in one place: status shows what is loaded (not a copy), a reload says which runtime
choices it kept, mute is held once, the state names are listed once."""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

from daemon.core.states import STATE_NAMES
from daemon.frontends.mqtt.discovery import discovery_payload
from daemon.models.manager.tools import NO_TOOLS_NOTE
from pipelines.events import StateName as PipelineStateName
from tests.daemon.conftest import Daemon, SocketClient


async def status(client: SocketClient) -> dict[str, object]:
    reply = await client.call({"id": "s", "cmd": "status"})
    result: dict[str, object] = reply["result"]
    return result


async def test_after_a_reload_whose_default_model_fails_status_reports_no_model(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    client = await SocketClient.connect(daemon.socket)
    before = await status(client)
    assert (before["model"], before["backend"]) == ("echo", "recorder")
    text = daemon.config.read_text()
    daemon.config.write_text(text.replace("chunk_delay_s = 0.0", "fail_load = true"))
    reply = await client.call({"id": "r", "cmd": "reload"})
    assert reply["error"]["code"] == "no_backend"
    after = await status(client)
    # Not loaded is a problem status lists, not a state: the assistant rests `idle`.
    assert (after["model"], after["backend"], after["state"]) == (None, None, "idle")
    assert "engine refused" in str(after["problems"])
    await client.close()
    assert daemon.stop() == 0


async def test_status_shows_the_model_load_model_chose_and_answers_come_from_it(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    client = await SocketClient.connect(daemon.socket)
    loaded = await client.call({"id": 1, "cmd": "load_model", "model": "parrot"})
    assert loaded["result"] == {"model": "parrot", "backend": "recorder"}
    assert (await status(client))["model"] == "parrot"
    answer = await client.call({"id": 2, "cmd": "ask", "text": "hi"})
    assert answer["result"]["model"] == "parrot"
    await client.close()
    assert daemon.stop() == 0


async def test_a_reload_keeps_runtime_choices_or_says_which_it_dropped(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    client = await SocketClient.connect(daemon.socket)
    await client.call({"id": 1, "cmd": "set_system_prompt", "prompt": "Answer in French."})
    await client.call({"id": 2, "cmd": "switch_backend", "backend": "recorder"})
    await client.call({"id": 3, "cmd": "load_model", "model": "parrot"})
    reply = await client.call({"id": 4, "cmd": "reload"})
    assert reply["result"]["kept"] == [
        "set_system_prompt",
        "switch_backend recorder",
        "load_model parrot",
    ]
    assert reply["result"]["dropped"] == []
    assert (await status(client))["model"] == "parrot"
    # The recorder counts words: the kept system prompt is 3 of them, then what a model without
    # tools is told it cannot do, and one more for "hi".
    answer = await client.call({"id": 5, "cmd": "ask", "text": "hi"})
    assert answer["result"]["prompt_tokens"] == 3 + len(NO_TOOLS_NOTE.split()) + 1

    text = daemon.config.read_text()
    daemon.config.write_text(
        text.replace('node_id = "testnode"\n', 'node_id = "testnode"\nsystem_prompt = "Hi."\n')
        .replace('backend_preferences = ["recorder"]\n', "", 1)
        .replace('[[models]]\nid = "parrot"', '[[models]]\nid = "macaw"')
    )
    reply = await client.call({"id": 6, "cmd": "reload"})
    assert reply["result"]["kept"] == ["switch_backend recorder"]
    assert reply["result"]["dropped"] == [
        "set_system_prompt: models.toml now sets [daemon] system_prompt",
        "load_model parrot: models.toml no longer has that model",
    ]
    assert (await status(client))["model"] == "echo"
    await client.close()
    assert daemon.stop() == 0


async def test_mute_is_one_fact_shown_by_status_after_any_command(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    client = await SocketClient.connect(daemon.socket)
    for request, muted in (
        ({"cmd": "mute"}, True),
        ({"cmd": "microphone", "on": True}, False),
        ({"cmd": "microphone", "on": False}, True),
        ({"cmd": "unmute"}, False),
    ):
        reply = await client.call({"id": 1, **request})
        assert reply["result"] == {"muted": muted}
        assert (await status(client))["muted"] is muted
    await client.close()
    assert daemon.stop() == 0


def test_the_state_names_are_listed_once_and_everything_else_uses_that_list() -> None:
    assert STATE_NAMES == ("idle", "loading", "listening", "transcribing", "thinking", "responding")
    # The capture layer names its own states; they must be states of the assistant.
    assert set(get_args(PipelineStateName)) <= set(STATE_NAMES)
    payload = discovery_payload("tektra/n", "n", ["m"])
    assert payload["components"]["tektra_n_state"]["options"] == list(STATE_NAMES)
