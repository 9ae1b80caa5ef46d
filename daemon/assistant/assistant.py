"""The assistant: answers queries through the model manager and tells the bus what happens.

Whichever way a query comes in (socket, MQTT, the voice pipeline), it goes through `answer`, which
publishes the state (thinking → responding → idle), every chunk and the complete answer with its
timings, or the error. Answers run one at a time, so the published state is always true, and a
reload swaps the model manager only between answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.core.config.load import check_file
from daemon.core.config.schema import TektraConfig
from daemon.core.errors import ConfigError, TektraError
from daemon.core.events import (
    ErrorRaised,
    EventBus,
    MicrophoneChanged,
    ModelChanged,
    ModelProgress,
    RequestId,
    ResponseChunk,
    ResponseDone,
    StateChanged,
    TranscriptReady,
)
from daemon.core.states import StateName
from daemon.intents.engine import ANSWERED_BY
from daemon.models.backends.registry import BackendRegistry
from daemon.models.manager.conversation import Sessions
from daemon.models.manager.manager import Query, UnifiedModelManager
from daemon.models.manager.query import Toolbox

log = logging.getLogger("tektra.assistant")

ChunkSink = Callable[[str], None]
"""Takes each chunk without waiting: it is called under the answer lock, so awaiting a client's
I/O there would stall every other answer."""


class ShuttingDown(TektraError):
    code = "shutting_down"


class NothingToReload(TektraError):
    code = "no_config"


@dataclass(frozen=True)
class Reloaded:
    """What a reload did: the new configuration, and the runtime choices it kept or dropped."""

    config: TektraConfig
    kept: list[str] = field(default_factory=list)
    """Commands whose effect still applies (e.g. `set_system_prompt`)."""
    dropped: list[str] = field(default_factory=list)
    """Commands whose effect ended, each with why."""


@dataclass(eq=False)
class _Running:
    """An answer asked for and not finished yet: waiting for its turn, or streaming."""

    id: RequestId
    stop: ShuttingDown | None = None
    """Set when it was stopped: None for a `cancel` command, the error for a shutdown."""
    stopped: bool = False
    streaming: bool = False
    """Its turn came: it is the answer running now."""
    task: asyncio.Future[Any] | None = None
    """What it awaits: its turn, then the streaming (cancelling that stops the engine)."""


class Assistant:
    """The daemon's one answering path, its state, and its configuration."""

    def __init__(
        self,
        config: TektraConfig,
        config_path: Path | None,
        bus: EventBus,
        registry: BackendRegistry | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.bus = bus
        self.registry = registry or BackendRegistry()
        self.manager = self._new_manager(config, Sessions())
        self.state: StateName = "idle"
        self.detail = ""
        self.problems: dict[str, str] = {}
        self.muted = False
        """The one record of mute; whoever applies it (the microphone) listens in `on_muted`."""
        self.on_muted: list[Callable[[bool], None]] = []
        self.loading: str | None = None
        """The model being loaded as the default, while it loads."""
        self.answers = 0
        self._running: list[_Running] = []
        self.intents: Callable[[RequestId, str], Awaitable[str | None]] | None = None
        """Asked first with a request's text: its reply (the request was carried out, e.g. a
        light switched) or None (the model answers). Set by the service (`daemon.intents`)."""
        self.tools: Callable[[RequestId, str], Toolbox | None] | None = None
        """The actions a model that takes tools may call for a request the intents left to it
        (`daemon.intents.tools`); set by the service."""
        self._lock = asyncio.Lock()  # one answer (or reload) at a time
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    def _new_manager(self, config: TektraConfig, sessions: Sessions) -> UnifiedModelManager:
        """A manager whose backends' progress reports (Ollama pulls) become bus events."""
        manager = UnifiedModelManager(
            config, registry=self.registry, config_path=self.config_path, sessions=sessions
        )
        manager.on_progress = lambda backend, model, status: self.bus.publish(
            ModelProgress(backend, model, status)
        )
        return manager

    # --- state -------------------------------------------------------------------------------

    @property
    def model(self) -> str | None:
        """The model answering queries that name none, while it is loaded (else None)."""
        current = self.manager.current()
        return current[0] if current else None

    @property
    def backend(self) -> str | None:
        """The backend holding `model`, while it is loaded (else None)."""
        current = self.manager.current()
        return current[1] if current else None

    def set_state(self, state: StateName, detail: str = "") -> None:
        if (state, detail) != (self.state, self.detail):
            self.state, self.detail = state, detail
            self.bus.publish(StateChanged(state, detail))

    def set_problem(self, source: str, problem: str | None) -> None:
        """A lost device or a model that would not load, until `source` reports back with None.

        Problems are facts of their own (`status` lists them); they do not change the resting
        state: a headless machine without a microphone still answers text and rests `idle`."""
        if problem is None:
            self.problems.pop(source, None)
        else:
            self.problems[source] = problem

    def settle(self) -> None:
        """Back to rest: `idle`."""
        self.set_state("idle")

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        for apply in self.on_muted:
            apply(muted)
        self.bus.publish(MicrophoneChanged(muted))

    # --- answering ---------------------------------------------------------------------------

    async def answer(
        self,
        request_id: RequestId,
        query: Query,
        on_chunk: ChunkSink | None = None,
        *,
        transcript: str | None = None,
        stages_ms: dict[str, float] | None = None,
    ) -> ResponseDone:
        """Answer `query`, streaming chunks to `on_chunk` and to the bus (errors go there too).

        `transcript` (what was heard) is published first; `stages_ms` are timings of stages
        before this one (speech-to-text) that go into the response's `timings_ms`."""
        self._in_flight += 1
        self._idle.clear()
        running = _Running(request_id)
        self._running.append(running)
        try:
            if self._closing:
                raise ShuttingDown("the daemon is shutting down; ask again when it is back")
            if await self._wait_turn(running):
                try:
                    done = await self._answer(running, query, on_chunk, transcript)
                finally:
                    self._lock.release()
            elif running.stop is not None:
                raise ShuttingDown(running.stop.message)
            else:  # cancelled while it waited: the answer running now keeps the state
                done = ResponseDone(request_id, "", "", "", "cancelled", 0, 0)
        except TektraError as exc:
            self.bus.publish(ErrorRaised(request_id, exc.code, exc.message))
            raise
        finally:
            self._running.remove(running)
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        if stages_ms:
            done = dataclasses.replace(done, timings_ms={**stages_ms, **done.timings_ms})
        self.bus.publish(done)
        if running.streaming:
            self.settle()
        return done

    async def _wait_turn(self, running: _Running) -> bool:
        """Take the answering lock; False if the answer was stopped while it waited."""
        turn = running.task = asyncio.ensure_future(self._lock.acquire())
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._lock.release()  # granted just as our caller was cancelled
            if not running.stopped or _caller_cancelled():
                raise
            return False
        return True

    async def _answer(
        self, running: _Running, query: Query, on_chunk: ChunkSink | None, transcript: str | None
    ) -> ResponseDone:
        request_id = running.id
        if transcript is not None:
            self.bus.publish(TranscriptReady(request_id, transcript))
        started = time.monotonic()
        if self.intents is not None and query.text:  # spoken ones carry their audio too
            said = await self.intents(request_id, query.text)
            if said is not None:
                running.streaming = True  # it answered: the state settles after it
                return self._intent_done(request_id, said, on_chunk, started)
        if self.tools is not None and query.tools is None:
            query = dataclasses.replace(query, tools=self.tools(request_id, query.text))
        # Only now: `cancel` stops what `thinking` shows, the model's answer.
        self.set_state("thinking")
        first: float | None = None
        seq = 0
        answer = self.manager.answer(query)

        async def stream() -> None:
            nonlocal first, seq
            async for chunk in answer:
                if first is None:
                    first = time.monotonic()
                    self.set_state("responding")
                self.bus.publish(ResponseChunk(request_id, seq, chunk))
                seq += 1
                if on_chunk is not None:
                    on_chunk(chunk)

        try:
            running.streaming = True
            # A task of its own, so `stop` can end the engine's stream without ending the caller
            # (a connection, the voice pipeline), which then reports how the answer ended.
            running.task = asyncio.create_task(stream(), name=f"answer {request_id}")
            await running.task
        except asyncio.CancelledError:
            self.settle()
            if not running.stopped or _caller_cancelled():
                raise
        except BaseException:
            self.settle()
            raise
        if running.stop is not None:
            self.settle()
            raise ShuttingDown(running.stop.message)
        total = time.monotonic() - started
        timings = {f"engine_{k}": v for k, v in answer.stats.timings_ms.items()}
        timings["first_chunk"] = round(((first or started) - started) * 1000, 1)
        timings["total"] = round(total * 1000, 1)
        done = ResponseDone(
            id=request_id,
            text=answer.text,
            model=answer.model_id,
            backend=answer.backend,
            finish_reason="cancelled" if running.stopped else answer.stats.finish_reason,
            prompt_tokens=answer.stats.prompt_tokens,
            completion_tokens=answer.stats.completion_tokens,
            timings_ms=timings,
        )
        self.answers += 1
        return done

    def stop(
        self, target: RequestId | None = None, *, reason: ShuttingDown | None = None
    ) -> list[RequestId]:
        """Stop the answer streaming now, or every answer (running or waiting) with request id
        `target`; the engine stops with it. Each ends with `finish_reason` `cancelled`, or with
        `reason` raised (a shutdown). Returns the ids of the answers stopped."""
        if target is None:
            chosen = [r for r in self._running if r.streaming]
        else:
            # `1` and `"1"` name the same request: a client may not keep the id's type.
            chosen = [r for r in self._running if str(r.id) == str(target)]
        # An answer that already finished streaming is not "cancelled": it is complete.
        chosen = [r for r in chosen if r.task is None or r.task.cancel()]
        for running in chosen:
            running.stopped, running.stop = True, reason
        return [r.id for r in chosen]

    def stop_all(self, reason: ShuttingDown) -> int:
        """Stop every answer, running or waiting (a shutdown); returns how many."""
        ids = {running.id for running in self._running}
        return sum(len(self.stop(request_id, reason=reason)) for request_id in ids)

    def _intent_done(
        self, request_id: RequestId, said: str, on_chunk: ChunkSink | None, started: float
    ) -> ResponseDone:
        """The response of a request carried out without the model: one chunk, no tokens."""
        self.set_state("responding")
        self.bus.publish(ResponseChunk(request_id, 0, said))
        if on_chunk is not None:
            on_chunk(said)
        self.answers += 1
        total = round((time.monotonic() - started) * 1000, 1)
        timings = {"first_chunk": total, "total": total}
        return ResponseDone(request_id, said, ANSWERED_BY, ANSWERED_BY, "intent", 0, 0, timings)

    # --- models and configuration ------------------------------------------------------------

    async def load_model(self, model_id: str, backend: str | None = None) -> str:
        async with self._lock:
            self.loading = model_id
            self.set_state("loading", f"model {model_id}")
            try:
                name = await self.manager.load_model(model_id, backend)
            finally:
                self.loading = None
                self.settle()
        self.set_problem("model", None)
        self.bus.publish(ModelChanged(model_id, name))
        return name

    async def reload(self) -> Reloaded:
        """Read models.toml again; on any error keep the running configuration and raise them all.

        Settings of [mqtt] and the socket path take effect at the next start: the links they
        describe are up and serving now. What commands changed at run time (system prompt,
        backend, model) is kept unless models.toml changed that same setting or no longer allows
        it; either way the result says so. Conversations are kept.
        """
        if self.config_path is None:
            raise NothingToReload("the daemon was started without a configuration file to reload")
        # Reading and checking the file is disk work: off the loop.
        config, issues = await asyncio.to_thread(
            check_file, self.config_path, self.registry.names()
        )
        if issues or config is None:
            raise ConfigError(issues)
        async with self._lock:
            old = self.manager
            self.manager = self._new_manager(config, old.sessions)
            kept, dropped = self.manager.adopt_choices(old)
            self.config = config
            await old.close()
        log.info("configuration reloaded from %s", self.config_path)
        for reason in dropped:
            log.warning("reload: %s", reason)
        model_id = self.manager.default_model_id
        if model_id is not None:
            try:
                await self.load_model(model_id)
            except TektraError as exc:
                self.set_problem("model", exc.message)
                raise
        return Reloaded(config, kept, dropped)

    # --- shutdown ----------------------------------------------------------------------------

    def refuse_new(self) -> None:
        """From now on, new queries are refused with `shutting_down`."""
        self._closing = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait (bounded) for the answers in flight to finish; False if some are still running."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self) -> None:
        await self.manager.close()


def _caller_cancelled() -> bool:
    """Whether the current task itself is being cancelled (not only a task it awaited)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+; 3.10 cannot tell
    return bool(cancelling is not None and cancelling())
