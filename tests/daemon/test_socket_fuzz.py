"""10,000 generated bad lines on one socket connection: truncated JSON, huge integers, deep
nesting, lone surrogates, wrong types, unknown commands, binary. Every line is answered with an
error carrying its id when the id can be read (null otherwise), the connection stays open, and
the daemon logs no traceback."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any

from tests.daemon.conftest import Daemon, SocketClient

LINES = 10_000
COMMANDS = ["ask", "status", "load_model", "set_system_prompt", "switch_backend", "microphone"]
FIELDS = ["id", "cmd", "text", "model", "backend", "prompt", "preset", "session", "on"]


def bad_line(rng: random.Random, n: int) -> tuple[bytes, Any]:
    """One bad line and the id its error reply must carry (None: unreadable)."""
    request_id: Any = n if n % 2 else f"r{n}"
    head = json.dumps({"id": request_id})[:-1]  # `{"id": …` with the object left open
    kind = rng.randrange(9)
    if kind == 0:  # truncated: readable only when the cut is past `{"id": …,`
        whole = json.dumps({"id": request_id, "cmd": "ask", "text": "x" * rng.randrange(1, 30)})
        cut = rng.randrange(1, len(whole) - 1)
        return whole[:cut].encode(), request_id if cut >= len(head) + 1 else None
    if kind == 1:  # an integer over Python's 4,300-digit limit, or just over ours
        digits = rng.choice([41, 4_301, 5_000])
        return f'{head}, "cmd": "ask", "text": {"7" * digits}}}'.encode(), request_id
    if kind == 2:  # deep nesting, closed or not
        depth = 100_000 if n % 50 == 0 else rng.choice([33, 1_000, 5_000])
        closing = "]" * depth if rng.random() < 0.5 else ""
        return f'{head}, "cmd": "ask", "text": {"[" * depth}{closing}}}'.encode(), request_id
    if kind == 3:  # a lone surrogate in any string, the id included
        field = rng.choice(FIELDS[:7])
        fields: dict[str, Any] = {"id": request_id, "cmd": rng.choice(COMMANDS), "text": "hi"}
        fields[field] = f"a{chr(rng.randrange(0xD800, 0xE000))}b"
        return json.dumps(fields).encode(), None if field == "id" else request_id
    if kind == 4:  # wrong types
        field, value = rng.choice(
            [("text", 5), ("model", []), ("on", "yes"), ("backend", {"a": 1}), ("prompt", None)]
        )
        command = {"on": "microphone", "backend": "switch_backend", "prompt": "set_system_prompt"}
        line = {"id": request_id, "cmd": command.get(field, "ask"), field: value}
        return json.dumps(line).encode(), request_id
    if kind == 5:  # an id that cannot be one
        bad_id = rng.choice(["true", "[1]", "1.5", "null", '{"a": 1}', '"' + "i" * 300 + '"'])
        return f'{{"id": {bad_id}, "cmd": "status"}}'.encode(), None
    if kind == 6:  # unknown commands
        name = rng.choice(["fly", "", "ASK", "status ", "a" * 500])
        return json.dumps({"id": request_id, "cmd": name}).encode(), request_id
    if kind == 7:  # binary: anything but a newline, never blank
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        return b"\xff" + raw.replace(b"\n", b"\x00"), None
    # not an object, or NaN and friends where a value goes
    odd = rng.choice(["[1, 2]", '"text"', "42", "null"])
    if rng.random() < 0.5:
        return odd.encode(), None
    value = rng.choice(["NaN", "-Infinity", "1e999"])
    return f'{head}, "cmd": "ask", "text": {value}}}'.encode(), request_id


async def test_ten_thousand_bad_lines_each_get_an_error_with_their_id_and_the_connection_stays(
    make_daemon: Callable[..., Daemon],
) -> None:
    rng = random.Random(20261201)
    lines = [bad_line(rng, n) for n in range(LINES)]
    daemon = make_daemon('broker = "none"')
    client = await SocketClient.connect(daemon.socket)

    async def send_all() -> None:
        # In bulk: a few hundred lines per write.
        for start in range(0, LINES, 250):
            await client.send_raw(b"".join(line + b"\n" for line, _ in lines[start : start + 250]))

    sender = asyncio.create_task(send_all())
    replies = [await client.receive(timeout_s=60) for _ in range(LINES)]
    await sender
    # Bad lines are answered as they are read, so in order.
    wrong = [
        (i, lines[i][0][:80], reply)
        for i, reply in enumerate(replies)
        if set(reply) != {"id", "error"} or reply["id"] != lines[i][1]
    ]
    assert wrong == []
    codes = {reply["error"]["code"] for reply in replies}
    assert codes <= {"bad_json", "bad_request", "unknown_command"}
    assert all(reply["error"]["message"] for reply in replies)

    status = await client.call({"id": "after", "cmd": "status"})
    assert status["result"]["state"] == "idle"
    answer = await client.call({"id": "ask", "cmd": "ask", "text": "still there?"})
    assert answer["result"]["text"] == "You said: still there?"
    await client.close()
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log
