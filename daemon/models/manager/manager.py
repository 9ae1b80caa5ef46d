"""UnifiedModelManager: the one place that picks a model and a backend, loads, and streams answers.

Selection goes: the inputs the query carries (image → "image"), then the model's
`backend_preferences`, then backends that are installed, enabled and not resting after failures.
A backend that fails before its first chunk is skipped for the next one; one that fails after it
has streamed ends the answer with a GenerationError, never a silently truncated answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from pathlib import Path

from daemon.core import sources as model_sources
from daemon.core.config.load import check_file
from daemon.core.config.schema import BUILTIN_BACKENDS, ModelEntry, Preset, TektraConfig
from daemon.core.errors import (
    BackendDisabled,
    BackendError,
    ConfigIssue,
    GenerationError,
    InputTooLong,
    NoBackendAvailable,
    TektraError,
    UnknownBackend,
    UnknownPreset,
)
from daemon.models import media
from daemon.models.backends.base import (
    Backend,
    EngineBackend,
    GenerationParams,
    GenerationRequest,
    GenerationStats,
    ModelSpec,
)
from daemon.models.backends.registry import BackendRegistry
from daemon.models.manager.conversation import Conversation, Sessions, rough_tokens
from daemon.models.manager.health import HealthBook
from daemon.models.manager.memory import MemoryLedger
from daemon.models.manager.query import Answer, BackendStatus, ModelInfo, Query
from daemon.models.manager.routing import Router, StreamTiming
from daemon.models.manager.selection import backend_order, choose_model, describe_needs
from daemon.models.manager.tools import after_tools, system_prompt

LOOK_QUESTION = "What do you see?"
"""What `look` asks of the camera frame when the caller asks nothing."""
DESCRIBE_PROMPT = "Describe this image."

__all__ = [
    "DESCRIBE_PROMPT",
    "LOOK_QUESTION",
    "Answer",
    "BackendStatus",
    "ModelInfo",
    "Query",
    "UnifiedModelManager",
]


class UnifiedModelManager:
    def __init__(
        self,
        config: TektraConfig,
        *,
        registry: BackendRegistry | None = None,
        config_path: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        sessions: Sessions | None = None,
    ) -> None:
        self.config = config
        self.registry = registry or BackendRegistry()
        self._config_path = config_path
        self._clock = clock
        self._backends: dict[str, Backend] = {}
        self._health = HealthBook(config.backends.failure_threshold, config.backends.cooldown_s)
        self._memory = MemoryLedger(
            config.memory_limits.total_mb, dict(config.memory_limits.backends)
        )
        self._sessions = sessions if sessions is not None else Sessions()
        """Conversations outlive the manager: a reload hands them to the next one."""
        self._counts: dict[tuple[str, str], int] = {}  # (tokenizer, text) -> tokens
        self._load_lock = asyncio.Lock()  # one load/evict decision at a time
        self.router = Router(config.routing)
        """`[[routing]]`: which backend answers a routed model's next query, and how each did."""
        self.system_prompt = config.daemon.system_prompt
        self.forced_backend: str | None = None
        self.active_model: str | None = None
        """The model `load_model` chose last; it answers queries that name none (else the
        configured default does)."""
        self.on_progress: Callable[[str, str, str], None] | None = None
        """`(backend, model_id, status)` for slow work a backend reports (Ollama pulls)."""

    # --- the seed's operations -------------------------------------------------------------

    async def load_model(self, model_id: str, backend: str | None = None) -> str:
        """Load a model (on `backend`, or the first that manages); returns the backend's name."""
        model = choose_model(self.config.models, model_id, None, frozenset())
        order, skipped = ([backend], []) if backend else self._order(model, frozenset({"text"}))
        errors: list[str] = []
        for name in order:
            try:
                await self._ensure_loaded(model, name)
                self.active_model = model.id
                return name
            except BackendError as exc:
                errors.append(self._failed(name, exc))
        errors += skipped
        raise NoBackendAvailable(f"model '{model_id}' could not be loaded: {self._why(errors)}")

    async def load_gemma3n(self) -> str:
        """The original Tektra's entry point, kept for its users."""
        return await self.load_model("gemma3n:e4b")

    async def unload_model(self, model_id: str) -> None:
        async with self._load_lock:
            for resident in [r for r in self._memory.residents.values() if r.model_id == model_id]:
                await self.backend(resident.backend).unload(model_id)
                self._memory.remove(model_id, resident.backend)

    def answer(self, query: Query) -> Answer:
        return Answer(query, self._stream)

    async def stream_response(
        self,
        text: str,
        *,
        session: str | None = None,
        model: str | None = None,
        preset: str | None = None,
    ) -> AsyncIterator[str]:
        async for chunk in self.answer(Query(text, session, model, preset)):
            yield chunk

    async def process_input(
        self,
        text: str,
        *,
        session: str | None = None,
        model: str | None = None,
        preset: str | None = None,
    ) -> str:
        return await self._complete(Query(text, session, model, preset))

    async def process_multimodal(
        self,
        text: str | None,
        images: Sequence[bytes] = (),
        audio: bytes | None = None,
        video: Sequence[bytes] = (),
        *,
        session: str | None = None,
        model: str | None = None,
        preset: str | None = None,
    ) -> str:
        query = Query(text or "", session, model, preset, tuple(images), audio, tuple(video))
        return await self._complete(query)

    async def process_video(
        self,
        text: str,
        clips: Sequence[bytes],
        *,
        session: str | None = None,
        model: str | None = None,
        preset: str | None = None,
    ) -> str:
        """Answer about short clips: each is sampled to `[media] video_frames` frames."""
        return await self._complete(Query(text, session, model, preset, video=tuple(clips)))

    async def process_camera_frame(
        self,
        frame: bytes,
        text: str = LOOK_QUESTION,
        *,
        session: str | None = None,
        model: str | None = None,
        preset: str | None = None,
    ) -> str:
        """The seed's "what do you see": one camera frame (JPEG) and a question about it."""
        return await self._complete(Query(text, session, model, preset, (frame,)))

    async def process_image_with_description(
        self,
        image: bytes,
        description: str = DESCRIBE_PROMPT,
        *,
        session: str | None = None,
        model: str | None = None,
        preset: str | None = None,
    ) -> str:
        """An image with the prompt that says what to describe (the socket's `ask` with `image`)."""
        return await self._complete(Query(description, session, model, preset, (image,)))

    async def process_audio_with_transcription(
        self,
        audio: bytes,
        transcript: str,
        *,
        session: str | None = None,
        model: str | None = None,
        preset: str | None = None,
    ) -> str:
        """An utterance (WAV) with its transcript: a model that takes audio gets both, any other
        the transcript alone as the question."""
        return await self._complete(Query(transcript, session, model, preset, audio=audio))

    def switch_backend(self, name: str | None) -> None:
        """Try `name` first for every model from now on (None: back to the configured order)."""
        if name is not None:
            if name not in self.registry:
                known = ", ".join(self.registry.names())
                raise UnknownBackend(f"backend '{name}' is not installed (installed: {known})")
            if not self.config.backends.enabled(name):
                raise BackendDisabled(
                    f"backend '{name}' is disabled: set [backends.{name}] enabled = true"
                )
        self.forced_backend = name

    def set_system_prompt(self, prompt: str) -> None:
        self.system_prompt = prompt

    def forget_session(self, session: str) -> int:
        """Start `session` afresh; returns how many exchanges it held."""
        return self._sessions.forget(session)

    def current(self) -> tuple[str, str] | None:
        """(model id, backend) of the model that answers queries naming none, while it is
        loaded; None when it is not (never loaded, failed, or unloaded to make room)."""
        model_id = self.default_model_id
        holder = self._memory.backend_of(model_id) if model_id is not None else None
        return (model_id, holder) if model_id is not None and holder is not None else None

    @property
    def default_model_id(self) -> str | None:
        return self.active_model or self.config.default_model_id

    async def list_models(self) -> list[ModelInfo]:
        return [await self._info(m) for m in self.config.models]

    async def validate_config(self) -> list[ConfigIssue]:
        """Problems with the configuration file on disk and with the backends it relies on."""
        issues: list[ConfigIssue] = []
        if self._config_path is not None:
            # Reading and checking the file is disk work: off the loop.
            checked = await asyncio.to_thread(check_file, self._config_path, self.registry.names())
            issues += checked[1]
        for name in BUILTIN_BACKENDS:
            if self.config.backends.enabled(name) and name not in self.registry:
                issues.append(ConfigIssue(f"backends.{name}", "enabled but not installed"))
        return issues

    @property
    def sessions(self) -> Sessions:
        return self._sessions

    def adopt_choices(self, old: UnifiedModelManager) -> tuple[list[str], list[str]]:
        """Take over what commands chose on `old` (the manager before a reload).

        A choice is kept unless the new configuration changed that same setting (the file then
        wins) or no longer allows it. Returns (kept, dropped), each in words."""
        kept: list[str] = []
        dropped: list[str] = []
        was, now = old.config, self.config
        if now.routing == was.routing:  # the same comparison goes on: keep what it measured
            self.router = old.router
        if old.system_prompt != was.daemon.system_prompt:
            if now.daemon.system_prompt != was.daemon.system_prompt:
                dropped.append("set_system_prompt: models.toml now sets [daemon] system_prompt")
            else:
                self.system_prompt = old.system_prompt
                kept.append("set_system_prompt")
        if old.forced_backend is not None:
            try:
                self.switch_backend(old.forced_backend)
                kept.append(f"switch_backend {old.forced_backend}")
            except TektraError as exc:
                dropped.append(f"switch_backend {old.forced_backend}: {exc.message}")
        chosen = old.active_model
        if chosen is not None and chosen != was.default_model_id:
            if now.default_model_id != was.default_model_id:
                dropped.append(f"load_model {chosen}: models.toml now sets [daemon] default_model")
            elif now.model(chosen) is None:
                dropped.append(f"load_model {chosen}: models.toml no longer has that model")
            else:
                self.active_model = chosen
                kept.append(f"load_model {chosen}")
        return kept, dropped

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.close()
        self._memory.residents.clear()

    def backend_status(self) -> dict[str, BackendStatus]:
        now = self._clock()
        return {
            name: BackendStatus(
                enabled=self.config.backends.enabled(name),
                available=self._health.available(name, now),
                resting_until=self._health.resting_until(name),
                last_error=self._health.last_error(name),
            )
            for name in self.registry.names()
        }

    def backend(self, name: str) -> Backend:
        """The backend instance, created on first use with its `[backends.<name>]` settings."""
        if name not in self._backends:
            try:
                backend = self.registry.create(name, self.config.backends)
            except Exception as exc:  # a broken plugin must not take the daemon down with it
                raise BackendError(name, f"cannot start: {type(exc).__name__}: {exc}") from exc
            if hasattr(backend, "on_progress"):
                backend.on_progress = lambda model, status: self._progress(name, model, status)
            self._backends[name] = backend
        return self._backends[name]

    # --- internals -------------------------------------------------------------------------

    async def _complete(self, query: Query) -> str:
        answer = self.answer(query)
        async for _ in answer:
            pass
        return answer.text

    def _progress(self, backend: str, model_id: str, status: str) -> None:
        if self.on_progress is not None:
            self.on_progress(backend, model_id, status)

    def _order(
        self, model: ModelEntry, needs: frozenset[str], routed: Sequence[str] = ()
    ) -> tuple[list[str], list[str]]:
        """Backends to try for the model, and why the others of its preferences were left out."""
        order, skipped = backend_order(
            model,
            self.config.backends,
            self.registry,
            self._health,
            self._clock(),
            self.forced_backend,
            routed,
        )
        capable: list[str] = []
        for name in order:
            try:
                accepts = type(self.backend(name)).capabilities
            except BackendError as exc:
                skipped.append(self._failed(name, exc))
                continue
            if needs <= accepts:
                capable.append(name)
            else:
                skipped.append(f"{name}: cannot take {describe_needs(needs)}")
        return capable, skipped

    def _spec(self, model: ModelEntry) -> ModelSpec:
        source = model_sources.resolve(model.id, model.source)
        return ModelSpec(
            id=model.id,
            path=source.path,
            remote_name=source.remote_name,
            template=model.template,
            context_length=model.context_length,
            capabilities=frozenset(model.capabilities),
            mmproj=source.mmproj,
            hf_config=source.hf_config,
            chat_template=self.config.templates.get(model.template),
            device=model.device,
        )

    async def _ensure_loaded(self, model: ModelEntry, name: str) -> Backend:
        async with self._load_lock:
            backend = self.backend(name)
            if not await backend.health():
                raise BackendError(name, "not healthy (its health check failed)")
            resident = self._memory.get(model.id, name)
            if resident is not None:
                resident.last_used = self._clock()
                return backend
            spec, estimate = await asyncio.to_thread(self._estimate, model, backend)
            mb = model.memory_mb or estimate
            for old in self._memory.plan(model.id, name, mb):
                await self.backend(old.backend).unload(old.model_id)
                self._memory.remove(old.model_id, old.backend)
            await backend.load(spec)
            self._memory.add(model.id, name, mb, self._clock())
            return backend

    def _failed(self, name: str, exc: BackendError) -> str:
        """Record the failure against the backend; return the reason as the user will read it."""
        self._health.record_failure(name, exc.reason, self._clock())
        return f"{name}: {exc.reason}"

    @staticmethod
    def _why(reasons: list[str]) -> str:
        return "; ".join(reasons) if reasons else "no backend is enabled for it"

    def _preset(self, name: str | None) -> Preset:
        key = name or self.config.daemon.preset
        if key not in self.config.presets:
            raise UnknownPreset(
                f"no preset '{key}' (presets: {', '.join(sorted(self.config.presets))})"
            )
        return self.config.presets[key]

    async def _stream(self, answer: Answer) -> AsyncIterator[str]:
        query = answer.query
        model = choose_model(self.config.models, query.model, self.default_model_id, query.needs)
        preset = self._preset(query.preset)
        images = await asyncio.to_thread(self._media, query) if query.needs != {"text"} else ()
        order, skipped = self._order(model, query.needs, self.router.backends(model.id))
        if self.forced_backend is None:  # switch_backend outranks the A/B shares
            order = self.router.arrange(model.id, order)
        errors: list[str] = []
        for name in order:
            try:
                backend = await self._ensure_loaded(model, name)
            except BackendError as exc:
                errors.append(self._failed(name, exc))
                self.router.failed(model.id, name)
                continue
            resident = self._memory.get(model.id, name)
            assert resident is not None
            resident.busy += 1
            try:
                request, counted = self._request(query, model, preset, backend, images)
                answer.model_id, answer.backend, answer.stats = model.id, name, GenerationStats()
                streamed = False
                # With tools, the model's text waits for the end of its turn: said before a
                # call, it could claim what the call then fails to do.
                held: list[str] | None = [] if request.tools else None
                timing = StreamTiming(time.monotonic())
                try:
                    async with aclosing(
                        backend.generate(model.id, request, answer.stats)
                    ) as chunks:
                        async for chunk in chunks:
                            if held is not None:
                                held.append(chunk)
                                continue
                            streamed = True
                            timing.chunk(time.monotonic())
                            answer.text += chunk
                            yield chunk
                except BackendError as exc:
                    errors.append(self._failed(name, exc))
                    self.router.failed(model.id, name)
                    if streamed:
                        raise GenerationError(name, f"the answer broke off: {exc.reason}") from exc
                    continue
                if held is not None:
                    said = await after_tools(query, answer, "".join(held))
                    if said:
                        streamed = True
                        timing.chunk(time.monotonic())
                        answer.text = said
                        yield said
            finally:
                resident.busy -= 1
                resident.last_used = self._clock()
            self._health.record_success(name)
            if streamed and answer.stats.finish_reason != "cancelled":
                first, rate = timing.result(time.monotonic(), answer.stats.completion_tokens)
                self.router.answered(model.id, name, first, rate)
            if answer.stats.finish_reason != "cancelled" and query.session is not None:
                self._sessions.get(query.session).add(query.text, answer.text, counted)
            return
        raise NoBackendAvailable(
            f"no backend could answer with model '{model.id}': {self._why(errors + skipped)}"
        )

    def _media(self, query: Query) -> tuple[bytes, ...]:
        """The query's images and clip frames, checked and scaled (runs on a worker thread)."""
        limits = self.config.media
        image_bytes, video_bytes = (
            int(limits.max_image_mb * 2**20),
            int(limits.max_video_mb * 2**20),
        )
        images = [
            media.prepare_image(data, limits.max_side, image_bytes, f"image {i + 1}")
            for i, data in enumerate(query.images)
        ]
        for clip in query.video:
            images += media.sample_video(clip, limits.video_frames, limits.max_side, video_bytes)
        return tuple(images)

    def _request(
        self,
        query: Query,
        model: ModelEntry,
        preset: Preset,
        backend: Backend,
        images: tuple[bytes, ...],
    ) -> tuple[GenerationRequest, dict[str, int]]:
        """The request, and the question's tokens by tokenizer (kept with its exchange)."""

        def count(text: str) -> int:
            exact = backend.count_tokens(model.id, text)
            return exact if exact is not None else rough_tokens(text)

        # Only the new question is counted afresh; the system prompt and earlier exchanges keep
        # their counts, per tokenizer (exact once the model is loaded, else rough).
        exact = backend.count_tokens(model.id, query.text)
        tokenizer = f"{type(backend).name}:{model.id}" if exact is not None else "rough"
        question = exact if exact is not None else rough_tokens(query.text)
        offered = (
            query.tools is not None
            and "tools" in model.capabilities
            and "tools" in type(backend).capabilities
        )
        tools = query.tools.specs() if offered and query.tools is not None else ()
        system = system_prompt(self.system_prompt, bool(tools), self.config.intents.enabled)
        # 16: the template's own tokens
        fixed = self._count(tokenizer, system, count) + question + 16
        if fixed >= model.context_length:
            raise InputTooLong(
                f"the question and system prompt take about {fixed} tokens, more than model "
                f"'{model.id}' can read ({model.context_length}); shorten them"
            )
        room = model.context_length - fixed - preset.max_tokens
        budget = max(0, min(self.config.daemon.history_tokens, room))
        conversation = (
            self._sessions.get(query.session) if query.session is not None else Conversation()
        )
        messages = conversation.messages(system, query.text, budget, count, tokenizer)
        request = GenerationRequest(
            messages,
            GenerationParams.from_preset(preset, tuple(model.stop)),
            images=images,
            audio=query.audio if "audio" in model.capabilities else None,
            tools=tools,
        )
        return request, {tokenizer: question}

    def _count(self, tokenizer: str, text: str, count: Callable[[str], int]) -> int:
        """Tokens of a text that comes back with every query (the system prompt), counted once."""
        key = (tokenizer, text)
        if key not in self._counts:
            if len(self._counts) > 64:
                self._counts.clear()
            self._counts[key] = count(text)
        return self._counts[key]

    def _estimate(self, model: ModelEntry, backend: Backend | None) -> tuple[ModelSpec, int]:
        """The model's spec and its memory on `backend`: file-system work (the GGUF header walk
        among it), run on a worker thread."""
        spec = self._spec(model)
        return spec, backend.estimate_memory_mb(spec) if backend is not None else 0

    async def _device(self, model: ModelEntry, name: str | None) -> str | None:
        """Where `model` runs (or would) on backend `name`; None where a server decides."""
        backend = self.backend(name) if name is not None else None
        if not isinstance(backend, EngineBackend):
            return None
        return await asyncio.to_thread(lambda: backend.device_of(self._spec(model)))

    async def _info(self, model: ModelEntry) -> ModelInfo:
        holder = self._memory.backend_of(model.id)
        resident = self._memory.get(model.id, holder) if holder else None
        problem = None
        memory = resident.mb if resident else model.memory_mb
        preferred = list(model.backend_preferences or self.config.backends.default)
        candidate = holder or next((b for b in preferred if b in self.registry), None)
        device = None
        try:
            backend = self.backend(candidate) if memory is None and candidate else None
            _, estimate = await asyncio.to_thread(self._estimate, model, backend)
            memory = memory if backend is None else estimate
            device = await self._device(model, candidate)
        except TektraError as exc:
            problem = exc.message
        return ModelInfo(
            id=model.id,
            name=model.name or model.id,
            backend=candidate,
            capabilities=tuple(model.capabilities),
            loaded=resident is not None,
            memory_mb=memory,
            problem=problem,
            device=device,
        )
