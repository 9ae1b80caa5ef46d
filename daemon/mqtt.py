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
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from daemon.commands import Commands
from daemon.config.schema import MqttSettings
from daemon.errors import TektraError
from daemon.events import (
    BrokerLink,
    ErrorRaised,
    Event,
    EventBus,
    MicrophoneChanged,
    ModelChanged,
    PartialTranscript,
    ResponseChunk,
    ResponseDone,
    StateChanged,
    TranscriptReady,
)
from daemon.ha_discovery import discovery_payload, discovery_topic
from daemon.outbox import Outbox, Outgoing
from daemon.protocol import STREAMING, ProtocolError, Request, parse_payload
from daemon.supervisor import backoff_delays, run_together

log = logging.getLogger("tektra.mqtt")


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def broker_address(settings: MqttSettings) -> BrokerAddress:
    if settings.broker == "embedded":
        wildcard = settings.bind in ("0.0.0.0", "::")
        return BrokerAddress(
            "127.0.0.1" if wildcard else settings.bind, settings.embedded_port, False
        )
    url = urlsplit(settings.broker)
    tls = url.scheme == "mqtts"
    if not url.hostname:
        raise TektraError(f"[mqtt] broker {settings.broker!r} names no host")
    return BrokerAddress(url.hostname, url.port or (8883 if tls else 1883), tls)


def password(settings: MqttSettings) -> str | None:
    """The password from `password_env` or `password_file`; never logged."""
    if settings.password_env:
        value = os.environ.get(settings.password_env)
        if value is None:
            raise TektraError(f"[mqtt] password_env: ${settings.password_env} is not set")
        return value
    if settings.password_file:
        try:
            return Path(settings.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise TektraError(
                f"[mqtt] password_file: cannot read {settings.password_file}: {exc.strerror}"
            ) from exc
    return None


def tls_context(settings: MqttSettings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TektraError(f"[mqtt] TLS files: {exc}") from exc
    return context


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
        self.connected = False
        self.reconnects = 0
        self._stopping = asyncio.Event()
        self._jobs: set[asyncio.Task[None]] = set()

    def status(self) -> dict[str, Any]:
        return {
            "mqtt": {
                "broker": self.settings.broker,
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
                for message in self.messages_for(event):
                    self.outbox.put(message)

    def messages_for(self, event: Event) -> list[Outgoing]:
        """The MQTT messages that carry one bus event (none for events MQTT does not show)."""
        qos = self.settings.qos
        if isinstance(event, StateChanged):
            return [Outgoing(f"{self.base}/state", event.state.encode(), qos, True, keep=False)]
        if isinstance(event, ResponseChunk):
            return [self._json("response/chunk", event, keep=False)]
        if isinstance(event, PartialTranscript):
            return [self._json("transcript/partial", event, keep=False)]
        if isinstance(event, ResponseDone | TranscriptReady | ErrorRaised):
            topic = {"response": "response", "transcript": "transcript", "error": "error"}
            return [self._json(topic[event.kind], event)]
        if isinstance(event, MicrophoneChanged):
            on = b"OFF" if event.muted else b"ON"
            return [Outgoing(f"{self.base}/microphone", on, qos, True, keep=False)]
        if isinstance(event, ModelChanged):
            return [Outgoing(f"{self.base}/model", event.model.encode(), qos, True, keep=False)]
        return []

    def _json(self, sub: str, event: Event, *, keep: bool = True) -> Outgoing:
        wire = event.to_wire()
        del wire["event"]
        return self.message(sub, wire, keep=keep)

    def message(self, sub: str, payload: dict[str, Any], *, keep: bool = True) -> Outgoing:
        data = json.dumps(payload, ensure_ascii=False).encode()
        return Outgoing(f"{self.base}/{sub}", data, self.settings.qos, False, keep)

    # --- the connection ----------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        address = broker_address(self.settings)
        username, secret = self.login or (self.settings.username, password(self.settings))
        return aiomqtt.Client(
            address.host,
            address.port,
            username=username,
            password=secret,
            identifier=self.settings.client_id or f"tektra-{self.node_id}",
            will=aiomqtt.Will(f"{self.base}/status", b"offline", 1, True),
            keepalive=self.settings.keepalive_s,
            tls_context=tls_context(self.settings) if address.tls else None,
            timeout=10,
        )

    async def _connect_forever(self) -> None:
        delays = backoff_delays(0.2, self.settings.reconnect_max_s)
        while not self._stopping.is_set():
            try:
                async with self._client() as client:
                    self._set_connected(True)
                    delays = backoff_delays(0.2, self.settings.reconnect_max_s)
                    await self._session(client)
                    return
            except (aiomqtt.MqttError, TektraError) as exc:
                reason = exc.message if isinstance(exc, TektraError) else str(exc)
                if self.connected:
                    log.warning("lost the MQTT broker (%s); reconnecting", reason)
                else:
                    log.warning("cannot reach the MQTT broker %s: %s", self.settings.broker, reason)
                self._set_connected(False, reason)
            finally:
                self._set_connected(False)
            delay = next(delays)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except asyncio.TimeoutError:
                self.reconnects += 1

    def _set_connected(self, connected: bool, detail: str = "") -> None:
        if not connected:
            self.outbox.connected = False
        if connected != self.connected:
            self.connected = connected
            self.bus.publish(BrokerLink(connected, detail))
            if connected:
                log.info("connected to the MQTT broker %s", self.settings.broker)

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
            for task in (stop, drain, receive):
                task.cancel()
            await asyncio.gather(stop, drain, receive, return_exceptions=True)

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            message = await self.outbox.head()
            await client.publish(message.topic, message.payload, message.qos, message.retain)
            self.outbox.ack(message)

    async def _publish_discovery(self, client: aiomqtt.Client) -> None:
        models = [m.id for m in self.commands.assistant.config.models]
        payload = discovery_payload(self.base, self.node_id, models)
        topic = discovery_topic(self.settings.discovery_prefix, self.node_id)
        await client.publish(topic, json.dumps(payload).encode(), qos=1, retain=True)

    async def _publish_snapshot(self, client: aiomqtt.Client) -> None:
        """The retained present: state, microphone and model, for anyone who subscribes later."""
        assistant = self.commands.assistant
        retained = {
            "state": assistant.state,
            "microphone": "OFF" if assistant.muted else "ON",
        }
        if assistant.model is not None:
            retained["model"] = assistant.model
        for sub, value in retained.items():
            await client.publish(f"{self.base}/{sub}", value.encode(), qos=1, retain=True)

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
                self._command(topic[len(prefix) :], payload)

    def _command(self, name: str, payload: bytes) -> None:
        limit = self.commands.limits.max_request_bytes
        try:
            if len(payload) > limit:
                raise ProtocolError("too_large", f"command/{name}: payload over {limit} bytes")
            request = parse_payload(name, payload)
        except ProtocolError as exc:
            self._error(exc.request_id, exc.code, f"command/{name}: {exc.message}")
            return
        job = asyncio.create_task(self._run(request), name=f"mqtt command {name}")
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _run(self, request: Request) -> None:
        try:
            result = await self.commands.execute(request)
        except TektraError as exc:
            # The assistant already put an answer's own failure on the bus (and so on `error`).
            if request.command not in STREAMING or isinstance(exc, ProtocolError):
                self._error(request.id, exc.code, f"{request.command}: {exc.message}")
            return
        except Exception as exc:  # a bug in one command must not end the link; report it
            log.exception("command %s failed", request.command)
            self._error(request.id, "internal", f"{request.command}: {type(exc).__name__}: {exc}")
            return
        if request.command in STREAMING:
            return  # the answer itself, on `response`, is the reply
        reply = {"id": request.id, "command": request.command, "result": result}
        self.outbox.put(self.message("reply", reply))

    def _error(self, request_id: object, code: str, message: str) -> None:
        payload = {"id": request_id, "code": code, "message": message}
        self.outbox.put(self.message("error", payload))
