"""The one contract every inference engine implements, built-in or plugin."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import importlib.util
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from daemon.core.config.schema import Preset, TemplateSource
from daemon.core.devices import DeviceUnavailable, choose
from daemon.core.errors import BackendError, BackendLoadError
from daemon.models.media import data_uri
from daemon.models.templates import Message

log = logging.getLogger("tektra.backends")


@dataclass(frozen=True)
class ModelSpec:
    """What a backend needs to load one model."""

    id: str
    path: Path | None
    """Local weights; None where the engine owns them (an Ollama tag, a remote server's model)."""
    remote_name: str | None
    """Name the engine knows the model by when it owns the weights."""
    template: str
    """`auto` (the model's own chat template), a family name from `daemon.models.templates`, or the
    name of a user's template (`chat_template`)."""
    context_length: int
    capabilities: frozenset[str]
    mmproj: Path | None = None
    hf_config: Path | None = None
    """The original model's config directory, for engines that need it (mistral.rs, multimodal)."""
    chat_template: TemplateSource | None = None
    """The user's Jinja template (`[templates.<template>]`), which the engine must use."""
    device: str | None = None
    """The model's own `device` (auto, cpu, cuda, metal); None: the backend's."""


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings of one request: a preset plus the stop sequences of the model."""

    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @classmethod
    def from_preset(cls, preset: Preset, stop: tuple[str, ...] = ()) -> GenerationParams:
        return cls(**preset.model_dump(), stop=stop)


@dataclass(frozen=True)
class ToolSpec:
    """An action a model may ask for: OpenAI's `function` shape, which llama.cpp, Ollama and
    OpenAI-compatible servers all read."""

    name: str
    description: str
    parameters: dict[str, Any]
    """A JSON schema of an object: what the call's arguments must be."""

    def openai(self) -> dict[str, Any]:
        """As `tools` lists it on the wire."""
        function = {"name": self.name, "description": self.description}
        return {"type": "function", "function": {**function, "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolCall:
    """An action the model asked for; nothing has been done yet."""

    name: str
    arguments: dict[str, Any] | str
    """The arguments as the engine gave them: an object, or text that should hold one (an
    engine without a grammar may send text that is not JSON: the caller says so)."""


@dataclass(frozen=True)
class GenerationRequest:
    messages: tuple[Message, ...]
    params: GenerationParams
    images: tuple[bytes, ...] = ()
    """Encoded images (JPEG/PNG) for the last user turn."""
    audio: bytes | None = None
    """The utterance as 16 kHz mono WAV, for models that take audio."""
    tools: tuple[ToolSpec, ...] = ()
    """Actions the model may call instead of answering (only for models that take tools)."""
    tool_choice: str | None = None
    """None lets the model choose; a tool's name makes it call that one (engines that take a
    grammar then make the call valid)."""


@dataclass
class GenerationStats:
    """Filled in by the backend while it streams; complete once the stream ends."""

    prompt_tokens: int = 0
    prompt_eval_tokens: int = 0
    """Prompt tokens the engine actually evaluated (the rest came from its prompt cache)."""
    completion_tokens: int = 0
    finish_reason: str = ""
    """`stop` (end of turn or a stop sequence), `length` (max_tokens), or `cancelled`."""
    timings_ms: dict[str, float] = field(default_factory=dict)
    tool_calls: list[ToolCall] = field(default_factory=list)
    """The actions the model asked for instead of (or besides) text; carried out by the caller."""


def tool_arguments(text: str | None) -> dict[str, Any] | str:
    """Arguments sent as JSON text (OpenAI's wire form): the object, else the text as it came."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return text or ""
    return value if isinstance(value, dict) else text or ""


def openai_messages(request: GenerationRequest, with_audio: bool = False) -> list[Any]:
    """The conversation in OpenAI's chat format, media in the last user turn.

    Images go as `image_url` data URIs (llama.cpp's multimodal handler, mistral.rs and every
    OpenAI-compatible server read them); the utterance goes as an `input_audio` WAV part only
    where the engine takes one (`with_audio`).
    """
    out: list[Any] = [{"role": m.role, "content": m.content} for m in request.messages]
    parts: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": data_uri(image)}} for image in request.images
    ]
    if with_audio and request.audio:
        audio = base64.b64encode(request.audio).decode("ascii")
        parts.append({"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}})
    if parts:
        parts.append({"type": "text", "text": request.messages[-1].content})
        out[-1] = {"role": "user", "content": parts}
    return out


Progress = Callable[[str, str], None]
"""`(model_id, status)`: something slow a backend is doing for a model (a download, say)."""


@runtime_checkable
class Backend(Protocol):
    """An inference engine. Instances are made by the registry with the backend's settings."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]]
    """Inputs the engine can take at all, and `tools` where it passes tools to models; a model
    still declares its own in models.toml."""
    settings_model: ClassVar[type[BaseModel] | None]
    """Pydantic model of `[backends.<name>]`; None accepts just `enabled`."""

    async def load(self, spec: ModelSpec) -> None:
        """Make the model ready; raise BackendLoadError with the engine's reason on failure."""

    async def unload(self, model_id: str) -> None: ...

    def generate(
        self, model_id: str, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        """Stream the answer as text chunks. Closing the iterator early stops the engine."""
        ...

    async def health(self) -> bool:
        """True when the engine can take work now (a server answers, a library imports)."""
        ...

    def estimate_memory_mb(self, spec: ModelSpec) -> int:
        """Memory the model will take once loaded, for `[memory_limits]`."""
        ...

    def count_tokens(self, model_id: str, text: str) -> int | None:
        """Exact token count with the loaded model's tokenizer, or None if unknown."""
        ...

    async def close(self) -> None:
        """Release everything (all models, connections)."""
        ...


# --- shared plumbing of the built-in backends ------------------------------------------------

ParamNames = Mapping[str, str | tuple[str, ...] | None]
"""How an engine spells each sampling setting of `GenerationParams` (all but `stop`, which each
engine merges with its template's own): a name, several names (servers that read either), or
None where the engine has no such setting."""

SAMPLING = tuple(f.name for f in dataclasses.fields(GenerationParams) if f.name != "stop")
"""The settings a preset gives every request."""

HEALTH_TTL_S = 5.0
"""A health answer is reused this long, so a burst of questions costs one check."""


class EngineBackend:
    """What the built-in backends share (a plugin may inherit it too): presets turned into the
    engine's parameters, the health check cached, and token counts left to the engine.

    Subclasses set `param_names` and implement `probe`."""

    name: ClassVar[str]
    param_names: ClassVar[ParamNames]
    cannot: ClassVar[Mapping[str, str]] = {}
    """Why the engine drops a setting it has no name for, said once in the log."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._health: tuple[float, bool] | None = None
        self._warned: set[str] = set()

    async def health(self) -> bool:
        if self._health is not None and self._clock() - self._health[0] < HEALTH_TTL_S:
            return self._health[1]
        healthy = await self.probe()
        self._health = (self._clock(), healthy)
        return healthy

    async def probe(self) -> bool:
        """Whether the engine can take work now: a server answers, a library is installed."""
        raise NotImplementedError

    def engine_params(self, params: GenerationParams) -> dict[str, Any]:
        """The preset's settings under the engine's names; unset ones (None) are left out, so
        the engine's own default applies."""
        out: dict[str, Any] = {}
        for setting in SAMPLING:
            value = getattr(params, setting)
            if value is None:
                continue
            names = self.param_names[setting]
            if names is None:
                self._warn_once(setting, value)
                continue
            for name in (names,) if isinstance(names, str) else names:
                out[name] = value
        return out

    def _warn_once(self, setting: str, value: object) -> None:
        if setting in self._warned:
            return
        self._warned.add(setting)
        why = self.cannot.get(setting, "the engine has no such setting")
        log.warning("%s: the preset's %s = %r is not applied: %s", self.name, setting, value, why)

    def count_tokens(self, model_id: str, text: str) -> int | None:
        return None

    def device_of(self, spec: ModelSpec) -> str | None:
        """Where the model runs (`cpu`, `cuda`, `metal`), loaded or not; None where a server
        decides. Raises BackendLoadError when the device it asks for is not here."""
        return None


Resident = TypeVar("Resident")
"""What an in-process backend keeps of one loaded model."""


class InProcessBackend(EngineBackend, Generic[Resident]):
    """An engine run in this process (llama.cpp, mistral.rs): its loaded models by id, each
    freed on a worker thread; healthy while its library is installed.

    Subclasses set `library` and implement `release`."""

    library: ClassVar[str]
    """Import name of the engine's library, looked for without importing it (importing an
    engine loads native code: only a load should pay for that)."""

    def __init__(self) -> None:
        super().__init__()
        self._models: dict[str, Resident] = {}

    def release(self, loaded: Resident) -> None:
        """Free one model; runs on a worker thread and may wait for its generation to end."""
        raise NotImplementedError

    def loaded(self, model_id: str) -> Resident:
        """The model, or the BackendError that says it is not loaded."""
        found = self._models.get(model_id)
        if found is None:
            raise BackendError(self.name, f"model '{model_id}' is not loaded")
        return found

    def loaded_ids(self) -> list[str]:
        return list(self._models)

    async def unload(self, model_id: str) -> None:
        loaded = self._models.pop(model_id, None)
        if loaded is not None:
            await asyncio.to_thread(self.release, loaded)

    async def close(self) -> None:
        for model_id in list(self._models):
            await self.unload(model_id)

    async def probe(self) -> bool:
        return importlib.util.find_spec(self.library) is not None

    def choose_device(self, wanted: str, gpu: str | None, engine: str) -> str:
        """`daemon.core.devices.choose`, its refusal as this backend's load error."""
        try:
            return choose(wanted, gpu, engine)
        except DeviceUnavailable as exc:
            raise BackendLoadError(self.name, str(exc)) from exc
