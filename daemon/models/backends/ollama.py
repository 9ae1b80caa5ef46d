"""An Ollama server, through the official `ollama` AsyncClient.

The server owns the weights; a model's tag is its `ollama` source (or its id). Loading asks the
server about the tag (pulling it first when `auto_pull` is set) and warms it with `keep_alive`;
answers stream as NDJSON chat chunks with images as base64 in `messages[].images`; tools go in
the chat's `tools` and come back as `message.tool_calls`. Every server
error (missing model, out of memory, connection refused) becomes a BackendError, so the manager
falls back to the next backend.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from daemon.core.config.schema import OllamaSettings
from daemon.core.errors import BackendError, BackendLoadError
from daemon.models.backends.base import (
    EngineBackend,
    GenerationRequest,
    GenerationStats,
    ModelSpec,
    ParamNames,
    Progress,
    ToolCall,
)

if TYPE_CHECKING:
    from ollama import AsyncClient

log = logging.getLogger(__name__)

# What Ollama's /api/show calls the capabilities models.toml names.
OLLAMA_CAPABILITY = {"image": "vision", "audio": "audio"}


class OllamaBackend(EngineBackend):
    name: ClassVar[str] = "ollama"
    capabilities: ClassVar[frozenset[str]] = frozenset({"text", "image", "tools"})
    settings_model: ClassVar[type[OllamaSettings]] = OllamaSettings
    param_names: ClassVar[ParamNames] = {  # the `options` of Ollama's chat API
        "max_tokens": "num_predict",
        "temperature": "temperature",
        "top_p": "top_p",
        "top_k": "top_k",
        "min_p": "min_p",
        "repeat_penalty": "repeat_penalty",
        "seed": "seed",
    }

    def __init__(self, settings: OllamaSettings) -> None:
        super().__init__()
        self._settings = settings
        self._client: AsyncClient | None = None
        self._tags: dict[str, str] = {}  # model id -> Ollama tag
        self.warnings: list[str] = []
        """Mismatches between models.toml and what the server reports, newest last."""
        self.on_progress: Progress | None = None
        """Told how a pull is going; the manager passes it on as events."""

    def _api(self) -> AsyncClient:
        if self._client is None:
            from ollama import AsyncClient

            self._client = AsyncClient(host=self._settings.host, timeout=self._settings.timeout_s)
        return self._client

    async def load(self, spec: ModelSpec) -> None:
        import ollama

        tag = spec.remote_name or spec.id
        try:
            try:
                shown = await self._api().show(tag)
            except ollama.ResponseError as exc:
                if exc.status_code != 404 or not self._settings.auto_pull:
                    raise
                await self._pull(spec.id, tag)
                shown = await self._api().show(tag)
            self._check_capabilities(spec, tag, shown.capabilities or [])
            # An empty generate loads the model into the server's memory for keep_alive.
            await self._api().generate(model=tag, prompt="", keep_alive=self._settings.keep_alive)
        except (ollama.ResponseError, ConnectionError, httpx.HTTPError, ValueError) as exc:
            raise BackendLoadError(self.name, self._reason(exc, tag)) from exc
        self._tags[spec.id] = tag

    async def _pull(self, model_id: str, tag: str) -> None:
        log.info("pulling %s from the Ollama library (auto_pull is on)", tag)
        last = ""
        async for progress in await self._api().pull(tag, stream=True):
            status = progress.status or ""
            if progress.total and progress.completed is not None:
                status += f" {100 * progress.completed // progress.total}%"
            if status != last:
                log.info("pull %s: %s", tag, status)
                if self.on_progress is not None:
                    self.on_progress(model_id, f"pull {tag}: {status}")
                last = status

    def _check_capabilities(self, spec: ModelSpec, tag: str, reported: list[str]) -> None:
        for ours, theirs in OLLAMA_CAPABILITY.items():
            if (ours in spec.capabilities) != (theirs in reported):
                says = "has" if theirs in reported else "lacks"
                gives = "gives" if ours in spec.capabilities else "does not give"
                warning = (
                    f"models.toml {gives} model '{spec.id}' the {ours} capability, "
                    f"but Ollama says {tag} {says} {theirs}"
                )
                log.warning("%s", warning)
                self.warnings.append(warning)

    async def unload(self, model_id: str) -> None:
        import ollama

        tag = self._tags.pop(model_id, None)
        if tag is None:
            return
        try:  # keep_alive=0 asks the server to free the model now
            await self._api().generate(model=tag, prompt="", keep_alive=0)
        except (ollama.ResponseError, ConnectionError, httpx.HTTPError, ValueError) as exc:
            log.warning("could not unload %s from Ollama: %s", tag, exc)

    async def close(self) -> None:
        for model_id in list(self._tags):
            await self.unload(model_id)
        if self._client is not None:
            await self._client.close()  # type: ignore[no-untyped-call]  # untyped in ollama
            self._client = None

    async def probe(self) -> bool:
        import ollama

        try:
            await self._api().list()
        except (ollama.ResponseError, ConnectionError, httpx.HTTPError):
            return False
        return True

    def estimate_memory_mb(self, spec: ModelSpec) -> int:
        return 0  # the server holds the weights in its own memory

    async def generate(
        self, model_id: str, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        import ollama

        tag = self._tags.get(model_id)
        if tag is None:
            raise BackendError(self.name, f"model '{model_id}' is not loaded")
        options = self.engine_params(request.params)
        if request.params.stop:
            options["stop"] = list(request.params.stop)
        messages: list[dict[str, Any]] = [
            {"role": m.role, "content": m.content} for m in request.messages
        ]
        if request.images:
            messages[-1]["images"] = list(request.images)  # the client sends them as base64
        try:
            stream = await self._api().chat(
                model=tag,
                messages=messages,
                # Ollama has no way to force a call: `tool_choice` is for engines that do.
                tools=[t.openai() for t in request.tools] or None,
                stream=True,
                options=options,
                keep_alive=self._settings.keep_alive,
            )
            async for part in stream:
                if part.message.content:
                    yield part.message.content
                for call in part.message.tool_calls or []:
                    arguments = dict(call.function.arguments or {})
                    stats.tool_calls.append(ToolCall(call.function.name, arguments))
                if part.done:
                    stats.finish_reason = part.done_reason or "stop"
                    stats.prompt_tokens = part.prompt_eval_count or 0
                    stats.prompt_eval_tokens = part.prompt_eval_count or 0
                    stats.completion_tokens = part.eval_count or 0
        except (ollama.ResponseError, ConnectionError, httpx.HTTPError, ValueError) as exc:
            raise BackendError(self.name, self._reason(exc, tag)) from exc

    def _reason(self, exc: Exception, tag: str) -> str:
        import ollama

        if isinstance(exc, ConnectionError):
            return f"cannot reach the Ollama server at {self._settings.host}"
        if isinstance(exc, httpx.HTTPError):
            return f"the connection to the Ollama server broke: {type(exc).__name__}: {exc}"
        if isinstance(exc, ValueError):  # pydantic's ValidationError: a reply of the wrong shape
            return f"the Ollama server sent a reply the client cannot read: {exc}"
        assert isinstance(exc, ollama.ResponseError)
        if exc.status_code == 404:
            hint = "" if self._settings.auto_pull else " (set auto_pull = true to fetch it)"
            return f"the Ollama server has no model '{tag}'{hint}"
        return f"the Ollama server answered {exc.status_code}: {exc.error}"
