"""Any OpenAI-compatible server: vLLM, llama.cpp's server, LocalAI, LM Studio, a cluster behind one.

This is how inference moves to a bigger box: the daemon streams chat completions (server-sent
events) from `[backends.openai].base_url` with the official `openai` client. Images travel as
`image_url` data URIs in the last user turn, the utterance of an audio-capable model as an
`input_audio` WAV part. The API key comes from the environment variable named
in `api_key_env` and is never logged.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, ClassVar

from daemon.backends.base import (
    GenerationRequest,
    GenerationStats,
    ModelSpec,
    openai_messages,
)
from daemon.config.schema import OpenAISettings
from daemon.errors import BackendError, BackendLoadError

if TYPE_CHECKING:
    from openai import AsyncOpenAI

HEALTH_TTL_S = 5.0
"""A health answer is reused this long, so a burst of questions costs one round trip."""


class OpenAICompatibleBackend:
    name: ClassVar[str] = "openai"
    capabilities: ClassVar[frozenset[str]] = frozenset({"text", "image", "audio"})
    settings_model: ClassVar[type[OpenAISettings]] = OpenAISettings

    def __init__(self, settings: OpenAISettings) -> None:
        self._settings = settings
        self._client: AsyncOpenAI | None = None
        self._served: dict[str, str] = {}  # model id -> the name the server knows it by
        self._health: tuple[float, bool] = (0.0, False)

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

    async def health(self) -> bool:
        checked, healthy = self._health
        if time.monotonic() - checked < HEALTH_TTL_S:
            return healthy
        try:
            await self._models()
            healthy = True
        except BackendError:
            healthy = False
        self._health = (time.monotonic(), healthy)
        return healthy

    def estimate_memory_mb(self, spec: ModelSpec) -> int:
        return 0  # the weights live in the server's memory, not ours

    def count_tokens(self, model_id: str, text: str) -> int | None:
        return None

    async def generate(
        self, model_id: str, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        import openai

        name = self._served.get(model_id)
        if name is None:
            raise BackendError(self.name, f"model '{model_id}' is not loaded")
        params = request.params
        try:
            stream = await self._api().chat.completions.create(
                model=name,
                messages=openai_messages(request, with_audio=True),
                stream=True,
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=params.seed,
                stop=list(params.stop) or None,
                # Not in OpenAI's schema but understood by llama.cpp's server and vLLM.
                extra_body={
                    "top_k": params.top_k,
                    "min_p": params.min_p,
                    "repeat_penalty": params.repeat_penalty,
                    "repetition_penalty": params.repeat_penalty,
                },
            )
        except openai.APIError as exc:
            raise BackendError(self.name, _reason(exc, self._settings.base_url)) from exc
        try:
            async for chunk in stream:
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.delta.content:
                    stats.completion_tokens += 1
                    yield choice.delta.content
                if choice.finish_reason:
                    stats.finish_reason = choice.finish_reason
        except openai.APIError as exc:
            raise BackendError(self.name, _reason(exc, self._settings.base_url)) from exc
        finally:
            await stream.close()  # a client that went away closes the HTTP stream too


def _reason(exc: Exception, base_url: str) -> str:
    import openai

    if isinstance(exc, openai.APIConnectionError):
        return f"cannot reach {base_url}: {exc.__cause__ or exc}"
    if isinstance(exc, openai.APIStatusError):
        return f"{base_url} answered {exc.status_code}: {exc.message}"
    return str(exc)
