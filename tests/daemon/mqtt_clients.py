"""MQTT clients for broker tests: paho in a thread, mosquitto_pub as a subprocess, and a raw
socket client that can vanish without a DISCONNECT.

Each waits on conditions with generous timeouts; nothing here is timed.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

WAIT_S = 15.0


@dataclass(frozen=True)
class Login:
    username: str
    password: str


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int = 0


def mosquitto_pub(
    port: int, login: Login | None, topic: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """`mosquitto_pub -t TOPIC ARGS…`: connects, publishes, disconnects at once."""
    credentials = ["-u", login.username, "-P", login.password] if login else []
    command = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), *credentials, "-t", topic]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=30, check=False
    )


class PahoClient:
    """A paho client whose messages can be waited for."""

    def __init__(
        self,
        port: int,
        login: Login | None,
        client_id: str = "",
        *,
        clean_session: bool = True,
        keepalive_s: int = 60,
    ) -> None:
        self.port = port
        self.keepalive_s = keepalive_s
        self.messages: list[Received] = []
        self.disconnects = 0
        self._changed = threading.Condition()
        self._connack: int | None = None
        self._subacks: set[int] = set()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
        if login is not None:
            self.client.username_pw_set(login.username, login.password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(
        self, client: object, userdata: object, flags: object, rc: object, p: object
    ) -> None:
        with self._changed:
            self._connack = int(getattr(rc, "value", 0))
            self._changed.notify_all()

    def _on_message(self, client: object, userdata: object, message: paho.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(
                Received(message.topic, bytes(message.payload), bool(message.retain), message.qos)
            )
            self._changed.notify_all()

    def _on_subscribe(
        self, client: object, userdata: object, mid: int, codes: object, p: object
    ) -> None:
        with self._changed:
            self._subacks.add(mid)
            self._changed.notify_all()

    def _on_disconnect(
        self, client: object, userdata: object, flags: object, rc: object, p: object
    ) -> None:
        with self._changed:
            self.disconnects += 1
            self._changed.notify_all()

    def wait_until(
        self, condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S
    ) -> None:
        with self._changed:
            if not self._changed.wait_for(condition, timeout_s):
                seen = "\n".join(
                    f"  {m.topic} {m.payload!r} retain={m.retain}" for m in self.messages
                )
                raise AssertionError(f"{what}: not within {timeout_s} s; received:\n{seen}")

    def connect(self) -> PahoClient:
        self.client.connect("127.0.0.1", self.port, keepalive=self.keepalive_s)
        self.client.loop_start()
        self.wait_until(lambda: self._connack is not None, "CONNACK")
        assert self._connack == 0, f"connection refused: {self._connack}"
        return self

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        _, mid = self.client.subscribe(topic_filter, qos)
        self.wait_until(lambda: mid in self._subacks, f"SUBACK for {topic_filter}")

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos, retain).wait_for_publish(WAIT_S)

    def wait_for(self, predicate: Callable[[Received], bool], what: str) -> list[Received]:
        """Every message received up to and including the first one `predicate` accepts."""
        found: list[int] = []

        def seen() -> bool:
            found[:] = [i for i, m in enumerate(self.messages) if predicate(m)][:1]
            return bool(found)

        self.wait_until(seen, what)
        return self.messages[: found[0] + 1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        length, digit = divmod(length, 128)
        out.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(out)


def publish_in_one_write(port: int, login: Login, topic: str, payloads: list[bytes]) -> None:
    """CONNECT, QoS 0 PUBLISHes and DISCONNECT sent in one write, then the socket closed: what a
    quick script on a fast link does, and what makes a broker read it all at once."""
    flags = 0x02 | 0xC0
    body = _string("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big") + _string("")
    body += _string(login.username) + _string(login.password)
    data = bytes([0x10]) + _remaining_length(len(body)) + body
    for payload in payloads:
        publish = _string(topic) + payload
        data += bytes([0x30]) + _remaining_length(len(publish)) + publish
    data += b"\xe0\x00"
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):  # the CONNACK, then the broker's close
            pass


@dataclass(frozen=True)
class Will:
    topic: str
    message: str
    qos: int = 1


class RawClient:
    """An MQTT 3.1.1 connection made byte by byte: it can be cut without a DISCONNECT, and it
    sees exactly when the broker closes it (paho and mosquitto_sub would reconnect)."""

    def __init__(
        self,
        port: int,
        login: Login | None,
        client_id: str,
        will: Will | None = None,
        *,
        clean_session: bool = True,
        keepalive_s: int = 60,
    ) -> None:
        flags = 0x02 if clean_session else 0
        payload = _string(client_id)
        if will is not None:
            flags |= 0x04 | (will.qos << 3)
            payload += _string(will.topic) + _string(will.message)
        if login is not None:
            flags |= 0xC0
            payload += _string(login.username) + _string(login.password)
        body = _string("MQTT") + bytes([4, flags]) + keepalive_s.to_bytes(2, "big") + payload
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        self.sock.sendall(bytes([0x10]) + _remaining_length(len(body)) + body)
        connack = self._read(4)
        assert connack[:2] == b"\x20\x02", connack
        self.return_code = connack[3]

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def closed_by_broker(self) -> bool:
        """True once the broker closes the connection (False if it is still open after the wait)."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                if self.sock.recv(4096) == b"":
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                return False
        return False

    def cut(self) -> None:
        """Vanish without a DISCONNECT, as a crashed client or a lost network does."""
        self.sock.close()
