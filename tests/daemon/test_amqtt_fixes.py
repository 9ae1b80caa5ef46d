"""The pieces of our amqtt fixes that a race decides, checked without the race."""

from __future__ import annotations

import asyncio
from importlib.metadata import version

from daemon.frontends.mqtt.amqtt_fixes import AckWaiters


async def test_an_acknowledgement_that_comes_before_its_waiter_resolves_the_waiter() -> None:
    waiters = AckWaiters()
    waiters[7].set_result("PUBACK 7")  # what amqtt's handle_puback does with the waiter it finds
    waiter: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    waiters[7] = waiter  # what amqtt does after writing the PUBLISH
    assert waiter.result() == "PUBACK 7"
    assert 8 not in waiters
    later: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    waiters[8] = later
    assert not later.done()


def test_the_fixes_are_for_the_amqtt_that_is_installed() -> None:
    # They override amqtt's private methods; another version needs each one checked again
    # (tests/daemon/test_broker_conformance.py says which still hold).
    assert version("amqtt") == "0.12.1"
