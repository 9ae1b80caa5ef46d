"""The hub's side of the satellite contract, spoken to over MQTT as a satellite speaks it (the
README's topics and payloads): a request's audio in, the spoken answer out to that satellite
only; the louder of two wakes kept; a bad message logged in words while the hub serves on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import aiomqtt
import numpy as np
import pytest

from daemon.core.config.schema import SttSettings
from daemon.frontends.satellites.wire import Heard
from pipelines.audio import Resampler, float_to_pcm, pcm_to_float
from pipelines.stt import load_transcriber
from tests.daemon.conftest import Daemon, Mosquitto, MqttRecorder, SocketClient, listening
from tests.pipelines.conftest import Pulse, clip, silence, words
from tests.satellite.conftest import NODE, start_hub, topic, until

pytestmark = pytest.mark.integration

SPEAKS_ALL = 'engine = "espeak"\nspeak = "all"'


async def send_request(client: aiomqtt.Client, satellite: str, wake: str, name: str) -> None:
    """A request as a satellite sends it: s16le 16 kHz chunks, then an empty payload."""
    pcm = float_to_pcm(np.concatenate([silence(0.3), clip(name), silence(0.3)]))
    for start in range(0, len(pcm), 16_000):
        await client.publish(topic(satellite, f"audio/{wake}"), pcm[start : start + 16_000], 1)
    await client.publish(topic(satellite, f"audio/{wake}"), b"", 1)


def wake(wake_id: str, loudness_db: float) -> bytes:
    return Heard(wake_id, "okay_nabu", 0.97, loudness_db, time.time()).payload()


def spoken(recorder: MqttRecorder, satellite: str) -> str:
    """The words of the answer played to `satellite` (its `play/<rate>` chunks, transcribed)."""
    chunks = [m for m in recorder.messages if m.topic.startswith(topic(satellite, "play/"))]
    rate = int(chunks[0].topic.rsplit("/", 1)[1])
    audio = Resampler(rate)(pcm_to_float(b"".join(m.payload for m in chunks)))
    return words(load_transcriber(SttSettings()).transcribe(audio).text)


def answered(recorder: MqttRecorder, satellite: str) -> bool:
    """The end of an answer (an empty `play` payload) reached `satellite`."""
    return any(
        m.topic.startswith(topic(satellite, "play/")) and not m.payload for m in recorder.messages
    )


async def test_a_request_is_answered_aloud_to_the_satellite_that_asked_only(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    hub = start_hub(make_daemon, mosquitto)
    watched = [topic("+", "play/+"), topic("+", "answer"), topic("+", "transcript")]
    async with listening(mosquitto, watched) as recorder, mosquitto.client() as satellite:
        await satellite.publish(topic("kitchen", "wake"), wake("w1", -20.0), 1)
        await send_request(satellite, "kitchen", "w1", "time")
        await recorder.wait_until(lambda: answered(recorder, "kitchen"), 120)
        answer = recorder.on(topic("kitchen", "answer"))[0].json()
        assert (answer["wake"], words(answer["transcript"])) == ("w1", "what time is it")
        assert words(answer["text"]) == "you said what time is it"
        assert spoken(recorder, "kitchen") == "you said what time is it"
        assert [m.topic for m in recorder.messages if "/hall/" in m.topic] == []
        await satellite.publish(topic("kitchen", "status"), b"online", 1, retain=True)
        await until(lambda: "satellite kitchen is online" in hub.log)
    client = await SocketClient.connect(hub.socket)
    status = (await client.call({"id": 1, "cmd": "status"}))["result"]["satellites"]
    assert status == {"connected": True, "known": {"kitchen": "online"}, "answered": 1}
    await client.close()
    # The last transcript stays for whoever looks later (Home Assistant's sensor).
    async with listening(mosquitto, [topic("kitchen", "transcript")]) as later:
        kept = await later.wait_for(lambda m: m.retain)
        assert words(kept.json()["text"]) == "what time is it"
    assert hub.stop() == 0


async def test_of_one_wake_heard_in_two_rooms_the_louder_is_answered_once(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    hub = start_hub(make_daemon, mosquitto)
    watched = [topic("+", "play/+"), topic("+", "answer"), topic("+", "cancel")]
    async with listening(mosquitto, watched) as recorder, mosquitto.client() as satellite:
        await satellite.publish(topic("hall", "wake"), wake("hall-1", -32.0), 1)  # first, softer
        await satellite.publish(topic("kitchen", "wake"), wake("kitchen-1", -21.5), 1)
        await recorder.wait_for(lambda m: m.topic == topic("hall", "cancel"), 30)
        # Both send their request (the hall's crossed the `cancel`): only one is answered.
        await send_request(satellite, "hall", "hall-1", "time")
        await send_request(satellite, "kitchen", "kitchen-1", "time")
        await recorder.wait_until(lambda: answered(recorder, "kitchen"), 120)
        await asyncio.sleep(3)  # time enough for a second answer, were one coming
        assert recorder.on(topic("hall", "cancel"))[0].json() == {
            "wake": "hall-1",
            "reason": "satellite kitchen heard it louder",
        }
        assert [m.topic for m in recorder.messages if "/hall/" in m.topic] == [
            topic("hall", "cancel")
        ]
        assert len(recorder.on(topic("kitchen", "answer"))) == 1
    assert "satellite kitchen heard the wake kitchen-1 louder (-21.5 dBFS)" in hub.log
    assert hub.stop() == 0


async def test_bad_satellite_messages_are_logged_in_words_and_the_hub_serves_on(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    hub = start_hub(make_daemon, mosquitto)
    watched = [topic("+", "play/+")]
    async with listening(mosquitto, watched) as recorder, mosquitto.client() as satellite:
        await satellite.publish(topic("kitchen", "wake"), b"\xff not json", 1)
        await satellite.publish(topic("kitchen", "wake"), json.dumps({"wake": "a b"}), 1)
        await satellite.publish(topic("kitchen", "audio/w2"), b"\x01\x02\x03", 1)  # odd length
        await satellite.publish(topic("kitchen", "audio/w3"), b"", 1)  # an end, nothing before
        await send_request(satellite, "kitchen", "w4", "time")
        await recorder.wait_until(lambda: answered(recorder, "kitchen"), 120)
    log = hub.log
    for said in [
        "satellite kitchen sent a message the hub cannot use: a `wake` message is not JSON",
        "satellite kitchen sent a message the hub cannot use: a `wake` message needs `wake`",
        "satellite kitchen sent a message the hub cannot use: an `audio` chunk holds a partial",
        "satellite kitchen sent a message the hub cannot use: a request without audio",
    ]:
        assert said in log
    assert "Traceback" not in log
    assert hub.stop() == 0


async def test_the_hubs_own_speaker_never_says_a_satellites_answer(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto, pulse: Pulse
) -> None:
    # A hub that reads every answer aloud (`speak = "all"`) on a loudspeaker of its own.
    hub = make_daemon(f'broker = "{mosquitto.url}"', tts=SPEAKS_ALL, start=False)
    hub.env.update(XDG_RUNTIME_DIR=pulse.env["XDG_RUNTIME_DIR"], HOME=pulse.env["HOME"])
    hub.start()
    spoken_here = f"tektra/{NODE}/response/spoken"
    watched = [topic("+", "play/+"), f"tektra/{NODE}/response/spoken"]
    async with listening(mosquitto, watched) as recorder, mosquitto.client() as satellite:
        await send_request(satellite, "kitchen", "w5", "time")
        await recorder.wait_until(lambda: answered(recorder, "kitchen"), 120)
        # Asked over MQTT: the hub's speaker says it (and so would have said the satellite's).
        ask = {"id": "typed", "text": "The lights are on."}
        await satellite.publish(f"tektra/{NODE}/command/ask", json.dumps(ask), 1)
        await recorder.wait_for(lambda m: m.topic == spoken_here, 60)
    assert [m.json()["id"] for m in recorder.on(spoken_here)] == ["typed"]
    assert hub.stop() == 0
