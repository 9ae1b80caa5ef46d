"""The `cancel` command: stop the answer running now (or the one named by `target`), engine too.

A cancelled answer ends like any other, with what was said so far and `finish_reason`
`cancelled`; the next question is answered as usual.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.daemon.conftest import Daemon, Mosquitto, SocketClient, listening
from tests.daemon.test_shutdown import LONG_QUESTION, llama_config, wait_for_state

BASE = "tektra/testnode"
LONG = " ".join(["word"] * 40)  # 40 chunks at 0.5 s: 20 s if nothing stops it


async def test_cancel_ends_the_running_answer_with_a_clear_finish_and_the_next_one_works(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', delay_s=0.5)
    asker = await SocketClient.connect(daemon.socket)
    other = await SocketClient.connect(daemon.socket)
    await asker.send({"id": "a", "cmd": "ask", "text": LONG})
    assert await asker.receive() == {"id": "a", "chunk": "You"}
    assert await other.call({"id": "c", "cmd": "cancel"}) == {
        "id": "c",
        "result": {"cancelled": ["a"]},
    }
    result = (await asker.until_done("a", timeout_s=5))[-1]["result"]
    assert (result["text"], result["finish_reason"]) == ("You", "cancelled")
    # Nothing runs now: saying so is the truth, not an error.
    assert await other.call({"id": "c2", "cmd": "cancel"}) == {
        "id": "c2",
        "result": {"cancelled": []},
    }
    await asker.send({"id": "b", "cmd": "ask", "text": "and now?"})
    again = (await asker.until_done("b", timeout_s=20))[-1]["result"]
    assert (again["text"], again["finish_reason"]) == ("You said: and now?", "stop")
    status = await other.call({"id": "s", "cmd": "status"})
    assert (status["result"]["state"], status["result"]["answers"]) == ("idle", 2)
    await asker.close()
    await other.close()
    assert daemon.stop() == 0


async def test_stop_stops_the_answer_being_written_even_on_a_daemon_that_does_not_speak(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', delay_s=0.5)  # [tts] engine = "none"
    asker = await SocketClient.connect(daemon.socket)
    await asker.send({"id": "a", "cmd": "ask", "text": LONG})
    assert await asker.receive() == {"id": "a", "chunk": "You"}
    stopper = await SocketClient.connect(daemon.socket)
    assert await stopper.call({"id": "s", "cmd": "stop"}) == {
        "id": "s",
        "result": {"stopped": [], "cancelled": ["a"]},
    }
    result = (await asker.until_done("a", timeout_s=5))[-1]["result"]
    assert result["finish_reason"] == "cancelled"
    await asker.close()
    await stopper.close()
    assert daemon.stop() == 0


async def test_cancel_with_a_target_stops_that_answer_even_while_it_waits_its_turn(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', delay_s=0.5)
    first = await SocketClient.connect(daemon.socket)
    second = await SocketClient.connect(daemon.socket)
    await first.send({"id": 1, "cmd": "ask", "text": LONG})
    assert await first.receive() == {"id": 1, "chunk": "You"}
    await second.send({"id": "queued", "cmd": "ask", "text": LONG})  # waits for the first
    control = await SocketClient.connect(daemon.socket)
    assert (await control.call({"id": "c", "cmd": "cancel", "target": "queued"}))["result"] == {
        "cancelled": ["queued"]
    }
    queued = (await second.until_done("queued", timeout_s=5))[-1]["result"]
    assert (queued["text"], queued["finish_reason"]) == ("", "cancelled")
    assert (await control.call({"id": "c", "cmd": "cancel", "target": 1}))["result"] == {
        "cancelled": [1]  # the id with the type it was sent with
    }
    assert (await first.until_done(1, timeout_s=5))[-1]["result"]["finish_reason"] == "cancelled"
    for client in (first, second, control):
        await client.close()
    assert daemon.stop() == 0


async def test_cancel_over_mqtt_stops_the_answer_and_the_response_says_cancelled(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"', delay_s=0.5)
    async with listening(mosquitto, [f"{BASE}/#"]) as mqtt, mosquitto.client() as sender:
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/model")
        ask = json.dumps({"id": "m1", "text": LONG}).encode()
        await sender.publish(f"{BASE}/command/ask", ask, 1)
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/response/chunk")
        await sender.publish(f"{BASE}/command/cancel", b'{"id": "x", "target": "m1"}', 1)
        reply = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/reply")
        assert reply.json() == {"id": "x", "command": "cancel", "result": {"cancelled": ["m1"]}}
        response = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/response", timeout_s=5)
        assert (response.json()["id"], response.json()["finish_reason"]) == ("m1", "cancelled")
        assert response.json()["text"] == "You"
    assert daemon.stop() == 0


async def test_cancel_stops_llama_cpp_while_it_reads_a_long_prompt(
    make_daemon: Callable[..., Daemon], smollm2_path: Path
) -> None:
    daemon = make_daemon('broker = "none"', start=False)
    llama_config(daemon, smollm2_path, shutdown_timeout_s=60.0)
    daemon.start()
    asker = await SocketClient.connect(daemon.socket)
    await asker.send({"id": "long", "cmd": "ask", "text": LONG_QUESTION})
    await wait_for_state(daemon, "thinking")
    control = await SocketClient.connect(daemon.socket)
    assert (await control.call({"id": "c", "cmd": "cancel"}))["result"] == {"cancelled": ["long"]}
    # Minutes of reading and answering were left: only a stopped engine ends it within this.
    result = (await asker.until_done("long", timeout_s=20))[-1]["result"]
    assert result["finish_reason"] == "cancelled"
    await asker.send({"id": "next", "cmd": "ask", "text": "Say hello.", "preset": "fast"})
    after = (await asker.until_done("next", timeout_s=120))[-1]["result"]
    assert after["text"] and after["finish_reason"] in ("stop", "length")
    await asker.close()
    await control.close()
    assert daemon.stop(timeout_s=20) == 0
