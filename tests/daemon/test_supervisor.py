"""The supervisor's restart delays: bounded, and back to the first after a healthy run; and
cancelling tasks that ends them even when one cancel is lost."""

from __future__ import annotations

import asyncio
import random

import pytest

from daemon.core.events import EventBus
from daemon.core.supervisor import RestartBackoff, Supervisor, cancel_and_wait, run_together


def test_the_restart_delay_doubles_to_its_cap_and_stays_there() -> None:
    backoff = RestartBackoff(first_s=0.5, max_s=4.0, healthy_s=60.0, rng=random.Random(1))
    delays = [backoff.delay(ran_for_s=1.0) for _ in range(200)]
    caps = [0.5, 1.0, 2.0, 4.0] + [4.0] * 196
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps, strict=True))


def test_the_restart_delay_starts_over_after_a_healthy_run() -> None:
    backoff = RestartBackoff(first_s=0.5, max_s=30.0, healthy_s=60.0, rng=random.Random(2))
    for _ in range(6):
        backoff.delay(ran_for_s=0.1)
    assert backoff.failures == 6
    assert 0.25 <= backoff.delay(ran_for_s=61.0) <= 0.5  # ran a minute: a fresh failure
    assert backoff.failures == 1
    assert 0.5 <= backoff.delay(ran_for_s=0.1) <= 1.0  # failing at once again: it grows again


async def test_a_task_that_fails_runs_healthy_then_fails_again_waits_the_first_delay() -> None:
    now = [0.0]
    waits: list[float] = []
    runs = 0

    async def sleep(delay: float) -> None:
        waits.append(delay)
        now[0] += delay

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 4:
            now[0] += 3600.0  # an hour of good service before this failure
        if runs < 6:
            raise RuntimeError(f"failure {runs}")

    supervisor = Supervisor(
        EventBus(), first_delay_s=1.0, max_delay_s=8.0, healthy_s=60.0, clock=lambda: now[0],
        sleep=sleep,
    )  # fmt: skip
    supervisor.spawn("flaky", flaky)
    await asyncio.wait_for(supervisor.tasks["flaky"], 10)
    assert supervisor.restarts["flaky"] == 5
    caps = [1.0, 2.0, 4.0, 1.0, 2.0]  # the fourth failure came after an hour: back to the first
    assert all(cap / 2 <= w <= cap for w, cap in zip(waits, caps, strict=True))


async def test_a_cancel_lost_in_wait_for_is_sent_again() -> None:
    """Before Python 3.12, `wait_for` returns its result when the result and a cancel arrive
    together; the task then runs on (as an MQTT client's task does after its acknowledgement)."""
    acknowledged = asyncio.get_running_loop().create_future()
    after: list[str] = []

    async def publisher() -> None:
        await asyncio.wait_for(acknowledged, 10)
        after.append("acknowledged")
        await asyncio.Event().wait()  # the next message that never comes

    task = asyncio.create_task(publisher())
    await asyncio.sleep(0)
    acknowledged.set_result(None)
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled()


async def test_run_together_ends_the_others_and_raises_the_first_error() -> None:
    ended: list[str] = []

    async def fails() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("broken")

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append("forever")

    with pytest.raises(RuntimeError, match="broken"):
        await run_together(fails(), forever())
    assert ended == ["forever"]
