"""What goes into the model manager and what comes out: queries, streamed answers, status."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from daemon.models.backends.base import GenerationStats, ToolCall, ToolSpec


class Toolbox(Protocol):
    """The actions a model that takes tools may call, for one request (the home's, from
    `daemon.intents.tools`)."""

    def specs(self) -> tuple[ToolSpec, ...]:
        """The tools, their parameters built from what is known now (devices, areas)."""
        ...

    async def call(self, call: ToolCall) -> str:
        """Carry out one call; the sentence that says truly what came of it."""
        ...


@dataclass(frozen=True)
class Query:
    """One question to a model, with whatever it carries besides text."""

    text: str
    session: str | None = None
    """Conversation the question belongs to (each keeps its own history); None: a question
    on its own, with no history and leaving none."""
    model: str | None = None
    """Model id; the configured default (or the first capable model) when None."""
    preset: str | None = None
    images: tuple[bytes, ...] = ()
    audio: bytes | None = None
    video: tuple[bytes, ...] = ()
    """Short clips (any container FFmpeg reads), sampled to `[media].video_frames` frames each."""
    tools: Toolbox | None = None
    """Actions a model that takes tools may call; None: none are offered."""

    @property
    def needs(self) -> frozenset[str]:
        """Capabilities a model must have. Audio is not one: a model without it gets the text
        (the transcript) alone."""
        # A clip reaches models as sampled frames: it needs a model that takes images.
        return frozenset({"text", "image"} if self.images or self.video else {"text"})


@dataclass
class Answer:
    """An answer being streamed: iterate for text chunks; the fields fill in as it goes."""

    query: Query
    _source: Callable[[Answer], AsyncIterator[str]] = field(repr=False)
    model_id: str = ""
    backend: str = ""
    text: str = ""
    stats: GenerationStats = field(default_factory=GenerationStats)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._source(self)


@dataclass(frozen=True)
class ModelInfo:
    id: str
    name: str
    backend: str | None
    """The backend holding it when loaded, else the first it would be tried on."""
    capabilities: tuple[str, ...]
    loaded: bool
    memory_mb: int | None
    problem: str | None
    """Why it cannot be used now (file missing, not pulled), if so."""
    device: str | None = None
    """Where it runs, or would once loaded: `cpu`, `cuda`, `metal`; None where a server
    decides (Ollama, OpenAI-compatible, Anthropic) or a plugin does not say."""


@dataclass(frozen=True)
class BackendStatus:
    enabled: bool
    available: bool
    """False while the backend rests after repeated failures."""
    resting_until: float
    last_error: str
