"""Prometheus metrics, scraped from a real `tektra run` the way Prometheus scrapes it."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from daemon.core.config.schema import MetricsSettings
from daemon.core.events import ErrorRaised, EventBus, PipelineNotice, ResponseDone
from daemon.service.metrics import Metrics, MetricsServer
from daemon.speech.speaker import AnswerSpoken
from tests.daemon.conftest import ROOT, TEKTRA, Daemon, Mosquitto, SocketClient, free_port
from tests.pipelines.conftest import clip, silence, write_stream

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape_until(
    port: int, condition: Callable[[Samples], bool], timeout_s: float = 30.0
) -> Samples:
    """Scrape `GET /metrics` until `condition` holds: the metrics count events as they arrive,
    a moment after the reply that a test waits for."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while True:
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
            assert response.status_code == 200
            samples = parse(response.text)
            if condition(samples):
                return samples
            if time.monotonic() > deadline:
                raise AssertionError(f"metrics never matched; last scrape:\n{response.text}")
            await asyncio.sleep(0.1)


def stage_count(samples: Samples, stage: str) -> float:
    return samples.get(("tektra_stage_seconds_count", (("stage", stage),)), 0.0)


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }


async def test_a_scrape_after_an_answer_shows_stage_latencies_and_the_answer_by_model_and_backend(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    port = free_port()
    daemon = make_daemon(f'broker = "{mosquitto.url}"', extra=f"[metrics]\nport = {port}\n")
    client = await SocketClient.connect(daemon.socket)
    reply = await client.call({"id": "q1", "cmd": "ask", "text": "hello", "model": "parrot"})
    assert reply["result"]["text"] == "You said: hello"
    await client.close()

    samples = await scrape_until(port, lambda s: stage_count(s, "total") == 1)

    answers = {k: v for k, v in samples.items() if k[0] == "tektra_answers_total"}
    assert answers == {("tektra_answers_total", (("backend", "recorder"), ("model", "parrot"))): 1}
    assert (stage_count(samples, "first_chunk"), stage_count(samples, "total")) == (1, 1)
    # A typed question has no speech stages.
    assert (stage_count(samples, "speech_to_text"), stage_count(samples, "hangover")) == (0, 0)
    assert samples[("tektra_mqtt_outbox_dropped_total", ())] == 0
    assert ("tektra_mqtt_outbox_messages", ()) in samples
    assert samples[("tektra_metrics_missed_events_total", ())] == 0
    # Loopback only, as `[metrics] bind` says by default.
    assert daemon.process is not None
    assert ("127.0.0.1", port) in listening_addresses(daemon.process.pid)
    assert daemon.stop() == 0


async def test_an_error_counts_under_its_code(make_daemon: Callable[..., Daemon]) -> None:
    port = free_port()
    daemon = make_daemon('broker = "none"', extra=f"[metrics]\nport = {port}\n")
    client = await SocketClient.connect(daemon.socket)
    reply = await client.call({"id": "q1", "cmd": "ask", "text": "hello", "model": "nosuch"})
    assert reply["error"]["code"] == "unknown_model"
    await client.close()

    key = ("tektra_errors_total", (("code", "unknown_model"),))
    samples = await scrape_until(port, lambda s: key in s)

    assert samples[key] == 1
    assert not [k for k in samples if k[0] == "tektra_answers_total"]
    # Without an MQTT link there is no outbox to describe (no false zeros).
    assert not [k for k in samples if k[0].startswith("tektra_mqtt_outbox")]
    assert daemon.stop() == 0


@pytest.mark.integration
async def test_a_spoken_question_adds_the_hangover_and_speech_to_text_stages(
    make_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    port = free_port()
    daemon = make_daemon('broker = "none"', extra=f"[metrics]\nport = {port}\n")
    # Silence after the words: the utterance closes on silence, after a hangover.
    wav = write_stream(tmp_path / "q.wav", silence(0.3), clip("kitchen_lights"), silence(1.5))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(daemon.site), str(ROOT)])}
    listen = await asyncio.create_subprocess_exec(
        TEKTRA, "listen", str(wav), "--config", str(daemon.config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    _, err = await asyncio.wait_for(listen.communicate(), 180)
    assert listen.returncode == 0, err.decode()

    samples = await scrape_until(port, lambda s: stage_count(s, "total") == 1)

    assert stage_count(samples, "speech_to_text") == 1
    assert stage_count(samples, "hangover") == 1
    hangover_sum = samples[("tektra_stage_seconds_sum", (("stage", "hangover"),))]
    assert 0.0 < hangover_sum <= 1.5  # the silence waited for, never more than was there
    assert daemon.stop() == 0


def test_without_a_metrics_port_the_daemon_listens_on_no_tcp_port(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    assert daemon.process is not None
    assert listening_addresses(daemon.process.pid) == set()
    assert daemon.stop() == 0


def test_a_taken_metrics_port_stops_the_daemon_saying_which_setting_to_change(
    make_daemon: Callable[..., Daemon],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = make_daemon('broker = "none"', extra=f"[metrics]\nport = {port}\n", start=False)
        daemon.start(wait=False)
        assert daemon.process is not None
        assert daemon.process.wait(timeout=60) == 1
    assert (
        f"error [metrics_unavailable]: metrics endpoint: port {port} on 127.0.0.1 is already "
        "in use: set another [metrics] port"
    ) in daemon.log


def test_each_daemon_counts_in_its_own_registry() -> None:
    # Two in one process (as in tests, or two daemons embedded in one program) never clash.
    first, second = Metrics(), Metrics()
    first.count(ResponseDone("a", "hi", "m", "b", "stop", 1, 1, {"first_chunk": 5.0}))
    first.count(ErrorRaised(None, "timeout", "slow"))
    samples = parse(_text(first))
    assert samples[("tektra_answers_total", (("backend", "b"), ("model", "m")))] == 1
    assert samples[("tektra_errors_total", (("code", "timeout"),))] == 1
    assert not [k for k in parse(_text(second)) if k[0] == "tektra_answers_total"]


def test_pipeline_notices_count_dropped_audio_and_only_a_waited_hangover() -> None:
    metrics = Metrics()
    metrics.count(PipelineNotice("FramesDropped", {"count": 3, "total": 3}))
    metrics.count(PipelineNotice("FramesDropped", {"count": 2, "total": 5}))
    metrics.count(PipelineNotice("SpeechEnded", {"reason": "silence", "hangover_s": 0.7}))
    metrics.count(PipelineNotice("SpeechEnded", {"reason": "max_length", "hangover_s": 0.0}))
    samples = parse(_text(metrics))
    assert samples[("tektra_audio_dropped_chunks_total", ())] == 5
    assert samples[("tektra_stage_seconds_count", (("stage", "hangover"),))] == 1
    assert samples[("tektra_stage_seconds_sum", (("stage", "hangover"),))] == pytest.approx(0.7)


def test_a_spoken_answer_adds_its_first_audible_sample_as_a_stage() -> None:
    metrics = Metrics()
    metrics.count(AnswerSpoken("q", 2, 3.1, "espeak", {"first_audible": 850.0}))
    metrics.count(AnswerSpoken("say-1", 1, 1.0, "espeak", {}))  # no timing: nothing observed
    samples = parse(_text(metrics))
    assert samples[("tektra_stage_seconds_count", (("stage", "first_audible"),))] == 1
    assert samples[("tektra_stage_seconds_sum", (("stage", "first_audible"),))] == pytest.approx(
        0.85
    )


async def test_the_endpoint_closes_when_its_task_is_cancelled() -> None:
    server = MetricsServer(MetricsSettings(port=free_port()), EventBus())
    server.start()
    host, port = server.address
    assert host == "127.0.0.1"
    task = asyncio.create_task(server.run())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def _text(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_each_wake_detected_counts_under_its_wake_word() -> None:
    metrics = Metrics()
    assert not [k for k in parse(_text(metrics)) if k[0] == "tektra_wake_detections_total"]
    for _ in range(2):
        metrics.count(PipelineNotice("WakeDetected", {"name": "okay_nabu", "score": 0.9}))
    samples = parse(_text(metrics))
    assert samples[("tektra_wake_detections_total", (("name", "okay_nabu"),))] == 2
