"""The local socket, spoken to as a client would: JSON lines over a real Unix socket."""

from __future__ import annotations

import asyncio
import base64
import grp
import os
import stat
from collections.abc import Callable

import cv2
import numpy as np

from tests.daemon.conftest import HELLO_EVENTS, Daemon, Mosquitto, SocketClient, listening


async def test_ask_over_the_socket_streams_chunks_then_the_answer_also_on_mqtt(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"')
    async with listening(mosquitto, ["tektra/testnode/#"]) as mqtt:
        await mqtt.wait_for(lambda m: m.topic == "tektra/testnode/status")
        client = await SocketClient.connect(daemon.socket)
        await client.send({"id": "q1", "cmd": "ask", "text": "turn on the lamp"})
        replies = await client.until_done("q1")
        await client.close()

        chunks = [r["chunk"] for r in replies[:-1]]
        assert chunks == ["You", " said:", " turn", " on", " the", " lamp"]
        result = replies[-1]["result"]
        assert result["text"] == "You said: turn on the lamp"
        assert (result["model"], result["backend"], result["finish_reason"]) == (
            "echo",
            "recorder",
            "stop",
        )
        assert set(result["timings_ms"]) >= {"first_chunk", "total"}

        answer = await mqtt.wait_for(lambda m: m.topic == "tektra/testnode/response")
        assert answer.json()["id"] == "q1"
        assert answer.json()["text"] == "You said: turn on the lamp"
        streamed = [m.json() for m in mqtt.on("tektra/testnode/response/chunk")]
        assert [c["text"] for c in streamed] == chunks
        assert [c["seq"] for c in streamed] == list(range(6))
        state = "tektra/testnode/state"
        await mqtt.wait_until(lambda: mqtt.payloads(state)[-1:] == ["idle"])
        assert mqtt.payloads(state)[-3:] == ["thinking", "responding", "idle"]
    assert daemon.stop() == 0


# (line with ID where the request id goes, code, part of the message). The lines without a usable
# id are answered with `"id": null`.
MALFORMED: list[tuple[str, str, str]] = [
    ("this is not json", "bad_json", "not valid JSON: Expecting value (character 0)"),
    ("[1, 2, 3]", "bad_request", "a request is a JSON object, not an array"),
    ('{"cmd": "status", "id": 1.5}', "bad_request", "`id` must be a string"),
    ('{"id": [], "cmd": "status"}', "bad_request", "`id` must be a string"),
    ('{"id": ID}', "bad_request", "missing field `cmd` (the command to run)"),
    ('{"id": ID, "cmd": "fly"}', "unknown_command", "unknown command 'fly'"),
    ('{"id": ID, "cmd": "ask"}', "bad_request", "ask: `text` is required"),
    ('{"id": ID, "cmd": "ask", "text": 5}', "bad_request", "`text` must be a string, not a number"),
    ('{"id": ID, "cmd": "status", "loud": true}', "bad_request", "unknown field `loud`"),
    ('{"id": ID, "cmd": "ask", "text": "hi", "image": "%%%"}', "bad_base64", "`image` is not"),
    ('{"id": ID, "cmd": "x' + "y" * 5000 + '"}', "too_large", "over the 4096-byte limit"),
]


async def test_a_thousand_malformed_lines_each_get_an_error_and_the_connection_stays_open(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', extra="max_request_bytes = 4096\n")
    client = await SocketClient.connect(daemon.socket)
    lines = [MALFORMED[i % len(MALFORMED)] for i in range(1000)]
    by_id = {i: (code, message) for i, (line, code, message) in enumerate(lines) if "ID" in line}
    # A line too long to read has no id anyone could see: it is answered with null.
    anonymous = sorted(code for line, code, _ in lines if "ID" not in line or code == "too_large")
    for i in [i for i, (line, code, _) in enumerate(lines) if code == "too_large"]:
        del by_id[i]

    async def send_all() -> None:
        for i, (line, _, _) in enumerate(lines):
            await client.send_raw(line.replace("ID", str(i)).encode() + b"\n")

    sender = asyncio.create_task(send_all())
    # Each request runs in its own task, so replies may overtake each other: match them by id.
    replies = [await client.receive() for _ in range(1000)]
    await sender
    assert all(set(reply) == {"id", "error"} for reply in replies)
    assert sorted(r["error"]["code"] for r in replies if r["id"] is None) == anonymous
    with_id = {r["id"]: r["error"] for r in replies if r["id"] is not None}
    assert set(with_id) == set(by_id)
    for request_id, (code, message) in by_id.items():
        assert with_id[request_id]["code"] == code
        assert message in with_id[request_id]["message"], with_id[request_id]
    assert {r["error"]["message"] for r in replies if r["error"]["code"] == "too_large"} == {
        "request line over the 4096-byte limit"
    }

    status = await client.call({"id": "after", "cmd": "status"})
    assert status["result"]["state"] == "idle"
    answer = await client.call({"id": "ask", "cmd": "ask", "text": "still there?"})
    assert answer["result"]["text"] == "You said: still there?"
    await client.close()
    assert daemon.stop() == 0


async def test_many_clients_at_once_each_get_their_own_answer(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', delay_s=0.01)
    clients = [await SocketClient.connect(daemon.socket) for _ in range(12)]

    async def ask(i: int, client: SocketClient) -> str:
        reply = await client.call({"id": i, "cmd": "ask", "text": f"number {i}"})
        text: str = reply["result"]["text"]
        return text

    answers = await asyncio.gather(*(ask(i, c) for i, c in enumerate(clients)))
    assert answers == [f"You said: number {i}" for i in range(12)]
    for client in clients:
        await client.close()
    assert daemon.stop() == 0


async def test_the_socket_is_private_to_its_owner(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon('broker = "none"')
    mode = stat.S_IMODE(daemon.socket.stat().st_mode)
    assert stat.S_ISSOCK(daemon.socket.stat().st_mode) and mode == 0o600
    assert daemon.stop() == 0
    assert not daemon.socket.exists()


async def test_subscribe_streams_every_event_with_the_subscription_id(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    watcher = await SocketClient.connect(daemon.socket)
    await watcher.send({"id": "sub", "cmd": "subscribe"})
    assert await watcher.receive() == {"id": "sub", "result": {"subscribed": True}}

    asker = await SocketClient.connect(daemon.socket)
    await asker.call({"id": "a1", "cmd": "ask", "text": "hello"})
    await asker.call({"id": "m1", "cmd": "mute"})
    events = [await watcher.receive() for _ in range(7)]
    assert all(e["id"] == "sub" for e in events)
    assert [
        (e["event"], e["data"].get("state") or e["data"].get("text")) for e in events
    ] == HELLO_EVENTS
    assert await watcher.receive() == {"id": "sub", "event": "microphone", "data": {"muted": True}}
    await watcher.close()
    await asker.close()
    assert daemon.stop() == 0


async def test_commands_answer_with_their_id_and_errors_name_the_problem(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    client = await SocketClient.connect(daemon.socket)
    models = await client.call({"id": 1, "cmd": "models"})
    assert [(m["id"], m["loaded"]) for m in models["result"]["models"]] == [
        ("echo", True),
        ("parrot", False),
    ]
    loaded = await client.call({"id": 2, "cmd": "load_model", "model": "parrot"})
    assert loaded == {"id": 2, "result": {"model": "parrot", "backend": "recorder"}}
    unknown = await client.call({"id": 3, "cmd": "load_model", "model": "gpt-9"})
    assert unknown["error"]["code"] == "unknown_model"
    prompt = await client.call({"id": 4, "cmd": "set_system_prompt", "prompt": "Be brief."})
    assert prompt["result"] == {"system_prompt": "Be brief."}
    switched = await client.call({"id": 5, "cmd": "switch_backend", "backend": "ollama-x"})
    assert switched["error"]["message"].startswith("backend 'ollama-x' is not installed")
    validated = await client.call({"id": 6, "cmd": "validate"})
    assert validated["result"]["ok"] is True
    odd = base64.b64encode(b"\0" * 161).decode()
    pushed = await client.call({"id": 7, "cmd": "push_audio", "pcm": odd})
    assert pushed["error"] == {
        "code": "bad_request",
        "message": "`pcm` must be 16-bit samples: its length in bytes must be even",
    }
    image = base64.b64encode(b"\x89PNG fake").decode()
    with_image = await client.call({"id": 8, "cmd": "ask", "text": "what is it?", "image": image})
    assert with_image["error"]["code"] == "unsupported_input"
    await client.close()
    assert daemon.stop() == 0


async def test_with_a_socket_group_the_group_may_use_it_too(
    make_daemon: Callable[..., Daemon],
) -> None:
    group = grp.getgrgid(os.getegid()).gr_name
    daemon = make_daemon('broker = "none"', extra=f'socket_group = "{group}"\n')
    info = daemon.socket.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o660, os.getegid())
    assert daemon.stop() == 0


async def test_multimodal_picks_a_model_that_takes_images(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', start=False)
    with daemon.config.open("a") as config:
        config.write(
            '[[models]]\nid = "seer"\nsource = { path = "models.toml" }\n'
            'backend_preferences = ["recorder"]\ncapabilities = ["text", "image"]\n'
        )
    daemon.start()
    client = await SocketClient.connect(daemon.socket)
    picture = np.zeros((16, 16, 3), dtype=np.uint8)
    picture[:, :8] = 255
    png = base64.b64encode(cv2.imencode(".png", picture)[1].tobytes()).decode()
    reply = await client.call(
        {"id": "mm", "cmd": "multimodal", "text": "what is this?", "images": [png]}
    )
    assert (reply["result"]["model"], reply["result"]["text"]) == (
        "seer",
        "You said: what is this?",
    )
    empty = await client.call({"id": "e", "cmd": "multimodal"})
    assert empty["error"] == {
        "code": "bad_request",
        "message": "multimodal: send at least one of `text`, `images`, `audio`, `video`",
    }
    await client.close()
    assert daemon.stop() == 0
