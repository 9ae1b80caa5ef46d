"""Prometheus metrics: the event bus, counted, and served at `GET /metrics` when `[metrics] port`
is set.

A room of its own: it subscribes to the bus like any other sink, so the hot paths only publish the
events they already publish. Everything lives in a private `CollectorRegistry`, never the global
one, so two daemons (or many tests) in one process never count into each other. The HTTP server is
prometheus_client's own, in a daemon thread: a scrape never runs on the event loop, and the metric
types are thread-safe. Gauges that describe the present (the MQTT outbox) are read at scrape time.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable, Iterable
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.core.config.schema import MetricsSettings
from daemon.core.errors import TektraError
from daemon.core.events import ErrorRaised, Event, EventBus, PipelineNotice, ResponseDone
from daemon.frontends.mqtt.outbox import Outbox
from daemon.speech.speaker import AnswerSpoken

log = logging.getLogger("tektra.metrics")

# Stage label → the key of ResponseDone.timings_ms it is read from.
ANSWER_STAGES = {"speech_to_text": "stt", "first_chunk": "first_chunk", "total": "total"}
# From a quick utterance's hangover (~0.3 s) to a slow model's long answer.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MetricsUnavailable(TektraError):
    """The metrics endpoint cannot listen where `[metrics]` says."""

    code = "metrics_unavailable"


class Metrics:
    """The daemon's counters and histograms, fed by bus events."""

    def __init__(self, outbox: Outbox | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.stage_seconds = Histogram(
            "tektra_stage_seconds",
            "Latency of each stage of a query: hangover (silence waited for before an utterance "
            "closed), speech_to_text, first_chunk (time to the first text), total (the answer), "
            "first_audible (time to the first sample of a spoken answer leaving the device)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.answers = Counter(
            "tektra_answers",
            "Answers given, by the model and the backend that gave them",
            ["model", "backend"],
            registry=self.registry,
        )
        self.errors = Counter(
            "tektra_errors",
            "Errors reported on the bus (the `error` event), by code",
            ["code"],
            registry=self.registry,
        )
        self.audio_dropped = Counter(
            "tektra_audio_dropped_chunks",
            "Audio chunks dropped because the voice pipeline fell behind",
            registry=self.registry,
        )
        self.missed = 0
        """Bus events this room lost by falling behind (then the counts above are low)."""
        self.registry.register(_LiveState(outbox, lambda: self.missed))
        # Labelled by the wake word: no sample exists until a wake is heard (none at all unless
        # `[audio.wake] engine = "micro"`), rather than one that always says 0.
        self.wake_detections = Counter(
            "tektra_wake_detections",
            "Wake words heard in the audio, by wake-word model",
            ["name"],
            registry=self.registry,
        )

    def count(self, event: Event) -> None:
        """Count one bus event."""
        if isinstance(event, ResponseDone):
            self.answers.labels(event.model, event.backend).inc()
            for stage, key in ANSWER_STAGES.items():
                if key in event.timings_ms:
                    self.stage_seconds.labels(stage).observe(event.timings_ms[key] / 1000)
        elif isinstance(event, AnswerSpoken) and "first_audible" in event.timings_ms:
            # Counted from the request, on the clock of the response's own timings.
            first_audible = event.timings_ms["first_audible"] / 1000
            self.stage_seconds.labels("first_audible").observe(first_audible)
        elif isinstance(event, ErrorRaised):
            self.errors.labels(event.code).inc()
        elif isinstance(event, PipelineNotice):
            self._on_pipeline(event.name, event.data)

    def _on_pipeline(self, name: str, data: dict[str, Any]) -> None:
        # Only an utterance that silence closed waited a hangover; a cap, the end of a stream or
        # muting cut it without waiting.
        waited = data.get("reason") in ("silence", "early")
        if name == "SpeechEnded" and waited and isinstance(data.get("hangover_s"), float | int):
            self.stage_seconds.labels("hangover").observe(data["hangover_s"])
        elif name == "FramesDropped" and isinstance(data.get("count"), int):
            self.audio_dropped.inc(data["count"])
        elif name == "WakeDetected" and isinstance(data.get("name"), str):
            self.wake_detections.labels(data["name"]).inc()


class _LiveState(Collector):
    """Values read when scraped: they describe the present, not a history of events."""

    def __init__(self, outbox: Outbox | None, missed: Callable[[], int]) -> None:
        self._outbox = outbox
        self._missed = missed

    def collect(self) -> Iterable[Metric]:
        # Runs in the server's thread: it only reads two ints, which the loop updates atomically.
        outbox = self._outbox
        if outbox is not None:  # no MQTT link, no outbox metrics (rather than a false 0)
            yield GaugeMetricFamily(
                "tektra_mqtt_outbox_messages",
                "Messages waiting in the MQTT outbox for the broker",
                value=len(outbox),
            )
            yield CounterMetricFamily(
                "tektra_mqtt_outbox_dropped",
                "Messages dropped from a full MQTT outbox",
                value=outbox.dropped,
            )
        yield CounterMetricFamily(
            "tektra_metrics_missed_events",
            "Bus events the metrics missed by falling behind (the other counts are then low)",
            value=self._missed(),
        )


class MetricsServer:
    """Counts bus events into `Metrics` and serves them over HTTP."""

    def __init__(
        self,
        settings: MetricsSettings,
        bus: EventBus,
        outbox: Outbox | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics(outbox)
        # Subscribed now, not when `run` starts: no event between startup and then goes uncounted.
        self._events = bus.subscribe(maxsize=10_000)
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where the endpoint listens (the real port when `[metrics] port` was taken by the OS)."""
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Listen, or raise MetricsUnavailable saying what to change."""
        port, bind = self.settings.port or 0, self.settings.bind
        try:
            self._server, self._thread = start_http_server(
                port, addr=bind, registry=self.metrics.registry
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                why = f"port {port} on {bind} is already in use: set another [metrics] port"
            else:
                reason = exc.strerror or exc
                why = f"cannot listen on {bind}:{port} ({reason}): check [metrics] bind"
            raise MetricsUnavailable(f"metrics endpoint: {why}") from None
        log.info("metrics at http://%s:%d/metrics", *self.address)

    async def run(self) -> None:
        """Count events until cancelled; then close the endpoint."""
        try:
            while True:
                event = await self._events.get()
                self.metrics.missed = self._events.dropped
                self.metrics.count(event)
        except asyncio.CancelledError:
            self._events.close()
            await asyncio.to_thread(self._close)  # shutdown() waits out the server's poll
            raise

    def _close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
