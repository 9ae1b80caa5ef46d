"""`tektra satellite`: the capture-and-speak process of one room.

Microphone → ears (VAD, segmenter, wake word) → the request's audio to the hub over MQTT; the
hub's spoken answer → the player. It loads no Whisper and no language model: a Raspberry Pi
class box runs it (Silero VAD and microWakeWord cost a few per cent of one core). Half duplex as
the daemon: while the answer plays (and `[tts] hold_ms` after), the microphone hears silence.

The broker link is `connection.stay_connected`: a hub that goes away is retried with backoff, and
the satellite says `online` again (retained, with `offline` as its last will) when it is back.
Requests heard while the broker is away are dropped: an answer long after the question is worse
than none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass

import aiomqtt
import numpy as np

from daemon.core.config.schema import TektraConfig
from daemon.core.supervisor import run_together
from daemon.frontends.satellites import wire
from daemon.frontends.satellites.connection import new_client, stay_connected
from daemon.frontends.satellites.discovery import (
    SatelliteState,
    discovery_topic,
    satellite_payload,
)
from daemon.frontends.satellites.ears import Ears, Request
from daemon.speech.engines import Audio
from daemon.speech.player import OutputLost, Player
from pipelines.audio import RATE, Samples, float_to_pcm, pcm_to_float
from pipelines.events import DeviceState
from pipelines.microphone import Microphone
from pipelines.segmenter import SpeechSegmenter
from pipelines.vad import shared_vad
from pipelines.wakeword import MicroWakeWordDetector

log = logging.getLogger("tektra.satellite")

OUTBOX_SIZE = 256
"""Messages for the hub waiting for the broker; beyond that the oldest are dropped."""
STALE_S = 10.0
"""A wake or request older than this when the broker comes back is not sent."""
ANSWER_TIMEOUT_S = 120.0
"""After a request, how long the satellite waits for the hub's answer before it stops waiting."""


@dataclass(frozen=True)
class SatelliteSettings:
    """Who this satellite is and where its hub is (the CLI's flags)."""

    id: str
    """Its id in topics and in Home Assistant (`kitchen`)."""
    room: str
    """The room it serves: its Home Assistant area."""
    hub_node: str
    """The hub's `[daemon] node_id`: the topics are `<topic_prefix>/<hub_node>/satellite/<id>/…`."""
    input: str = "auto"
    """The microphone: `auto`, a device name or index (as `[audio] source`)."""
    output: str = "auto"
    """The speaker: `auto`, a device name or index (as `[tts] output`)."""


class Station:
    """One satellite: its ears, its voice, its link to the hub."""

    def __init__(
        self,
        config: TektraConfig,
        settings: SatelliteSettings,
        *,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.config, self.settings, self.login = config, settings, login
        self.base = wire.base(config.mqtt.topic_prefix, settings.hub_node, settings.id)
        self.player = Player(
            settings.output, volume=config.tts.volume, hold_s=config.tts.hold_ms / 1000
        )
        self.ears: Ears | None = None
        self.mic_on = True
        self.state: SatelliteState = "idle"
        self._outbox: asyncio.Queue[tuple[float, str, bytes, bool]] = asyncio.Queue(OUTBOX_SIZE)
        self._waiting: asyncio.Task[None] | None = None
        self._finishing: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Until cancelled: listen, send, speak; keep the broker."""
        self.ears = await asyncio.to_thread(self._make_ears)
        source = self.settings.input
        microphone = Microphone(source, self._deliver, self._on_device, self.config.audio.block_ms)
        log.info(
            "satellite %s (%s) for hub %s: listening for %s",
            self.settings.id,
            self.settings.room,
            self.settings.hub_node,
            self.config.audio.wake.model,
        )
        try:
            await run_together(microphone.run(), self.player.run(), self._link())
        finally:
            for task in (self._finishing, self._waiting):
                if task is not None:
                    task.cancel()

    def _make_ears(self) -> Ears:
        audio = self.config.audio
        vad = audio.vad
        segmenter = SpeechSegmenter(
            threshold=vad.threshold,
            min_speech_s=vad.min_speech_ms / 1000,
            min_silence_s=vad.min_silence_ms / 1000,
            pre_roll_s=vad.pre_roll_ms / 1000,
            max_utterance_s=vad.max_utterance_s,
        )
        detector = MicroWakeWordDetector(audio.wake.model, audio.wake.refractory_s)
        return Ears(detector, shared_vad().stream(), segmenter, follow_up_s=audio.wake.follow_up_s)

    # --- capture -------------------------------------------------------------------------------

    def _deliver(self, block: Samples) -> None:
        if self.ears is None or not self.mic_on:
            return
        if self.player.holding():  # half duplex: never hear its own answer
            block = np.zeros_like(block)
        for item in self.ears.feed(block):
            if isinstance(item, Request):
                self._send_request(item)
            else:
                log.info(
                    "heard %s (score %.2f, %.1f dBFS)", item.model, item.score, item.loudness_db
                )
                self._send("wake", item.payload())
                self._set_state("listening")

    def _send_request(self, request: Request) -> None:
        pcm = float_to_pcm(request.audio)
        step = 2 * wire.CHUNK_SAMPLES
        for start in range(0, len(pcm), step):
            self._send(f"audio/{request.wake}", pcm[start : start + step])
        self._send(f"audio/{request.wake}", b"")  # the end of the request
        log.info("sent %.1f s of request %s to the hub", len(request.audio) / RATE, request.wake)
        self._set_state("waiting")

    def _on_device(self, event: DeviceState) -> None:
        return None  # the microphone logs its own states; a satellite has no bus to tell

    # --- the link ------------------------------------------------------------------------------

    def _send(self, sub: str, payload: bytes, *, retain: bool = False) -> None:
        """Queue a message for the hub: one queue, so the state follows what it is about."""
        if self._outbox.full():
            self._outbox.get_nowait()
        self._outbox.put_nowait((time.monotonic(), f"{self.base}/{sub}", payload, retain))

    def _set_state(self, state: SatelliteState) -> None:
        if state != self.state:
            self.state = state
            self._send("state", state.encode(), retain=True)
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
        if state == "waiting":
            self._waiting = asyncio.get_running_loop().create_task(self._hub_silent())

    async def _hub_silent(self) -> None:
        """The hub always ends an answer, even an empty one; after its silence, listen again."""
        await asyncio.sleep(ANSWER_TIMEOUT_S)
        log.warning("the hub did not answer within %.0f s; listening again", ANSWER_TIMEOUT_S)
        self._waiting = None
        self._set_state("idle" if self.mic_on else "muted")

    async def _link(self) -> None:
        will = aiomqtt.Will(f"{self.base}/status", b"offline", 1, True)
        client_id = f"tektra-{self.settings.hub_node}-satellite-{self.settings.id}"
        mqtt = self.config.mqtt

        def make() -> aiomqtt.Client:
            return new_client(mqtt, client_id, login=self.login, will=will)

        await stay_connected(mqtt, make, self._session, who=f"satellite {self.settings.id}")

    async def _session(self, client: aiomqtt.Client) -> None:
        mqtt = self.config.mqtt
        await client.subscribe(f"{self.base}/play/+", qos=1)
        await client.subscribe(f"{self.base}/cancel", qos=1)
        await client.subscribe(f"{self.base}/mic/set", qos=1)
        if mqtt.discovery:
            await client.subscribe(f"{mqtt.discovery_prefix}/status", qos=1)
            await self._publish_discovery(client)
        await client.publish(f"{self.base}/state", self.state.encode(), qos=1, retain=True)
        mic = b"ON" if self.mic_on else b"OFF"
        await client.publish(f"{self.base}/mic", mic, qos=1, retain=True)
        await client.publish(f"{self.base}/status", b"online", qos=1, retain=True)
        try:
            await run_together(self._drain(client), self._receive(client))
        except asyncio.CancelledError:
            # Stopping: a clean disconnect sends no last will, so say it ourselves.
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(f"{self.base}/status", b"offline", 1, True, timeout=1)
            raise

    async def _publish_discovery(self, client: aiomqtt.Client) -> None:
        s, prefix = self.settings, self.config.mqtt.discovery_prefix
        payload = satellite_payload(self.base, s.hub_node, s.id, s.room)
        topic = discovery_topic(prefix, s.hub_node, s.id)
        await client.publish(topic, json.dumps(payload).encode(), qos=1, retain=True)

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            queued_at, topic, payload, retain = await self._outbox.get()
            if time.monotonic() - queued_at > STALE_S:
                continue
            await client.publish(topic, payload, qos=1, retain=retain)

    async def _receive(self, client: aiomqtt.Client) -> None:
        ha_status = f"{self.config.mqtt.discovery_prefix}/status"
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic == ha_status:
                if payload.strip() == b"online" and self.config.mqtt.discovery:
                    await self._publish_discovery(client)
                continue
            if not topic.startswith(f"{self.base}/"):
                continue  # the embedded broker sends every retained message to a new subscription
            sub = topic[len(self.base) + 1 :]
            try:
                await self._on_message(sub, payload, message.retain)
            except wire.BadPayload as exc:
                log.warning("ignored a message on %s: %s", topic, exc.message)

    async def _on_message(self, sub: str, payload: bytes, retained: bool) -> None:
        if sub == "mic/set":
            if retained:
                return  # an old command replayed by the broker
            wanted = payload.strip().upper()
            if wanted not in (b"ON", b"OFF"):
                raise wire.BadPayload("`mic/set` takes ON or OFF")
            self.mic_on = wanted == b"ON"
            log.info("microphone %s", "on" if self.mic_on else "off (muted)")
            self._send("mic", wanted, retain=True)
            self._set_state("idle" if self.mic_on else "muted")
        elif sub == "cancel":
            try:
                wake = json.loads(payload).get("wake")
            except (ValueError, AttributeError) as exc:
                raise wire.BadPayload("`cancel` must be a JSON object with `wake`") from exc
            if self.ears is not None and isinstance(wake, str):
                self.ears.forget(wake)
                log.info("another room answers wake %s", wake)
                if self.state == "listening":
                    self._set_state("idle" if self.mic_on else "muted")
        elif sub.startswith("play/"):
            await self._play(wire.play_rate(sub[len("play/") :]), payload)

    async def _play(self, rate: int, payload: bytes) -> None:
        if not payload:  # the answer is complete
            if self._finishing is None or self._finishing.done():
                self._finishing = asyncio.create_task(self._finish_answer())
            return
        if len(payload) % 2:
            raise wire.BadPayload("a `play` chunk holds a partial sample")
        self._set_state("speaking")
        try:
            await self.player.play(Audio(pcm_to_float(payload), rate))
        except OutputLost as exc:
            log.warning("%s", exc.message)

    async def _finish_answer(self) -> None:
        await self.player.drained()
        self._set_state("idle" if self.mic_on else "muted")
        if self.ears is not None:
            self.ears.listen_without_wake(uuid.uuid4().hex[:12])  # a follow-up needs no wake
