"""Each client has its own conversation unless it names one (`session`).

The test backend reports as `prompt_tokens` the words of everything it was sent (system prompt,
earlier exchanges, question), so a conversation's history shows in that number exactly; the
`tektra ask` reproduction runs on real llama.cpp with SmolLM2.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from tests.conftest import SMOLLM2_SOURCE
from tests.daemon.conftest import (
    ROOT,
    TEKTRA,
    Daemon,
    Mosquitto,
    Recorded,
    SocketClient,
    listening,
)

BASE = "tektra/testnode"


async def ask(client: SocketClient, request_id: str, text: str, **fields: Any) -> int:
    """Ask on `client`; the answer's prompt tokens."""
    reply = await client.call({"id": request_id, "cmd": "ask", "text": text, **fields})
    prompt_tokens: int = reply["result"]["prompt_tokens"]
    return prompt_tokens


async def test_two_socket_clients_at_once_keep_separate_histories(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    alone, a, b = [await SocketClient.connect(daemon.socket) for _ in range(3)]
    fresh = await ask(alone, "0", "cherry")  # system prompt + "cherry", no history
    await asyncio.gather(ask(a, "a1", "apple pie"), ask(b, "b1", "banana"))
    a_next, b_next = await asyncio.gather(ask(a, "a2", "cherry"), ask(b, "b2", "cherry"))
    # Each carries its own exchange only: "apple pie" + "You said: apple pie" is 6 words,
    # "banana" + "You said: banana" is 4.
    assert (a_next - fresh, b_next - fresh) == (6, 4)
    for client in (alone, a, b):
        await client.close()
    assert daemon.stop() == 0


async def test_the_same_session_name_shares_one_history_across_clients(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    a, b = [await SocketClient.connect(daemon.socket) for _ in range(2)]
    fresh = await ask(b, "0", "cherry")
    await ask(a, "a1", "apple pie", session="kitchen")
    assert await ask(b, "b1", "cherry", session="kitchen") - fresh == 6
    await a.close()  # a named conversation outlives the client that started it
    assert await ask(b, "b2", "cherry", session="kitchen") - fresh == 6 + 4
    await b.close()
    assert daemon.stop() == 0


async def test_new_conversation_starts_the_callers_own_or_a_named_one_afresh(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    client = await SocketClient.connect(daemon.socket)
    fresh = await ask(client, "1", "cherry")
    assert await ask(client, "2", "cherry") - fresh == 4  # "cherry" + "You said: cherry"
    reply = await client.call({"id": "3", "cmd": "new_conversation"})
    assert reply == {"id": "3", "result": {"session": None, "forgotten_exchanges": 2}}
    assert await ask(client, "4", "cherry") == fresh

    await ask(client, "5", "apple pie", session="kitchen")
    reply = await client.call({"id": "6", "cmd": "new_conversation", "session": "kitchen"})
    assert reply == {"id": "6", "result": {"session": "kitchen", "forgotten_exchanges": 1}}
    assert await ask(client, "7", "cherry", session="kitchen") == fresh
    await client.close()
    assert daemon.stop() == 0


async def test_a_connections_own_conversation_ends_when_it_disconnects(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    watcher = await SocketClient.connect(daemon.socket)
    client = await SocketClient.connect(daemon.socket)
    await ask(client, "1", "apple pie")
    status = await watcher.call({"id": "s1", "cmd": "status"})
    assert status["result"]["conversations"] == 1
    await client.close()

    # The daemon notices the hang-up on its own time: ask until it has.
    for attempt in range(200):
        status = await watcher.call({"id": f"s{attempt}", "cmd": "status"})
        if status["result"]["conversations"] == 0:
            break
        await asyncio.sleep(0.05)
    assert status["result"]["conversations"] == 0
    await watcher.close()
    assert daemon.stop() == 0


async def test_each_mqtt_ask_without_a_session_is_a_fresh_conversation(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"')
    async with listening(mosquitto, [f"{BASE}/#"]) as mqtt, mosquitto.client() as sender:
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/model")
        prompts: dict[str, int] = {}
        for request_id, extra in (("m1", ""), ("m2", ""), ("m3", ', "session": "hall"')):
            for _ in range(2 if extra else 1):
                payload = f'{{"id": "{request_id}", "text": "cherry"{extra}}}'
                await sender.publish(f"{BASE}/command/ask", payload.encode(), 1)
                answer = await mqtt.wait_for(partial(is_new_answer, request_id, prompts))
                prompts[request_id] = answer.json()["prompt_tokens"]
        assert prompts["m1"] == prompts["m2"]  # the second ask saw nothing of the first
        assert prompts["m3"] == prompts["m1"] + 4  # "hall" remembered its first exchange
    assert daemon.stop() == 0


def is_new_answer(request_id: str, seen: dict[str, int], message: Recorded) -> bool:
    """The response to `request_id` whose prompt tokens differ from the one seen before."""
    if message.topic != f"{BASE}/response" or message.json()["id"] != request_id:
        return False
    return bool(message.json()["prompt_tokens"] != seen.get(request_id))


def smollm2_daemon(directory: Path, short_dir: Path, site: Path) -> Daemon:
    config = directory / "models.toml"
    sock = short_dir / "tektra.sock"
    config.write_text(
        f'[daemon]\nsocket = "{sock}"\nnode_id = "testnode"\ndefault_model = "smollm2"\n'
        'preset = "exact"\n[audio]\nsource = "none"\n[mqtt]\nbroker = "none"\n'
        "[presets.exact]\ntemperature = 0.0\nseed = 1\nmax_tokens = 12\n"
        f'[[models]]\nid = "smollm2"\nsource = {SMOLLM2_SOURCE}\ncontext_length = 2048\n'
    )
    return Daemon(config, sock, site)


def tektra_ask(daemon: Daemon, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(daemon.site), str(ROOT)])}
    done = subprocess.run(
        [TEKTRA, "ask", *args, "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr


async def test_separate_tektra_ask_runs_do_not_see_each_others_history(
    tmp_path: Path, short_dir: Path, plugin_site: Path
) -> None:
    # The reproduction: prompt_tokens grew 40 -> 387 over separate runs.
    daemon = smollm2_daemon(tmp_path, short_dir, plugin_site)
    daemon.start()
    try:
        watcher = await SocketClient.connect(daemon.socket)
        await watcher.send({"id": "w", "cmd": "subscribe"})
        assert (await watcher.receive())["result"] == {"subscribed": True}

        async def prompt_tokens_of_next_answer() -> int:
            while True:
                reply = await watcher.receive(timeout_s=120)
                if reply.get("event") == "response":
                    tokens: int = reply["data"]["prompt_tokens"]
                    return tokens

        runs = []
        for question in ["What is the tallest mountain?"] * 3:
            await asyncio.to_thread(tektra_ask, daemon, question)
            runs.append(await prompt_tokens_of_next_answer())
        assert runs[0] == runs[1] == runs[2]

        named = []
        for _ in range(2):
            await asyncio.to_thread(
                tektra_ask, daemon, "What is the tallest mountain?", "--session", "trip"
            )
            named.append(await prompt_tokens_of_next_answer())
        assert named[0] == runs[0] < named[1]  # `--session` continues its conversation
        await watcher.close()
    finally:
        assert daemon.stop() == 0


async def test_new_conversation_over_mqtt_starts_the_named_or_else_the_spoken_one_afresh(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"')
    async with listening(mosquitto, [f"{BASE}/#"]) as mqtt, mosquitto.client() as sender:
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/model")
        await sender.publish(
            f"{BASE}/command/ask", b'{"id": 1, "text": "hi", "session": "hall"}', 1
        )
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/response")
        await sender.publish(f"{BASE}/command/new_conversation", b'{"id": 2, "session": "hall"}', 1)
        await sender.publish(f"{BASE}/command/new_conversation", b'{"id": 3}', 1)
        await mqtt.wait_until(lambda: len(mqtt.on(f"{BASE}/reply")) == 2)
        replies = sorted((m.json() for m in mqtt.on(f"{BASE}/reply")), key=lambda r: r["id"])
        assert [r["result"] for r in replies] == [
            {"session": "hall", "forgotten_exchanges": 1},
            # No caller identity over MQTT: Home Assistant's button means the spoken conversation.
            {"session": "voice", "forgotten_exchanges": 0},
        ]
    assert daemon.stop() == 0
