"""The hub's side of the satellites, inside `tektra run`: one wake answered once, in its room.

Wakes: the first `wake` opens a round of `WAKE_WINDOW_S` (by arrival at the hub: satellites'
clocks may disagree); every wake arriving within it is the same spoken wake heard in another
room. When it closes the LOUDER one is kept (its `loudness_db`: the satellite nearest the
speaker; the earlier arrival on a tie) and every other satellite of the round gets `cancel`.
A request whose wake the hub never saw (a follow-up after an answer) competes with nobody.

Requests: the audio of a kept wake is transcribed by the daemon's own Whisper (the model the
voice pipeline and Wyoming share: `load_transcriber` caches it), asked through the assistant in
one conversation per satellite, and said sentence by sentence with the daemon's own voice engine
as the answer streams: each sentence goes to the asking satellite's `play/<rate>` topic, and only
there. The hub's own speaker never says it. A satellite's bad message is logged in words and
dropped; nothing else stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import numpy as np

from daemon.assistant.commands import Commands
from daemon.assistant.protocol import AskArgs, Request
from daemon.core.config.schema import TektraConfig
from daemon.core.errors import TektraError
from daemon.core.events import new_request_id
from daemon.core.supervisor import cancel_and_wait
from daemon.frontends.satellites import wire
from daemon.frontends.satellites.connection import new_client, stay_connected
from daemon.speech.engines import SpeechFailed
from daemon.speech.speaker import Speaker
from daemon.speech.text import SentenceSplitter
from pipelines.audio import RATE, Resampler, float_to_pcm, pcm_to_float
from pipelines.stt import Transcriber, load_transcriber

log = logging.getLogger("tektra.satellites")

FRONT_END = "satellite"
WAKE_WINDOW_S = 1.0
"""Wakes arriving this close to the first one are the same spoken wake heard in other rooms."""
MAX_REQUEST_S = 30.0
"""A request longer than this is refused (a satellite's segmenter cuts at 15 s by default)."""
FORGET_S = 60.0
"""Wakes and unfinished requests older than this are forgotten."""
PLAY_CHUNK_S = 0.5
"""Audio per `play` message."""


@dataclass
class _Round:
    """Wakes heard within one window: the same spoken wake, in several rooms."""

    opened: float
    heard: list[tuple[str, wire.Heard]] = field(default_factory=list)
    """(satellite, wake), in order of arrival."""
    kept: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    """The id of the wake kept, once the window closed."""


@dataclass
class _Incoming:
    began: float
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


class SatelliteHub:
    """Serves every satellite of this node: dedupes wakes, answers requests to their room."""

    def __init__(
        self,
        config: TektraConfig,
        commands: Commands,
        speaker: Speaker,
        *,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.config, self.commands, self.speaker, self.login = config, commands, speaker, login
        self.node = config.daemon.node_id
        self.root = f"{config.mqtt.topic_prefix}/{self.node}/satellite"
        self._client: aiomqtt.Client | None = None
        self._round: _Round | None = None
        self._wakes: dict[str, tuple[_Round, str]] = {}
        self._incoming: dict[tuple[str, str], _Incoming] = {}
        self._jobs: set[asyncio.Task[None]] = set()
        self._transcriber: Transcriber | None = None
        self._loading = asyncio.Lock()
        self._said_voiceless = False
        self.answered = 0
        self.seen: dict[str, str] = {}
        """Each satellite that said its `status`, with what it said (`online`, `offline`)."""

    def status(self) -> dict[str, Any]:
        """For `tektra status`: the satellites' broker link, who they are, answers given."""
        return {
            "satellites": {
                "connected": self._client is not None,
                "known": dict(sorted(self.seen.items())),
                "answered": self.answered,
            }
        }

    async def run(self) -> None:
        mqtt = self.config.mqtt
        client_id = f"{mqtt.client_id or f'tektra-{self.node}'}-satellites"

        def make() -> aiomqtt.Client:
            return new_client(mqtt, client_id, login=self.login)

        try:
            await stay_connected(mqtt, make, self._session, who="satellites")
        finally:
            await cancel_and_wait(*self._jobs)

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(f"{self.root}/+/wake", qos=1)
        await client.subscribe(f"{self.root}/+/audio/+", qos=1)
        await client.subscribe(f"{self.root}/+/status", qos=1)
        self._client = client
        try:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                self._on_message(message.topic.value, payload)
        finally:
            self._client = None

    # --- incoming ------------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        if not topic.startswith(f"{self.root}/"):
            return  # the embedded broker sends every retained message to a new subscription
        parts = topic[len(self.root) + 1 :].split("/")
        satellite = parts[0]
        try:
            if not wire.valid_id(satellite):
                raise wire.BadPayload("its id must be letters, digits, - and _ (at most 64)")
            if parts[1:] == ["status"]:
                said = payload.decode(errors="replace")[:20]
                if payload:  # an empty retained message only clears the topic
                    self.seen[satellite] = said
                log.info("satellite %s is %s", satellite, said)
            elif parts[1:] == ["wake"]:
                self._on_wake(satellite, wire.Heard.parse(payload))
            elif len(parts) == 3 and parts[1] == "audio":
                self._on_audio(satellite, parts[2], payload)
        except wire.BadPayload as exc:
            log.warning(
                "satellite %.64s sent a message the hub cannot use: %s", satellite, exc.message
            )

    def _on_wake(self, satellite: str, heard: wire.Heard) -> None:
        now = time.monotonic()
        self._forget_old(now)
        current = self._round
        if current is None or now - current.opened > WAKE_WINDOW_S:
            current = self._round = _Round(now)
            self._spawn(self._close_round(current), "satellite wake round")
        current.heard.append((satellite, heard))
        self._wakes[heard.wake] = (current, satellite)
        log.info(
            "satellite %s heard %s (%.1f dBFS)",
            satellite,
            heard.model or "a wake",
            heard.loudness_db,
        )

    async def _close_round(self, current: _Round) -> None:
        await asyncio.sleep(WAKE_WINDOW_S)
        # Louder wins: the room nearest the speaker. max() keeps the first of equals: the earlier.
        satellite, kept = max(current.heard, key=lambda entry: entry[1].loudness_db)
        current.kept.set_result(kept.wake)
        for other, heard in current.heard:
            if heard.wake == kept.wake:
                continue
            log.info(
                "satellite %s heard the wake %s louder (%.1f dBFS) than %s (%.1f dBFS): "
                "%s answers",
                satellite, kept.wake, kept.loudness_db, other, heard.loudness_db, satellite,
            )  # fmt: skip
            reason = f"satellite {satellite} heard it louder"
            await self._publish(
                f"{self.root}/{other}/cancel", json.dumps({"wake": heard.wake, "reason": reason})
            )

    def _on_audio(self, satellite: str, wake: str, payload: bytes) -> None:
        if not wire.valid_id(wake):
            raise wire.BadPayload("an `audio` topic must end in the wake's id")
        key = (satellite, wake)
        incoming = self._incoming.setdefault(key, _Incoming(time.monotonic()))
        if payload:
            if len(payload) % 2:
                del self._incoming[key]
                raise wire.BadPayload("an `audio` chunk holds a partial sample (s16le expected)")
            incoming.chunks.append(payload)
            incoming.size += len(payload)
            if incoming.size > MAX_REQUEST_S * RATE * 2:
                del self._incoming[key]
                raise wire.BadPayload(f"a request longer than {MAX_REQUEST_S:g} s was dropped")
            return
        del self._incoming[key]
        if not incoming.size:
            raise wire.BadPayload("a request without audio")
        audio = b"".join(incoming.chunks)
        self._spawn(self._answer(satellite, wake, audio), f"satellite {satellite} request")

    def _forget_old(self, now: float) -> None:
        self._wakes = {w: v for w, v in self._wakes.items() if now - v[0].opened < FORGET_S}
        self._incoming = {k: v for k, v in self._incoming.items() if now - v.began < FORGET_S}

    # --- answering -----------------------------------------------------------------------------

    async def _answer(self, satellite: str, wake: str, pcm: bytes) -> None:
        session = f"satellite-{satellite}"
        competed = self._wakes.pop(wake, None)
        if competed is not None:
            kept = await competed[0].kept
            if kept != wake:
                log.info("dropped satellite %s's request: another room answers it", satellite)
                return
            # A new wake starts afresh; a follow-up (a wake never announced) continues.
            self.commands.close_conversation(session)
        base = f"{self.root}/{satellite}"
        try:
            text = await self._transcribe(pcm)
        except TektraError as exc:  # no Whisper model (stt_unavailable)
            log.error("satellite %s: cannot transcribe: %s", satellite, exc.message)
            await self._publish(f"{base}/play/{RATE}", b"")
            return
        except (RuntimeError, ValueError, OSError) as exc:
            log.error("satellite %s: speech-to-text failed: %s", satellite, exc)
            await self._publish(f"{base}/play/{RATE}", b"")
            return
        log.info("satellite %s heard: %r", satellite, text)
        transcript = json.dumps({"wake": wake, "text": text})
        await self._publish(f"{base}/transcript", transcript, retain=True)
        if not text:
            await self._publish(f"{base}/play/{RATE}", b"")
            return
        request_id = new_request_id(FRONT_END)
        self.speaker.say_elsewhere(request_id)  # its room says it, not the hub's speaker
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        splitter = SentenceSplitter()

        def on_chunk(piece: str) -> None:
            for sentence in splitter.feed(piece):
                sentences.put_nowait(sentence)

        voice = asyncio.create_task(self._say(base, sentences))
        try:
            request = Request(request_id, "ask", AskArgs(text=text), FRONT_END)
            outcome = await self.commands.run_request(request, on_chunk, session=session)
            for sentence in splitter.finish():
                sentences.put_nowait(sentence)
        finally:
            sentences.put_nowait(None)
            rate = await voice
        answer = outcome.result.get("text", "") if outcome.result is not None else ""
        if outcome.result is None:
            log.warning(
                "satellite %s: no answer: %s [%s]", satellite, outcome.message, outcome.code
            )
        await self._publish(
            f"{base}/answer", json.dumps({"wake": wake, "transcript": text, "text": answer})
        )
        await self._publish(f"{base}/play/{rate}", b"")  # the end of the spoken answer
        if outcome.result is not None:
            self.answered += 1

    async def _transcribe(self, pcm: bytes) -> str:
        async with self._loading:
            if self._transcriber is None:
                self._transcriber = await asyncio.to_thread(load_transcriber, self.config.stt)
        heard = await asyncio.to_thread(self._transcriber.transcribe, pcm_to_float(pcm))
        return heard.text.strip()

    async def _say(self, base: str, sentences: asyncio.Queue[str | None]) -> int:
        """Speak each sentence to `base`'s `play` as it comes; the rate the answer was sent at."""
        engine = self.speaker.engine
        rate: int | None = None
        while (sentence := await sentences.get()) is not None:
            if engine is None:
                if not self._said_voiceless:
                    self._said_voiceless = True
                    log.warning("satellites get no spoken answers: [tts] engine is `none`")
                continue
            try:
                audio = await engine.synthesize(sentence)
            except SpeechFailed as exc:
                log.warning("not spoken to the satellite: %s", exc.message)
                continue
            rate = rate or audio.rate  # the first sentence's rate is the answer's
            samples = (audio.samples * self.config.tts.volume).astype(np.float32)
            if audio.rate != rate:  # a fallback engine speaking at another rate
                samples = Resampler(audio.rate, rate)(samples)
            pcm = float_to_pcm(samples)
            step = 2 * round(PLAY_CHUNK_S * rate)
            for start in range(0, len(pcm), step):
                await self._publish(f"{base}/play/{rate}", pcm[start : start + step])
        return rate or RATE

    # --- outgoing ------------------------------------------------------------------------------

    async def _publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        """Sent now or never: an answer delivered after the broker came back would be late."""
        client = self._client
        if client is None:
            log.warning("the MQTT broker is away: %s not sent", topic)
            return
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(topic, payload, qos=1, retain=retain)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        job = asyncio.create_task(coroutine, name=name)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
