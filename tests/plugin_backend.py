"""A test backend, registered through the `tektra.backends` entry points exactly like a plugin.

It answers "You said: <last user message>" word by word and records every call, so tests can see
what the manager sent (messages, presets, images) and in which order backends were tried. Its
failures are real exceptions raised where a real engine raises them (load, mid-stream), switched on
from its `[backends.<name>]` table.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from daemon.core.errors import BackendError, BackendLoadError
from daemon.models.backends.base import GenerationRequest, GenerationStats, ModelSpec


class RecorderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    fail_load: bool = False
    fail_after_chunks: int | None = None
    chunk_delay_s: float = 0.0
    memory_mb: int = 100
    pause_after: int | None = None
    """After this many words, the answer waits while `pause_file` exists (a test's hold)."""
    pause_file: str | None = None


@dataclass
class Call:
    kind: str
    model_id: str
    request: GenerationRequest | None = None


@dataclass
class RecordingBackend:
    settings: RecorderSettings
    calls: list[Call] = field(default_factory=list)
    loaded: set[str] = field(default_factory=set)
    counted: list[str] = field(default_factory=list)
    """Every text whose tokens the manager asked to count, in order."""

    name: ClassVar[str] = "recorder"
    capabilities: ClassVar[frozenset[str]] = frozenset({"text", "image"})
    settings_model: ClassVar[type[BaseModel]] = RecorderSettings

    async def load(self, spec: ModelSpec) -> None:
        self.calls.append(Call("load", spec.id))
        if self.settings.fail_load:
            raise BackendLoadError(self.name, f"cannot load model '{spec.id}': engine refused")
        self.loaded.add(spec.id)

    async def unload(self, model_id: str) -> None:
        self.calls.append(Call("unload", model_id))
        self.loaded.discard(model_id)

    async def generate(
        self, model_id: str, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        self.calls.append(Call("generate", model_id, request))
        words = f"You said: {request.messages[-1].content}".split(" ")
        stats.prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        try:
            for i, word in enumerate(words):
                if (
                    self.settings.fail_after_chunks is not None
                    and i == self.settings.fail_after_chunks
                ):
                    raise BackendError(self.name, "connection reset by peer")
                await asyncio.sleep(self.settings.chunk_delay_s)
                if i == self.settings.pause_after:
                    await _while_exists(Path(self.settings.pause_file or ""))
                yield word if i == 0 else f" {word}"
                stats.completion_tokens += 1
            stats.finish_reason = "stop"
        except asyncio.CancelledError:
            stats.finish_reason = "cancelled"
            raise

    async def health(self) -> bool:
        return True

    def estimate_memory_mb(self, spec: ModelSpec) -> int:
        return self.settings.memory_mb

    def count_tokens(self, model_id: str, text: str) -> int | None:
        self.counted.append(text)
        return len(text.split())

    async def close(self) -> None:
        self.loaded.clear()

    def generations(self) -> list[GenerationRequest]:
        return [c.request for c in self.calls if c.kind == "generate" and c.request is not None]


async def _while_exists(path: Path) -> None:
    # A file's existence has no event to wait on: look again every 20 ms.
    while await asyncio.to_thread(path.is_file):  # noqa: ASYNC110
        await asyncio.sleep(0.02)


def write_distribution(site: Path) -> None:
    """Install this module as a plugin distribution into `site` (a directory on sys.path).

    It declares `recorder` and `flaky` (this backend twice, configured apart) and `broken`,
    whose module does not exist, as a plugin with a bad install would.
    """
    info = site / "tektra_test_plugin-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tektra-test-plugin\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[tektra.backends]\n"
        "recorder = tests.plugin_backend:RecordingBackend\n"
        "flaky = tests.plugin_backend:RecordingBackend\n"
        "broken = tests.plugin_backend_missing:Backend\n"
    )
