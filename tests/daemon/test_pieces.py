"""The daemon's pure pieces: outbox, request parsing, backoff, event bus, socket path."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from daemon.assistant.protocol import ProtocolError, decode_base64
from daemon.core.config.schema import DaemonSettings
from daemon.core.events import EventBus, MicrophoneChanged, StateChanged
from daemon.core.states import StateName
from daemon.core.supervisor import backoff_delays
from daemon.frontends.mqtt.outbox import Outbox, Outgoing
from daemon.frontends.socket.server import socket_path


def message(n: int, *, keep: bool = True) -> Outgoing:
    return Outgoing(f"t/{n}", str(n).encode(), keep=keep)


async def test_outbox_keeps_the_newest_and_counts_what_it_dropped() -> None:
    box = Outbox(maxsize=3)
    for n in range(5):
        box.put(message(n))
    assert (len(box), box.dropped) == (3, 2)
    head = await box.head()
    assert head.topic == "t/2"
    box.ack(head)
    assert (await box.head()).topic == "t/3"


async def test_outbox_does_not_keep_live_chunks_while_the_broker_is_away() -> None:
    box = Outbox(maxsize=10)
    box.put(message(1, keep=False))
    box.put(message(2))
    box.connected = True
    box.put(message(3, keep=False))
    assert [m.topic for m in box._items] == ["t/2", "t/3"]
    box.connected = False  # the link dropped: the queued chunk is stale, the answer waits
    assert ([m.topic for m in box._items], box.dropped) == (["t/2"], 0)


async def test_outbox_ack_of_a_message_dropped_meanwhile_forgets_nothing_else() -> None:
    box = Outbox(maxsize=1)
    box.put(message(1))
    in_flight = await box.head()
    box.put(message(2))  # drops message 1 while it is being published
    box.ack(in_flight)
    assert [m.topic for m in box._items] == ["t/2"]


def test_base64_fields_are_checked_for_size_and_alphabet() -> None:
    assert decode_base64("aGk=", "image", 10) == b"hi"
    with pytest.raises(ProtocolError, match="`image` is larger than the 10-byte limit"):
        decode_base64("a" * 100, "image", 10)
    with pytest.raises(ProtocolError, match="`image` is not valid base64"):
        decode_base64("a!b=", "image", 10)


def test_backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() -> None:
    delays = backoff_delays(0.5, 4.0, random.Random(1))
    taken = [next(delays) for _ in range(6)]
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(cap / 2 <= d <= cap for d, cap in zip(taken, caps, strict=True))
    assert len(set(taken)) == 6  # jittered, not fixed


async def test_a_slow_subscriber_loses_its_own_oldest_events_only() -> None:
    bus = EventBus()
    slow, fast = bus.subscribe(maxsize=2), bus.subscribe(maxsize=10)
    states: tuple[StateName, ...] = ("idle", "listening", "thinking", "responding")
    for state in states:
        bus.publish(StateChanged(state))
    assert slow.dropped == 2
    expected = [StateChanged("thinking"), StateChanged("responding")]
    assert [await slow.get() for _ in range(2)] == expected
    assert fast.dropped == 0
    slow.close()
    bus.publish(MicrophoneChanged(True))
    assert bus.subscriber_count == 1


def test_the_socket_path_follows_config_then_systemd_then_xdg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/tektra")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert socket_path(DaemonSettings(socket="/srv/t.sock")) == Path("/srv/t.sock")
    assert socket_path(DaemonSettings()) == Path("/run/tektra/tektra.sock")
    monkeypatch.delenv("RUNTIME_DIRECTORY")
    assert socket_path(DaemonSettings()) == Path("/run/user/1000/tektra/tektra.sock")


async def test_a_full_outbox_drops_live_chunks_before_any_answer() -> None:
    box = Outbox(maxsize=3)
    box.put(message(1))
    box.connected = True
    box.put(message(2, keep=False))
    box.put(message(3))
    box.put(message(4, keep=False))  # full: chunk 2 goes, not answer 1
    box.put(message(5))  # full: chunk 4 goes
    assert [m.topic for m in box._items] == ["t/1", "t/3", "t/5"]
    box.put(message(6))  # only answers left: the oldest goes
    assert [m.topic for m in box._items] == ["t/3", "t/5", "t/6"]
    assert box.dropped == 3
