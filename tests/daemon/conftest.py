"""Real peers for the daemon's tests: mosquitto on a free loopback port (plain, or TLS with a
password and a CA made here), the daemon as a subprocess, a socket client and an MQTT recorder.

Every process started here is stopped here, by its own handle; nothing else is touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from daemon.core.supervisor import cancel_and_wait
from tests.pipelines.conftest import Pulse
from tests.plugin_backend import write_distribution

ROOT = Path(__file__).parents[2]
TEKTRA = str(Path(sys.executable).with_name("tektra"))
PASSWORD = "s3cret-for-tests"
DEFAULT_MODEL_SETTLED = r"model \S+ (loaded on|could not be loaded)|no default model to load"


# What every listener sees while the test backend answers "hello": the state around the answer,
# its chunks, the whole answer. The socket's `subscribe` and `tektra events` both show this.
HELLO_EVENTS = [
    ("state", "thinking"),
    ("state", "responding"),
    ("response_chunk", "You"),
    ("response_chunk", " said:"),
    ("response_chunk", " hello"),
    ("response", "You said: hello"),
    ("state", "idle"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@dataclass
class Tls:
    ca: Path
    cert: Path
    key: Path
    passwords: Path
    client_cert: Path
    client_key: Path


@dataclass
class Mosquitto:
    """One mosquitto of our own: its config file, its port, its process."""

    workdir: Path
    port: int
    tls: Tls | None = None
    process: subprocess.Popen[bytes] | None = None
    login: tuple[str, str] | None = None
    """Username and password for client() (a daemon's embedded broker wants its user's login)."""

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        lines = [f"listener {self.port} 127.0.0.1", "persistence true"]
        lines.append(f"persistence_location {self.workdir}/")
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto` and cannot read our files
        if self.tls is None:
            lines.append("allow_anonymous true")
        else:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
                f"password_file {self.tls.passwords}",
                "allow_anonymous false",
                "require_certificate true",  # clients show a certificate signed by our CA too
            ]
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        with (self.workdir / "mosquitto.log").open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
        wait_for_port(self.port)

    def stop(self) -> None:
        """SIGTERM our mosquitto (it saves its sessions on the way out) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def client(self, **kwargs: Any) -> aiomqtt.Client:
        if self.tls is None:
            if self.login is not None:
                kwargs = {"username": self.login[0], "password": self.login[1], **kwargs}
            return aiomqtt.Client("127.0.0.1", self.port, **kwargs)
        import ssl

        context = ssl.create_default_context(cafile=str(self.tls.ca))
        context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        return aiomqtt.Client(
            "127.0.0.1",
            self.port,
            username="tester",
            password=PASSWORD,
            tls_context=context,
            **kwargs,
        )


def make_tls(directory: Path) -> Tls:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate signed by it,
    and a password file."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
        "-keyout", "ca.key", "-out", "ca.pem",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr",
    )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=tektra-client",
        "-keyout", "client.key", "-out", "client.csr",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "client.pem",
    )  # fmt: skip
    passwords = directory / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "tester", PASSWORD],
        check=True,
        capture_output=True,
    )
    return Tls(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        passwords,
        directory / "client.pem",
        directory / "client.key",
    )


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto", free_port())
    broker.workdir.mkdir()
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_tls(tmp_path: Path) -> Iterator[Mosquitto]:
    workdir = tmp_path / "mosquitto-tls"
    workdir.mkdir()
    broker = Mosquitto(workdir, free_port(), make_tls(workdir))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test plugin backend's distribution, for the daemon subprocess's PYTHONPATH."""
    site = tmp_path_factory.mktemp("daemon-site")
    write_distribution(site)
    return site


def echo_config(
    socket_path: Path,
    mqtt: str,
    *,
    extra: str = "",
    delay_s: float = 0.0,
    audio: str = "none",
    tts: str = 'engine = "none"',
    intents: bool = False,
) -> str:
    """A models.toml answering with the test backend ("You said: …"), no microphone, silent
    unless `tts` says otherwise. Intents are off unless asked for: "turn on the lamp" would
    otherwise be answered honestly ("I don't know a device called lamp") instead of echoed."""
    return (
        f'[daemon]\nsocket = "{socket_path}"\nnode_id = "testnode"\n'
        f"{extra}"
        f"[intents]\nenabled = {'true' if intents else 'false'}\n"
        f'[audio]\nsource = "{audio}"\n'
        f"[tts]\n{tts}\n"
        f"[mqtt]\n{mqtt}\n"
        f'[backends]\ndefault = ["recorder"]\n'
        f"[backends.recorder]\nchunk_delay_s = {delay_s}\n"
        f'[[models]]\nid = "echo"\nsource = {{ path = "models.toml" }}\n'
        f'backend_preferences = ["recorder"]\n'
        f'[[models]]\nid = "parrot"\nsource = {{ path = "models.toml" }}\n'
        f'backend_preferences = ["recorder"]\n'
    )


@dataclass
class Daemon:
    """`tektra run` as a real subprocess."""

    config: Path
    socket: Path
    site: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        return (self.config.parent / "daemon.log").read_text(errors="replace")

    def start(self, *, wait: bool = True) -> None:
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join([str(self.site), str(ROOT)])
        with (self.config.parent / "daemon.log").open("ab") as log:
            self.process = subprocess.Popen(
                [TEKTRA, "run", "--config", str(self.config)], stdout=log, stderr=log, env=env
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.process.returncode}):\n{self.log}")
            # READY comes before the default model is loaded; tests start from a loaded one.
            log = self.log
            if " ready (config " in log and re.search(DEFAULT_MODEL_SETTLED, log):
                return
            time.sleep(0.05)
        raise TimeoutError(f"the daemon did not get ready:\n{self.log}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout_s: float = 10.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout_s)
        return code


def mqtt_login(daemon: Daemon) -> tuple[str, str]:
    """The user's login to the daemon's embedded broker, as `tektra mqtt credentials` prints it."""
    env = {**os.environ, **daemon.env, "PYTHONPATH": os.pathsep.join([str(daemon.site), str(ROOT)])}
    printed = subprocess.run(
        [TEKTRA, "mqtt", "credentials"], capture_output=True, text=True, timeout=60, env=env
    )
    assert printed.returncode == 0, printed.stderr
    fields = dict(line.split("=", 1) for line in printed.stdout.splitlines())
    return fields["username"], fields["password"]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: Unix socket paths are limited to 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="tk", dir="/tmp") as directory:
        yield Path(directory)


@pytest.fixture
def make_daemon(
    tmp_path: Path, short_dir: Path, plugin_site: Path
) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def make(
        mqtt: str,
        *,
        extra: str = "",
        delay_s: float = 0.0,
        audio: str = "none",
        tts: str = 'engine = "none"',
        start: bool = True,
        intents: bool = False,
    ) -> Daemon:
        config = tmp_path / "models.toml"
        sock = short_dir / "tektra.sock"
        text = echo_config(
            sock, mqtt, extra=extra, delay_s=delay_s, audio=audio, tts=tts, intents=intents
        )
        config.write_text(text)
        # The embedded broker's logins go to a state directory of the test's own.
        daemon = Daemon(config, sock, plugin_site, {"XDG_STATE_HOME": str(tmp_path / "state")})
        started.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield make
    for daemon in started:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(timeout=10)


class SocketClient:
    """A JSON-lines client of the daemon's socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path: Path) -> SocketClient:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=2**24)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(message).encode() + b"\n")

    async def receive(self, timeout_s: float = 10.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout_s)
        assert line, "the daemon closed the connection"
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def until_done(self, request_id: object, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """Every reply to `request_id` up to and including its `result` or `error`."""
        replies = []
        while True:
            reply = await self.receive(timeout_s)
            if reply.get("id") == request_id:
                replies.append(reply)
                if "result" in reply or "error" in reply:
                    return replies

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        await self.send(request)
        return (await self.until_done(request["id"]))[-1]

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@dataclass
class Recorded:
    topic: str
    payload: bytes
    retain: bool
    qos: int = 1

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttRecorder:
    """Subscribes to topics and keeps every message, so a test can wait for what it expects."""

    def __init__(self) -> None:
        self.messages: list[Recorded] = []
        self._changed = asyncio.Event()
        self.subscribed = asyncio.Event()

    async def run(self, client: aiomqtt.Client, topics: list[str]) -> None:
        for topic in topics:
            await client.subscribe(topic, qos=1)
        self.subscribed.set()
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            record = Recorded(message.topic.value, payload, message.retain, message.qos)
            self.messages.append(record)
            self._changed.set()

    def on(self, topic: str) -> list[Recorded]:
        return [m for m in self.messages if m.topic == topic]

    def payloads(self, topic: str) -> list[str]:
        return [m.payload.decode() for m in self.on(topic)]

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
        await self.wait_for(lambda _: condition(), timeout_s)

    async def wait_for(
        self, predicate: Callable[[Recorded], bool], timeout_s: float = 15.0
    ) -> Recorded:
        async def look() -> Recorded:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(look(), timeout_s)
        except asyncio.TimeoutError:
            seen = "\n".join(f"{m.topic} {m.payload[:200]!r}" for m in self.messages)
            raise AssertionError(f"no such message within {timeout_s} s; seen:\n{seen}") from None


@asynccontextmanager
async def listening(
    broker: Mosquitto, topics: list[str], **kwargs: Any
) -> AsyncIterator[MqttRecorder]:
    """An MQTT client of `broker` recording `topics` while the block runs."""
    recorder = MqttRecorder()
    async with broker.client(**kwargs) as client:
        task = asyncio.create_task(recorder.run(client, topics))
        try:
            # Subscribed before the block starts, so nothing published after is missed.
            await asyncio.wait_for(recorder.subscribed.wait(), 10)
            yield recorder
        finally:
            await cancel_and_wait(task)  # its cancel may be lost in aiomqtt (Python < 3.12)


@pytest.fixture
def pulse(tmp_path: Path) -> Iterator[Pulse]:
    """A PulseAudio server of this test's own with a null sink: its monitor is a microphone (the
    daemon's, when the test gives the daemon this server's environment)."""
    runtime, home = tmp_path / "pulse-runtime", tmp_path / "pulse-home"
    runtime.mkdir(mode=0o700)
    home.mkdir()
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(home)}
    env.pop("PULSE_SERVER", None)
    server = Pulse(env, runtime)
    server.start()
    yield server
    server.stop()
