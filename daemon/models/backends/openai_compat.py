"""Any OpenAI-compatible server: vLLM, llama.cpp's server, LocalAI, LM Studio, a cluster behind one.

This is how inference moves to a bigger box: the daemon streams chat completions (server-sent
events) from `[backends.openai].base_url` with the official `openai` client. Images travel as
`image_url` data URIs in the last user turn, the utterance of an audio-capable model as an
`input_audio` WAV part; tools go as `tools` and come back as streamed `tool_calls`. The API key
comes from the environment variable named in `api_key_env` and is never logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, ClassVar

from daemon.core.config.schema import OpenAISettings
from daemon.core.errors import BackendError, BackendLoadError
from daemon.models.backends.base import (
    EngineBackend,
    GenerationRequest,
    GenerationStats,
    ModelSpec,
    ParamNames,
    ToolCall,
    openai_messages,
    tool_arguments,
)

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)


class OpenAICompatibleBackend(EngineBackend):
    name: ClassVar[str] = "openai"
    capabilities: ClassVar[frozenset[str]] = frozenset({"text", "image", "audio", "tools"})
    settings_model: ClassVar[type[OpenAISettings]] = OpenAISettings
    param_names: ClassVar[ParamNames] = {
        "max_tokens": "max_tokens",
        "temperature": "temperature",
        "top_p": "top_p",
        "seed": "seed",
        # Not in OpenAI's schema but read by llama.cpp's server, vLLM and Ollama.
        "top_k": "top_k",
        "min_p": "min_p",
        "repeat_penalty": ("repeat_penalty", "repetition_penalty"),
    }

    def __init__(self, settings: OpenAISettings) -> None:
        super().__init__()
        self._settings = settings
        self._client: AsyncOpenAI | None = None
        self._served: dict[str, str] = {}  # model id -> the name the server knows it by
        self._no_usage_said = False

    def _api(self) -> AsyncOpenAI:
        if self._client is None:
            from openai import AsyncOpenAI

            env = self._settings.api_key_env
            # Local servers ignore the key, but the client insists on one.
            key = (os.environ.get(env) if env else None) or "no-key"
            self._client = AsyncOpenAI(
                base_url=self._settings.base_url,
                api_key=key,
                timeout=self._settings.timeout_s,
                max_retries=0,  # the manager decides what happens after a failure
            )
        return self._client

    async def load(self, spec: ModelSpec) -> None:
        name = spec.remote_name or spec.id
        served = await self._models()
        if name not in served:
            raise BackendLoadError(
                self.name,
                f"{self._settings.base_url} does not serve '{name}' (it serves: "
                f"{', '.join(sorted(served)) or 'nothing'})",
            )
        self._served[spec.id] = name

    async def _models(self) -> set[str]:
        import openai

        try:
            return {m.id async for m in self._api().models.list()}
        except openai.APIError as exc:
            raise BackendLoadError(self.name, _reason(exc, self._settings.base_url)) from exc

    async def unload(self, model_id: str) -> None:
        self._served.pop(model_id, None)  # the server owns the weights

    async def close(self) -> None:
        self._served.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def probe(self) -> bool:
        try:
            await self._models()
        except BackendError:
            return False
        return True

    def estimate_memory_mb(self, spec: ModelSpec) -> int:
        return 0  # the weights live in the server's memory, not ours

    async def generate(
        self, model_id: str, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        import openai

        name = self._served.get(model_id)
        if name is None:
            raise BackendError(self.name, f"model '{model_id}' is not loaded")
        try:
            stream = await self._api().chat.completions.create(
                model=name,
                messages=openai_messages(request, with_audio=True),
                stream=True,
                # The server's own token counts, in a last chunk (vLLM, llama.cpp's server,
                # Ollama and OpenAI send it; a server that does not just leaves it out).
                stream_options={"include_usage": True},
                stop=list(request.params.stop) or None,
                extra_body=self.engine_params(request.params),
                **_tools(request),
            )
        except openai.APIError as exc:
            raise BackendError(self.name, _reason(exc, self._settings.base_url)) from exc
        usage = None
        calls: dict[int, list[str]] = {}  # index -> [name, arguments so far]
        try:
            async for chunk in stream:
                usage = chunk.usage or usage
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.delta.content:
                    yield choice.delta.content
                # A call streams in pieces: its name first, its JSON arguments in fragments.
                # Some servers (llama-cpp-python's) repeat the name in every piece: keep one.
                for part in choice.delta.tool_calls or []:
                    call = calls.setdefault(part.index, ["", ""])
                    if part.function is not None:
                        call[0] = call[0] or part.function.name or ""
                        call[1] += part.function.arguments or ""
                if choice.finish_reason:
                    stats.finish_reason = choice.finish_reason
        except openai.APIError as exc:
            raise BackendError(self.name, _reason(exc, self._settings.base_url)) from exc
        finally:
            await stream.close()  # a client that went away closes the HTTP stream too
        stats.tool_calls += [
            ToolCall(name, tool_arguments(arguments))
            for _, (name, arguments) in sorted(calls.items())
        ]
        if usage is not None:
            stats.prompt_tokens = usage.prompt_tokens
            stats.completion_tokens = usage.completion_tokens
        elif not self._no_usage_said:
            self._no_usage_said = True
            log.warning(
                "%s sends no token usage: answers from it report 0 prompt and completion tokens",
                self._settings.base_url,
            )


def _tools(request: GenerationRequest) -> dict[str, Any]:
    """`tools` and `tool_choice` as the chat API takes them; nothing for a plain answer."""
    if not request.tools:
        return {}
    choice: Any = "auto"
    if request.tool_choice is not None:
        choice = {"type": "function", "function": {"name": request.tool_choice}}
    return {"tools": [t.openai() for t in request.tools], "tool_choice": choice}


def _reason(exc: Exception, base_url: str) -> str:
    import openai

    if isinstance(exc, openai.APIConnectionError):
        return f"cannot reach {base_url}: {exc.__cause__ or exc}"
    if isinstance(exc, openai.APIStatusError):
        return f"{base_url} answered {exc.status_code}: {exc.message}"
    return str(exc)
