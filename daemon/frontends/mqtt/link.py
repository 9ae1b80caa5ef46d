"""The MQTT link: the one place that connects, reconnects, publishes and takes commands.

Bus events become messages under `<topic_prefix>/<node_id>/` and wait in the outbox, which is
drained while the broker is there. A lost broker flips `connected`, publishes a `mqtt` event on the
bus, and the link retries with jittered exponential backoff; answers produced meanwhile are
delivered after the reconnect. Commands come in on `command/<name>`; each is answered on `reply`
(or `error`) with the request's `id`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiomqtt

from daemon.assistant.commands import COMMANDS, Commands
from daemon.assistant.protocol import Request
from daemon.core.broker import broker_address, password, tls_context
from daemon.core.config.schema import MqttSettings
from daemon.core.config.urls import redact
from daemon.core.errors import TektraError
from daemon.core.events import (
    BrokerLink,
    ErrorRaised,
    Event,
    EventBus,
    ModelChanged,
    PartialTranscript,
    RequestId,
    ResponseChunk,
    ResponseDone,
    StateChanged,
    TranscriptReady,
    new_request_id,
)
from daemon.core.supervisor import backoff_delays, cancel_and_wait, run_together
from daemon.frontends.mqtt.discovery import discovery_payload
from daemon.frontends.mqtt.hermes import hermes_messages
from daemon.frontends.mqtt.outbox import Outbox, Outgoing
from daemon.frontends.mqtt.retained import RetainedTopics
from daemon.home.discovery import discovery_topic
from daemon.intents.engine import IntentHandled
from daemon.speech.speaker import AnswerSpoken

log = logging.getLogger("tektra.mqtt")


PROBE_RETAINED_S = 0.5
"""How long the start-up probe waits for the retained `status` (the broker sends it at once)."""
PROBE_ANSWER_S = 3.0
"""How long the probe waits for a running daemon to answer its `status` request."""
HEALTHY_SESSION_S = 10.0
"""A session at least this long counts as healthy: the reconnect backoff starts over."""
BRIEF_SESSIONS = 3
"""Brief sessions in a row that are reported as a likely client-id collision."""


class NodeInUse(TektraError):
    code = "node_in_use"


async def _first(
    client: aiomqtt.Client, wanted: Callable[[aiomqtt.Message], bool], timeout_s: float
) -> aiomqtt.Message | None:
    """The first message `wanted` within `timeout_s`, else None."""

    async def look() -> aiomqtt.Message | None:
        async for message in client.messages:
            if wanted(message):
                return message
        return None

    try:
        return await asyncio.wait_for(look(), timeout_s)
    except asyncio.TimeoutError:
        return None


def _carries_id(message: aiomqtt.Message, request_id: str) -> bool:
    payload = message.payload if isinstance(message.payload, bytes) else b""
    return request_id.encode() in payload


class MqttLink:
    """Publishes the bus to the broker and feeds the broker's commands to `commands`."""

    def __init__(
        self,
        settings: MqttSettings,
        node_id: str,
        bus: EventBus,
        commands: Commands,
        *,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.login = login
        """(username, password) for the embedded broker; `[mqtt] username` etc. when None."""
        self.node_id = node_id
        self.base = f"{settings.topic_prefix}/{node_id}"
        self.bus = bus
        self.commands = commands
        self.outbox = Outbox(settings.outbox_size)
        self.retained = RetainedTopics(self.base, settings.qos, commands.assistant, bus.started)
        self.connected = False
        self.reconnects = 0
        self._stopping = asyncio.Event()
        self._jobs: set[asyncio.Task[None]] = set()

    def status(self) -> dict[str, Any]:
        return {
            "mqtt": {
                "broker": redact(self.settings.broker),
                "connected": self.connected,
                "outbox": len(self.outbox),
                "dropped": self.outbox.dropped,
                "reconnects": self.reconnects,
            }
        }

    async def run(self) -> None:
        """Until `stop()`: collect bus events into the outbox, and keep a broker connection."""
        try:
            await run_together(self._collect(), self._connect_forever())
        finally:
            for job in self._jobs:
                job.cancel()

    def stop(self) -> None:
        """Flush what the broker can take quickly, publish `offline`, disconnect, and end `run`."""
        self._stopping.set()

    # --- outgoing ----------------------------------------------------------------------------

    async def _collect(self) -> None:
        with self.bus.subscribe(maxsize=self.settings.outbox_size) as events:
            async for event in events:
                for message in [*self.messages_for(event), *self.retained.messages_for(event)]:
                    self.outbox.put(message)

    def messages_for(self, event: Event) -> list[Outgoing]:
        """The MQTT messages that carry one bus event (none for events MQTT does not show)."""
        qos = self.settings.qos
        if isinstance(event, StateChanged):
            return [Outgoing(f"{self.base}/state", event.state.encode(), qos, True, keep=False)]
        # Live pieces go at QoS 0: a lost one is soon overtaken by the next and by the whole
        # answer (QoS 1, kept in the outbox), and none waits for a broker round trip.
        if isinstance(event, ResponseChunk):
            return [self._json("response/chunk", event, keep=False, qos=0)]
        if isinstance(event, PartialTranscript):
            return [self._json("transcript/partial", event, keep=False, qos=0)]
        if isinstance(event, ResponseDone | TranscriptReady | ErrorRaised):
            topic = {"response": "response", "transcript": "transcript", "error": "error"}
            return [self._json(topic[event.kind], event)]
        if isinstance(event, IntentHandled):
            config = self.commands.assistant.config
            return [self._json("intent", event), *hermes_messages(event, config, qos)]
        if isinstance(event, AnswerSpoken):  # heard to its end, after its `response`
            return [self._json("response/spoken", event)]
        if isinstance(event, ModelChanged):
            return [Outgoing(f"{self.base}/model", event.model.encode(), qos, True, keep=False)]
        return []

    def _json(
        self, sub: str, event: Event, *, keep: bool = True, qos: int | None = None
    ) -> Outgoing:
        wire = event.to_wire()
        del wire["event"]
        return self.message(sub, wire, keep=keep, qos=qos)

    def message(
        self, sub: str, payload: dict[str, Any], *, keep: bool = True, qos: int | None = None
    ) -> Outgoing:
        # `replace`: text that is not Unicode (the parser refuses it; this is the last guard)
        # must not make a message that can never be encoded, stuck at the head of the outbox.
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8", "replace")
        qos = self.settings.qos if qos is None else min(qos, self.settings.qos)
        return Outgoing(f"{self.base}/{sub}", data, qos, False, keep)

    # --- the connection ----------------------------------------------------------------------

    def _client(self, *, probe: bool = False) -> aiomqtt.Client:
        """The link's client; with `probe`, a throwaway one (own id, no last will) that cannot
        knock another client off the broker."""
        address = broker_address(self.settings)
        username, secret = self.login or (self.settings.username, password(self.settings))
        return aiomqtt.Client(
            address.host,
            address.port,
            username=username,
            password=secret,
            identifier=new_request_id("tektra-probe") if probe else self.client_id,
            will=None if probe else aiomqtt.Will(f"{self.base}/status", b"offline", 1, True),
            keepalive=self.settings.keepalive_s,
            tls_context=tls_context(self.settings) if address.tls else None,
            timeout=10,
        )

    @property
    def client_id(self) -> str:
        return self.settings.client_id or f"tektra-{self.node_id}"

    async def check_node_free(self) -> None:
        """Refuse (NodeInUse) when another daemon serves this node on the broker, before our
        client id takes its connection over. The retained `status` says `online` while one runs
        (its last will turns it `offline`); a `status` request with a fresh id confirms it is
        alive, since a will is never sent when broker and daemon die together. An unreachable
        broker is not a refusal: the link retries it."""
        status = f"{self.base}/status"
        try:
            async with self._client(probe=True) as probe:
                await probe.subscribe(status, qos=1)
                said = await _first(probe, lambda m: m.topic.value == status, PROBE_RETAINED_S)
                if said is None or said.payload != b"online":
                    return
                ping = new_request_id("probe")
                await probe.subscribe(f"{self.base}/reply", qos=1)
                await probe.subscribe(f"{self.base}/error", qos=1)
                await probe.publish(f"{self.base}/command/status", json.dumps({"id": ping}), 1)
                answer = await _first(probe, lambda m: _carries_id(m, ping), PROBE_ANSWER_S)
        except aiomqtt.MqttError:
            return
        if answer is not None:
            raise NodeInUse(
                f"another Tektra daemon already serves node '{self.node_id}' on the MQTT broker "
                f"{self.settings.broker}; stop it first, or give this one another [daemon] node_id"
            )
        log.warning(
            "the broker says node %s is online, but nothing answers; taking it over", self.node_id
        )

    async def _connect_forever(self) -> None:
        delays = backoff_delays(0.2, self.settings.reconnect_max_s)
        brief = 0  # sessions in a row that the broker ended right after they began
        while not self._stopping.is_set():
            began: float | None = None
            try:
                async with self._client() as client:
                    began = time.monotonic()
                    self._set_connected(True)
                    await self._session(client)
                    return
            except (aiomqtt.MqttError, TektraError) as exc:
                reason = exc.message if isinstance(exc, TektraError) else str(exc)
                if self.connected:
                    log.warning("lost the MQTT broker (%s); reconnecting", reason)
                else:
                    log.warning(
                        "cannot reach the MQTT broker %s: %s", redact(self.settings.broker), reason
                    )
                self._set_connected(False, reason)
            finally:
                self._set_connected(False)
            # The backoff starts over only after a session that lasted: a broker that drops us
            # at once (another client taking our client id over) must not meet a reconnect storm.
            if began is not None and time.monotonic() - began >= HEALTHY_SESSION_S:
                delays, brief = backoff_delays(0.2, self.settings.reconnect_max_s), 0
            elif began is not None:
                brief += 1
                if brief == BRIEF_SESSIONS:
                    self._report_takeover()
            delay = next(delays)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except asyncio.TimeoutError:
                self.reconnects += 1

    def _report_takeover(self) -> None:
        message = (
            f"the MQTT broker dropped this daemon right after connecting {BRIEF_SESSIONS} times "
            f"in a row: another client probably uses the client id '{self.client_id}' (a second "
            f"Tektra for node '{self.node_id}'?); retrying with backoff"
        )
        log.error("%s", message)
        self.bus.publish(ErrorRaised(None, "client_id_in_use", message))

    def _set_connected(self, connected: bool, detail: str = "") -> None:
        if not connected:
            self.outbox.connected = False
        if connected != self.connected:
            self.connected = connected
            self.bus.publish(BrokerLink(connected, detail))
            if connected:
                log.info("connected to the MQTT broker %s", redact(self.settings.broker))

    async def _session(self, client: aiomqtt.Client) -> None:
        # Live messages queue from the moment the broker answers, so an answer that starts while
        # discovery and the snapshot go out loses no chunk; they follow the snapshot in order, so
        # the retained state still ends on the latest one.
        self.outbox.connected = True
        await client.publish(f"{self.base}/status", b"online", qos=1, retain=True)
        await client.subscribe(f"{self.base}/command/+", qos=1)
        if self.settings.discovery:
            await client.subscribe(f"{self.settings.discovery_prefix}/status", qos=1)
            await self._publish_discovery(client)
        await self._publish_snapshot(client)
        stop = asyncio.create_task(self._stopping.wait())
        drain = asyncio.create_task(self._drain(client))
        receive = asyncio.create_task(self._receive(client))
        try:
            done, _ = await asyncio.wait({stop, drain, receive}, return_when="FIRST_COMPLETED")
            if stop not in done:
                for task in done:
                    task.result()  # the broker went away: raise its MqttError
                return
            # Stopping: give the outbox a moment to reach the broker, then say goodbye.
            for _ in range(50):
                if not len(self.outbox):
                    break
                await asyncio.sleep(0.02)
            drain.cancel()
            await client.publish(f"{self.base}/status", b"offline", qos=1, retain=True, timeout=1)
        finally:
            await cancel_and_wait(stop, drain, receive)

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            message = await self.outbox.head()
            await client.publish(message.topic, message.payload, message.qos, message.retain)
            self.outbox.ack(message)

    async def _publish_discovery(self, client: aiomqtt.Client) -> None:
        models = [m.id for m in self.commands.assistant.config.models]
        url = self.settings.discovery_configuration_url
        allowed = [name for name in self.settings.commands if name in COMMANDS]
        payload = discovery_payload(self.base, self.node_id, models, url, allowed)
        topic = discovery_topic(self.settings.discovery_prefix, self.node_id)
        await client.publish(topic, json.dumps(payload).encode(), qos=1, retain=True)

    async def _publish_snapshot(self, client: aiomqtt.Client) -> None:
        """The retained present: state, model and `daemon.frontends.mqtt.retained`'s topics, for
        anyone who subscribes later."""
        assistant = self.commands.assistant
        retained: dict[str, str] = {
            "state": assistant.state,
        }
        if assistant.model is not None:
            retained["model"] = assistant.model
        for sub, value in retained.items():
            await client.publish(f"{self.base}/{sub}", value.encode(), qos=1, retain=True)
        outbox = self.outbox
        stats = {"waiting": len(outbox), "dropped": outbox.dropped, "reconnects": self.reconnects}
        for message in self.retained.snapshot(**stats):
            await client.publish(message.topic, message.payload, qos=1, retain=True)

    # --- incoming ----------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        ha_status = f"{self.settings.discovery_prefix}/status"
        prefix = f"{self.base}/command/"
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic == ha_status and self.settings.discovery:
                if payload.strip() == b"online":  # Home Assistant restarted: tell it again
                    await self._publish_discovery(client)
            elif topic.startswith(prefix):
                self._command(topic[len(prefix) :], payload, message.retain)

    def _command(self, name: str, payload: bytes, retained: bool) -> None:
        if retained:
            # A retained command is an old one the broker replays on every (re)subscribe:
            # running it would repeat it after every reconnect, so it never runs.
            log.warning(
                "ignored a retained command on %s/command/%s; commands are never retained "
                "(clear it with an empty retained message on that topic)",
                self.base,
                name,
            )
            return
        request = self.commands.read_message(name, payload, self.settings.commands)
        if not isinstance(request, Request):
            self._error(request.id, request.code, request.message)
            return
        job = asyncio.create_task(self._run(request), name=f"mqtt command {name}")
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _run(self, request: Request) -> None:
        outcome = await self.commands.run_request(request)
        if outcome.result is None:
            if not outcome.on_bus:  # an answer's own failure is on `error` already
                self._error(outcome.id, outcome.code, outcome.message)
        elif not self.commands.streaming(request):  # an answer's reply is its `response`
            reply = {"id": request.id, "command": request.command, "result": outcome.result}
            self.outbox.put(self.message("reply", reply))

    def _error(self, request_id: RequestId | None, code: str, message: str) -> None:
        payload = {"id": request_id, "code": code, "message": message}
        self.outbox.put(self.message("error", payload))
