"""Tools through each real engine that takes them: the tools go out in the engine's own protocol
and the call comes back parsed into a `ToolCall`.

SmolLM2-135M cannot choose a tool reliably, so these tests name the tool (`tool_choice`): the
engine's grammar then keeps the arguments to the tool's schema, and with one name allowed the
call is known in advance. Choosing is the model's business; carrying a call is the backend's."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.core.config.schema import LlamaCppSettings, OpenAISettings
from daemon.models.backends.base import (
    GenerationParams,
    GenerationRequest,
    GenerationStats,
    ModelSpec,
    ToolCall,
    ToolSpec,
)
from daemon.models.backends.llama_cpp import LlamaCppBackend
from daemon.models.backends.openai_compat import OpenAICompatibleBackend
from daemon.models.templates import Message
from tests.engines.conftest import API_KEY, Server

TURN_ON = ToolSpec(
    "HassTurnOn",
    "Turn on devices.",
    {
        "type": "object",
        "properties": {"name": {"type": "string", "enum": ["kitchen light"]}},
        "required": ["name"],
        "additionalProperties": False,
    },
)
TIME = ToolSpec("HassGetCurrentTime", "Tell the time.", {"type": "object", "properties": {}})


def request(choice: str | None) -> GenerationRequest:
    return GenerationRequest(
        (Message("system", "You run a home."), Message("user", "Make it cosier in here.")),
        GenerationParams(max_tokens=48, temperature=0.0, seed=7),
        tools=(TIME, TURN_ON),
        tool_choice=choice,
    )


def spec(model_id: str, path: Path | None, served: str | None = None) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        path=path,
        remote_name=served,
        template="auto",
        context_length=2048,
        capabilities=frozenset({"text", "tools"}),
    )


async def test_llama_cpp_in_process_returns_the_call_its_grammar_made(smollm2_path: Path) -> None:
    backend = LlamaCppBackend(LlamaCppSettings(n_threads=1, device="cpu"))
    await backend.load(spec("small", smollm2_path))
    stats = GenerationStats()
    try:
        text = "".join([c async for c in backend.generate("small", request("HassTurnOn"), stats)])
    finally:
        await backend.close()
    assert stats.tool_calls == [ToolCall("HassTurnOn", {"name": "kitchen light"})]
    assert text == ""  # a call, not words
    assert stats.prompt_tokens > 0


async def test_openai_compatible_server_streams_the_call_in_its_tool_calls(
    llama_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEKTRA_TEST_KEY", API_KEY)
    backend = OpenAICompatibleBackend(
        OpenAISettings(base_url=llama_server.url + "/v1", api_key_env="TEKTRA_TEST_KEY")
    )
    await backend.load(spec("small", None, served="smollm2-tools"))
    stats = GenerationStats()
    try:
        text = "".join([c async for c in backend.generate("small", request("HassTurnOn"), stats)])
    finally:
        await backend.close()
    assert stats.tool_calls == [ToolCall("HassTurnOn", {"name": "kitchen light"})]
    assert text == ""


async def test_without_tools_the_same_backends_still_stream_plain_words(
    smollm2_path: Path,
) -> None:
    backend = LlamaCppBackend(LlamaCppSettings(n_threads=1, device="cpu"))
    await backend.load(spec("small", smollm2_path))
    plain = GenerationRequest(
        (Message("user", "Say hello."),), GenerationParams(max_tokens=8, temperature=0.0, seed=7)
    )
    stats = GenerationStats()
    try:
        chunks = [c async for c in backend.generate("small", plain, stats)]
    finally:
        await backend.close()
    assert len(chunks) > 1 and stats.tool_calls == []  # token by token, as before
