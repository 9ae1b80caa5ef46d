"""The composition root of `tektra run`: start everything, serve, stop everything.

startup → serve until a signal → shutdown, as uvicorn does it. Signals are captured here and only
here: SIGTERM/SIGINT stop, SIGHUP reloads models.toml. Every long-lived piece runs as a named task
under one Supervisor.

The daemon is READY once it serves (broker, socket, MQTT link); the default model loads after
that, as a state (`loading`), so a slow or hung engine never holds systemd's start-up. A stop
lets answers finish for `shutdown_timeout_s`, then stops them (the engines with them) and tells
their askers why; a second signal skips every wait but still removes the socket and says
`offline` (uvicorn's force exit). Engine threads that will not stop never hold the exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from daemon.assistant.assistant import Assistant, ShuttingDown
from daemon.assistant.commands import Commands
from daemon.assistant.voice import VoiceBridge, VoiceHost
from daemon.core.config.schema import TektraConfig
from daemon.core.errors import ConfigError, TektraError
from daemon.core.events import ErrorRaised, EventBus
from daemon.core.supervisor import Supervisor
from daemon.frontends.mqtt.broker import EmbeddedBroker
from daemon.frontends.mqtt.credentials import load_or_create
from daemon.frontends.mqtt.link import MqttLink
from daemon.frontends.satellites.hub import SatelliteHub
from daemon.frontends.socket.server import SocketServer, socket_path
from daemon.frontends.wyoming import build_server
from daemon.home.home import Home
from daemon.service.metrics import MetricsServer
from daemon.service.sd_notify import Notifier, feed_watchdog, watchdog_interval_s
from daemon.speech.speaker import Speaker
from pipelines.echo import EchoReference
from pipelines.echo import available as echo_available

log = logging.getLogger("tektra")

STEP_S = 1.0
"""Bound of each step of a shutdown after the answers: stopping answers, the socket, MQTT."""
RELEASE_S = 2.0
"""How long engines get to release their models at exit."""
FORCED_S = 3.0
"""After a second signal, the process ends this long after at the latest, whatever hangs."""


def run(config: TektraConfig, path: Path) -> int:
    logging.basicConfig(
        level=config.daemon.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(Service(config, path, owns_process=True).serve())


class Service:
    def __init__(self, config: TektraConfig, path: Path, *, owns_process: bool = False) -> None:
        self.config = config
        self.owns_process = owns_process
        """The process is the daemon's (`tektra run`): a shutdown may end it (see _exit_after)."""
        self.bus = EventBus()
        self.assistant = Assistant(config, path, self.bus)
        self.supervisor = Supervisor(self.bus)
        self.notifier = Notifier.from_env()
        self.bridge = VoiceBridge(self.assistant)
        self.voice = VoiceHost(config, self.bridge, self.supervisor.spawn)
        self.speaker = Speaker(config.tts, self.bus)
        self.voice.hold = self.speaker.holding  # half duplex: never hear its own voice
        wake = config.audio.wake
        if wake.engine == "micro" and wake.barge_in and self.speaker.audible:
            if echo_available():
                # The wake word said over its voice stops it: the player's reference is
                # cancelled out of what the wake-word detector hears.
                self.speaker.player.reference = self.voice.echo_reference = EchoReference()
            else:
                log.warning("barge-in is off: libspeexdsp is not installed (libspeexdsp1)")
        self.bridge.on_barge_in = self._barge_in
        self._barging: set[asyncio.Task[None]] = set()
        self.speaker.on_answer_spoken = self.bridge.note_answered
        self.link: MqttLink | None = None
        self.satellites: SatelliteHub | None = None
        self.home = Home(lambda: self.assistant.config, self.bus)
        self.assistant.intents = self.home.answer
        self.assistant.tools = self.home.tools
        self.commands = Commands(
            self.assistant,
            voice=self.voice,
            links=self._links,
            speaker=self.speaker,
            entities=self.home.listing,
            camera=self.voice.camera_frame,
            transcribe=self.voice.transcribe,
        )
        self.socket = SocketServer(
            socket_path(config.daemon), config.daemon, self.commands, self.bus
        )
        # None without [wyoming] port; its `tts` speaks with the speaker's engine (one piper)
        self.wyoming = build_server(config, self.commands, self.speaker.engine)
        self.broker: EmbeddedBroker | None = None
        self._stop = asyncio.Event()
        self._forced = asyncio.Event()
        self._signals = 0
        self._reload_job: asyncio.Task[None] | None = None

    async def serve(self) -> int:
        self._capture_signals()
        try:
            await self._startup()
            await self._stop.wait()
        finally:
            if self.owns_process:
                # Threads still busy in an engine (a prompt being read, a call that never
                # returns) would hold the interpreter's exit: past this it ends without them.
                _exit_after(self.config.daemon.shutdown_timeout_s + 6 * STEP_S + RELEASE_S)
            await self._shutdown()
        return 1 if self._forced.is_set() else 0

    async def _startup(self) -> None:
        mqtt = self.config.mqtt
        login = None
        if mqtt.broker == "embedded":
            # Fatal when it cannot start: on a taken port the link would talk to someone else's
            # broker while saying it uses its own.
            credentials = await asyncio.to_thread(load_or_create)
            broker = EmbeddedBroker(
                mqtt.embedded_port,
                bind=mqtt.bind,
                logins=credentials.logins(),
                allow_anonymous=mqtt.allow_anonymous,
            )
            await broker.start()
            self.broker = broker
            login = (credentials.daemon.username, credentials.daemon.password)
        if mqtt.broker != "none":
            link = MqttLink(mqtt, self.config.daemon.node_id, self.bus, self.commands, login=login)
            if self.broker is None:  # a broker of our own starts empty: no one else to find
                await link.check_node_free()
            self.link = link
            self.supervisor.spawn("mqtt", self.link.run)
            if self.home.link is not None:
                self.home.link.login = login
            self.supervisor.spawn("home", self.home.run)
            self.satellites = SatelliteHub(self.config, self.commands, self.speaker, login=login)
            self.supervisor.spawn("satellites", self.satellites.run)
        if self.config.metrics.port is not None:
            outbox = self.link.outbox if self.link is not None else None
            metrics = MetricsServer(self.config.metrics, self.bus, outbox)
            metrics.start()  # fatal when it cannot listen, as a taken broker port is
            self.supervisor.spawn("metrics", metrics.run)
        if self.speaker.enabled:
            self.supervisor.spawn("speech", self.speaker.run)
        await self.socket.start()
        self.supervisor.spawn("socket", self.socket.run)
        if self.wyoming is not None:
            self.supervisor.spawn("wyoming", self.wyoming.run)
        interval = watchdog_interval_s()
        if interval is not None:
            self.supervisor.spawn("watchdog", lambda: feed_watchdog(self.notifier, interval))
        if self.voice.wanted_at_start:
            try:
                self.voice.start()
            except TektraError as exc:
                log.warning("running without a microphone: %s", exc.message)
        model_id = self.config.default_model_id
        if model_id is None:
            log.info("no default model to load")
        else:
            # In the background: READY must not wait for an engine (a hung server delayed it
            # past systemd's start timeout). Questions asked meanwhile wait for the model.
            self.supervisor.spawn("model", lambda: self._load_default_model(model_id))
        model = f"loading model {model_id}" if model_id is not None else "no default model"
        self.notifier.ready(f"ready: {model}, socket {self.socket.path}")
        log.info(
            "tektra %s ready (config %s)", self.config.daemon.node_id, self.assistant.config_path
        )

    async def _load_default_model(self, model_id: str) -> None:
        try:
            backend = await self.assistant.load_model(model_id)
        except TektraError as exc:
            # A failed backend is a state, not the end: queries retry it (or the next one) later.
            log.error("model %s could not be loaded: %s", model_id, exc.message)
            self.bus.publish(ErrorRaised(None, exc.code, exc.message))
            self.assistant.set_problem("model", exc.message)
            self.notifier.status(f"ready: model {model_id} did not load, socket {self.socket.path}")
            return
        log.info("model %s loaded on %s", model_id, backend)
        self.notifier.status(f"ready: model {model_id}, socket {self.socket.path}")

    async def _shutdown(self) -> None:
        """Stop capturing, let answers finish (bounded), stop the rest, say `offline`, release
        everything. After a second signal every wait is skipped, the cleanup is not."""
        log.info("stopping")
        self.notifier.stopping()
        self.assistant.refuse_new()
        if self._reload_job is not None:
            self._reload_job.cancel()
        await self.supervisor.stop("model", STEP_S)  # a default model still loading is dropped
        await self.supervisor.stop("voice", 2 * STEP_S)  # the microphone closes in a thread
        timeout = self.config.daemon.shutdown_timeout_s
        if not await self._unless_forced(self.assistant.wait_idle(timeout)):
            stopped = self.assistant.stop_all(
                ShuttingDown("the daemon is stopping; the answer was cut short")
            )
            if stopped:
                why = "on a second signal" if self._forced.is_set() else f"after {timeout:.1f} s"
                log.warning("answers still running %s are cancelled (%d)", why, stopped)
                # Their askers hear why (socket reply, MQTT `error`) before the links close.
                await self._unless_forced(self.assistant.wait_idle(STEP_S))
        await self.supervisor.stop("socket", 2 * STEP_S)  # its farewell lines take up to 1 s
        self.socket.path.unlink(missing_ok=True)  # whatever became of the task serving it
        await self.supervisor.stop("wyoming", 2 * STEP_S)
        if self.link is not None:
            self.link.stop()  # flushes what it can, then publishes `offline`
            await self.supervisor.finish("mqtt", 2 * STEP_S)
        await self.supervisor.stop("speech", 5.0)
        await self.supervisor.stop_all(STEP_S)
        self.home.close()
        try:
            await asyncio.wait_for(self.assistant.close(), RELEASE_S)
        except asyncio.TimeoutError:
            log.warning("engines did not release their models within %.1f s", RELEASE_S)
        if self.broker is not None:
            await self.broker.stop()

    async def _unless_forced(self, wait: Awaitable[bool]) -> bool:
        """`wait`'s result, or False as soon as a second signal asks to skip the waits."""
        waiting = asyncio.ensure_future(wait)
        forced = asyncio.ensure_future(self._forced.wait())
        try:
            await asyncio.wait({waiting, forced}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            forced.cancel()
            if not waiting.done():
                waiting.cancel()
        return waiting.done() and not waiting.cancelled() and waiting.result()

    def _barge_in(self) -> None:
        """The wake word was said over Tektra's voice: stop as the `stop` command does (silence,
        and the answer being written is cancelled), then listen at once for the request."""

        async def stop() -> None:
            await self.speaker.stop()
            self.assistant.stop(None)
            self.speaker.player.release()

        task = asyncio.create_task(stop(), name="tektra-barge-in")
        self._barging.add(task)
        task.add_done_callback(self._barging.discard)

    def _capture_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("%s received; shutting down (send it again to force)", sig.name)
            self._stop.set()
        elif self._signals == 2:
            # Skip the waits, keep the cleanup (socket file, `offline`); bounded all the same.
            log.warning("second %s: exiting now, without waiting for answers", sig.name)
            self._forced.set()
            self._stop.set()
            if self.owns_process:
                _exit_after(FORCED_S, code=1)
        else:
            os._exit(1)  # the cleanup itself hangs: nothing more to wait for

    def _on_reload_signal(self) -> None:
        # Keep a reference: the loop holds tasks weakly.
        self._reload_job = asyncio.get_running_loop().create_task(self._reload(), name="reload")

    async def _reload(self) -> None:
        self.notifier.reloading()
        try:
            await self.assistant.reload()
        except ConfigError as exc:
            for issue in exc.issues:
                log.error("reload: %s", issue)
            log.error("reload refused: models.toml is invalid; keeping the running configuration")
            self.bus.publish(ErrorRaised(None, exc.code, exc.message))
        except TektraError as exc:
            log.error("reload: %s", exc.message)
            self.bus.publish(ErrorRaised(None, exc.code, exc.message))
        self.notifier.ready(f"ready: model {self.assistant.model or '-'}")

    def _links(self) -> dict[str, Any]:
        links: dict[str, Any] = {"socket": self.socket.status()}
        links.update(self.link.status() if self.link is not None else {"mqtt": None})
        if self.wyoming is not None:
            links["wyoming"] = self.wyoming.status()
        links["home"] = self.home.status()
        if self.satellites is not None:
            links.update(self.satellites.status())
        return links


def _exit_after(delay_s: float, code: int = 0) -> None:
    """End the process `delay_s` from now if it is still running then.

    The last resort of a bounded shutdown: the cleanup that matters (socket file, `offline`) is
    done by then, and what still runs is a thread inside an engine that ignores being stopped
    (mistral.rs reading a long prompt, a native call that never returns), which would otherwise
    hold the interpreter's exit for as long as it runs.
    """

    def expire() -> None:
        busy = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon]
        log.warning("exiting without waiting for threads still busy: %s", ", ".join(busy))
        logging.shutdown()
        os._exit(code)

    timer = threading.Timer(delay_s, expire)
    timer.daemon = True  # never the reason the process stays
    timer.start()
