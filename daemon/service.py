"""The composition root of `tektra run`: start everything, serve, stop everything.

startup → serve until a signal → shutdown, as uvicorn does it. Signals are captured here and only
here: SIGTERM/SIGINT stop (a second one forces the exit), SIGHUP reloads models.toml. Every
long-lived piece runs as a named task under one Supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

from daemon.assistant import Assistant
from daemon.commands import Commands
from daemon.config.schema import TektraConfig
from daemon.embedded_broker import EmbeddedBroker
from daemon.errors import ConfigError, TektraError
from daemon.events import ErrorRaised, EventBus
from daemon.home.home import Home
from daemon.mqtt import MqttLink
from daemon.sd_notify import Notifier, feed_watchdog, watchdog_interval_s
from daemon.socket_server import SocketServer, socket_path
from daemon.supervisor import Supervisor
from daemon.voice import VoiceBridge, VoiceHost

log = logging.getLogger("tektra")


def run(config: TektraConfig, path: Path) -> int:
    logging.basicConfig(
        level=config.daemon.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(Service(config, path).serve())


class Service:
    def __init__(self, config: TektraConfig, path: Path) -> None:
        self.config = config
        self.bus = EventBus()
        self.assistant = Assistant(config, path, self.bus)
        self.supervisor = Supervisor(self.bus)
        self.notifier = Notifier.from_env()
        self.bridge = VoiceBridge(self.assistant)
        self.voice = VoiceHost(config, self.bridge, self.supervisor.spawn)
        self.link: MqttLink | None = None
        self.home = Home(lambda: self.assistant.config, self.bus)
        self.assistant.intents = self.home.answer
        self.commands = Commands(
            self.assistant, voice=self.voice, links=self._links, entities=self.home.listing
        )
        self.socket = SocketServer(
            socket_path(config.daemon), config.daemon, self.commands, self.bus
        )
        self.broker: EmbeddedBroker | None = None
        self._stop = asyncio.Event()
        self._signals = 0
        self._reload_job: asyncio.Task[None] | None = None

    async def serve(self) -> int:
        self._capture_signals()
        try:
            await self._startup()
            await self._stop.wait()
        finally:
            await self._shutdown()
        return 0

    async def _startup(self) -> None:
        mqtt = self.config.mqtt
        if mqtt.broker == "embedded":
            broker = EmbeddedBroker(mqtt.embedded_port)
            try:
                await broker.start()
                self.broker = broker
            except TektraError as exc:
                # Not fatal: the link keeps trying that port (another broker may be there).
                log.error("%s", exc.message)
                self.bus.publish(ErrorRaised(None, exc.code, exc.message))
        if mqtt.broker != "none":
            link = MqttLink(mqtt, self.config.daemon.node_id, self.bus, self.commands)
            if self.broker is None:  # a broker of our own starts empty: no one else to find
                await link.check_node_free()
            self.link = link
            self.supervisor.spawn("mqtt", self.link.run)
            self.supervisor.spawn("home", self.home.run)
        await self.socket.start()
        self.supervisor.spawn("socket", self.socket.run)
        interval = watchdog_interval_s()
        if interval is not None:
            self.supervisor.spawn("watchdog", lambda: feed_watchdog(self.notifier, interval))
        await self._load_default_model()
        if self.voice.wanted_at_start:
            try:
                self.voice.start()
            except TektraError as exc:
                log.warning("running without a microphone: %s", exc.message)
        status = f"ready: model {self.assistant.model or '-'}, socket {self.socket.path}"
        self.notifier.ready(status)
        log.info(
            "tektra %s ready (config %s)", self.config.daemon.node_id, self.assistant.config_path
        )

    async def _load_default_model(self) -> None:
        model_id = self.config.default_model_id
        if model_id is None:
            return
        try:
            backend = await self.assistant.load_model(model_id)
        except TektraError as exc:
            # A failed backend is a state, not the end: queries retry it (or the next one) later.
            log.error("model %s could not be loaded: %s", model_id, exc.message)
            self.bus.publish(ErrorRaised(None, exc.code, exc.message))
            self.assistant.set_problem("model", exc.message)
            return
        log.info("model %s loaded on %s", model_id, backend)

    async def _shutdown(self) -> None:
        """Stop capturing, let answers finish (bounded), say `offline`, release everything."""
        log.info("stopping")
        self.notifier.stopping()
        await self.supervisor.stop("voice")
        self.assistant.refuse_new()
        timeout = self.config.daemon.shutdown_timeout_s
        if not await self.assistant.wait_idle(timeout):
            log.warning("answers still running after %.1f s are cancelled", timeout)
        await self.supervisor.stop("socket", 1.0)
        if self.link is not None:
            self.link.stop()
            await self.supervisor.finish("mqtt", 1.5)
        await self.supervisor.stop_all(1.0)
        self.home.close()
        await self.assistant.close()
        if self.broker is not None:
            await self.broker.stop()

    def _capture_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second %s: exiting now", sig.name)
            os._exit(1)  # the graceful shutdown is what hangs; nothing more to wait for
        log.info("%s received; shutting down (send it again to force)", sig.name)
        self._stop.set()

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
        links["home"] = self.home.status()
        return links
