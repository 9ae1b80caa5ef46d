"""Anthropic's Messages API, through the official `anthropic` client.

A remote backend, so it is off unless `[backends.anthropic] enabled = true`: Tektra stays offline
by default. A model names the API's model by its `served` source. The key comes from the
environment variable named in `api_key_env` and is never logged. The system prompt goes as the
request's `system` parameter (the Messages API takes no system turn), images as base64 image
blocks before the text of the last user turn, and the answer streams as server-sent events whose
`message_start` and `message_delta` carry the token counts.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, ClassVar

from daemon.core.config.schema import AnthropicSettings
from daemon.core.errors import BackendError, BackendLoadError
from daemon.models.backends.base import (
    EngineBackend,
    GenerationParams,
    GenerationRequest,
    GenerationStats,
    ModelSpec,
    ParamNames,
)
from daemon.models.media import image_kind

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

SAMPLING_SETTINGS = ("temperature", "top_p", "top_k")
"""Preset settings sent only with `sampling = true`."""

# The Messages API's stop reasons in the words of `GenerationStats.finish_reason`.
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class AnthropicBackend(EngineBackend):
    name: ClassVar[str] = "anthropic"
    capabilities: ClassVar[frozenset[str]] = frozenset({"text", "image"})
    settings_model: ClassVar[type[AnthropicSettings]] = AnthropicSettings
    param_names: ClassVar[ParamNames] = {
        "max_tokens": "max_tokens",
        "temperature": "temperature",
        "top_p": "top_p",
        "top_k": "top_k",
        "min_p": None,
        "repeat_penalty": None,
        "seed": None,
    }
    cannot: ClassVar[dict[str, str]] = {
        "min_p": "the Messages API has no min_p",
        "repeat_penalty": "the Messages API has no repetition penalty",
        "seed": "the Messages API takes no seed; its answers vary",
        **{
            s: "sent only with [backends.anthropic] sampling = true (newer models refuse it)"
            for s in SAMPLING_SETTINGS
        },
    }

    def __init__(self, settings: AnthropicSettings) -> None:
        super().__init__()
        self._settings = settings
        self._client: AsyncAnthropic | None = None
        self._served: dict[str, str] = {}  # model id -> the API's model name

    def _key(self) -> str | None:
        return os.environ.get(self._settings.api_key_env) or None

    def _api(self) -> AsyncAnthropic:
        if self._client is None:
            from anthropic import AsyncAnthropic

            self._client = AsyncAnthropic(
                api_key=self._key(),
                base_url=self._settings.base_url,  # None: the client's own (Anthropic's API)
                timeout=self._settings.timeout_s,
                max_retries=0,  # the manager decides what happens after a failure
            )
        return self._client

    async def load(self, spec: ModelSpec) -> None:
        import anthropic

        if self._key() is None:
            raise BackendLoadError(
                self.name, f"no API key: set the environment variable {self._settings.api_key_env}"
            )
        name = spec.remote_name or spec.id
        try:
            await self._api().models.retrieve(name)
        except anthropic.NotFoundError as exc:
            raise BackendLoadError(self.name, f"{self._where()} has no model '{name}'") from exc
        except anthropic.APIError as exc:
            raise BackendLoadError(self.name, self._reason(exc)) from exc
        self._served[spec.id] = name

    async def unload(self, model_id: str) -> None:
        self._served.pop(model_id, None)  # the weights live on Anthropic's servers

    async def close(self) -> None:
        self._served.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def probe(self) -> bool:
        import anthropic

        if self._key() is None:
            return False
        try:
            await self._api().models.list(limit=1)
        except anthropic.APIError:
            return False
        return True

    def estimate_memory_mb(self, spec: ModelSpec) -> int:
        return 0

    def engine_params(self, params: GenerationParams) -> dict[str, Any]:
        out = super().engine_params(params)
        if not self._settings.sampling:
            for setting in SAMPLING_SETTINGS:
                if setting in out:
                    self._warn_once(setting, out.pop(setting))
        return out

    async def generate(
        self, model_id: str, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        import anthropic
        from anthropic import omit
        from anthropic.types import (
            RawContentBlockDeltaEvent,
            RawMessageDeltaEvent,
            RawMessageStartEvent,
            TextDelta,
        )

        name = self._served.get(model_id)
        if name is None:
            raise BackendError(self.name, f"model '{model_id}' is not loaded")
        system, messages = anthropic_messages(request)
        sampling = self.engine_params(request.params)
        max_tokens = sampling.pop("max_tokens")
        try:
            stream = await self._api().messages.create(
                model=name,
                messages=messages,
                max_tokens=max_tokens,
                stream=True,
                system=system if system is not None else omit,
                stop_sequences=list(request.params.stop) or omit,
                # The client's own arguments no longer include the sampling settings (newer
                # models refuse them); the API reads them from the body for models that take them.
                extra_body=sampling or None,
            )
        except anthropic.APIError as exc:
            raise BackendError(self.name, self._reason(exc)) from exc
        try:
            async for event in stream:
                if isinstance(event, RawContentBlockDeltaEvent):
                    if isinstance(event.delta, TextDelta):
                        yield event.delta.text
                elif isinstance(event, RawMessageStartEvent):
                    usage = event.message.usage
                    cached = usage.cache_read_input_tokens or 0
                    stats.prompt_eval_tokens = usage.input_tokens + (
                        usage.cache_creation_input_tokens or 0
                    )
                    stats.prompt_tokens = stats.prompt_eval_tokens + cached
                elif isinstance(event, RawMessageDeltaEvent):
                    stats.completion_tokens = event.usage.output_tokens  # a running total
                    reason = event.delta.stop_reason
                    if reason is not None:
                        stats.finish_reason = FINISH.get(reason, reason)
        except anthropic.APIError as exc:
            raise BackendError(self.name, self._reason(exc)) from exc
        finally:
            await stream.close()  # a client that went away closes the HTTP stream too

    def _where(self) -> str:
        return self._settings.base_url or "Anthropic's API"

    def _reason(self, exc: Exception) -> str:
        import anthropic

        if isinstance(exc, anthropic.APIConnectionError):
            return f"cannot reach {self._where()}: {exc.__cause__ or exc}"
        if isinstance(exc, anthropic.APIStatusError):
            return f"{self._where()} answered {exc.status_code}: {_message(exc)}"
        return str(exc)


def _message(exc: Any) -> str:
    """The API's own words from its error body (`{"error": {"message": …}}`)."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", exc.message))
    return str(exc.message)


def anthropic_messages(request: GenerationRequest) -> tuple[str | None, list[Any]]:
    """(system prompt, turns) in the Messages API's shape; images as base64 blocks in the last
    user turn, before its text (where Anthropic's documentation puts them)."""
    turns = list(request.messages)
    system = turns.pop(0).content if turns and turns[0].role == "system" else None
    messages: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in turns]
    if request.images and messages:
        blocks: list[dict[str, Any]] = [
            {
                "type": "image",
                "source": {
                    "type": "base64",
                    "media_type": f"image/{image_kind(image) or 'jpeg'}",
                    "data": base64.b64encode(image).decode("ascii"),
                },
            }
            for image in request.images
        ]
        blocks.append({"type": "text", "text": messages[-1]["content"]})
        messages[-1] = {"role": "user", "content": blocks}
    return system, messages
