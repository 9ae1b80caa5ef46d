"""The anthropic backend through the official `anthropic` client.

No Anthropic server exists here (the API is a remote service and this machine reaches nothing but
the package registries), so these tests talk to tests/engines/anthropic_standin.py: a STAND-IN
that speaks the documented Messages API (its streamed server-sent events included) and answers
with real SmolLM2 text. What is checked is what Tektra sends and how it reads the stream."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from daemon.core.config.load import load_config
from daemon.core.config.schema import AnthropicSettings, TektraConfig
from daemon.core.errors import BackendLoadError
from daemon.models.backends.anthropic import AnthropicBackend
from daemon.models.backends.base import (
    GenerationParams,
    GenerationRequest,
    GenerationStats,
    ModelSpec,
)
from daemon.models.backends.registry import BackendRegistry
from daemon.models.manager.manager import Query, UnifiedModelManager
from daemon.models.manager.tools import system_prompt
from daemon.models.templates import Message
from tests.conftest import png
from tests.engines.conftest import Server
from tests.seeds.conftest import ANTHROPIC_KEY, ANTHROPIC_MODEL, declared_backends

KEY_ENV = "TEKTRA_TEST_ANTHROPIC_KEY"
SYSTEM = "You are Tektra. Answer in one short sentence."


def requests(server: Server, path: str) -> list[dict[str, object]]:
    """(headers, body) of each request the stand-in received on `path`, oldest first."""
    lines = [json.loads(x) for x in server.log.read_text().splitlines()]
    return [x for x in lines if x["path"] == path]


def settings(server: Server, **extra: object) -> AnthropicSettings:
    return AnthropicSettings.model_validate(
        {"enabled": True, "base_url": server.url, "api_key_env": KEY_ENV, **extra}
    )


def spec(name: str = ANTHROPIC_MODEL) -> ModelSpec:
    return ModelSpec(
        id="claude",
        path=None,
        remote_name=name,
        template="auto",
        context_length=8192,
        capabilities=frozenset({"text", "image"}),
    )


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, ANTHROPIC_KEY)


def test_anthropic_is_a_backend_of_the_entry_point_group_and_off_by_default(
    tree_backends: BackendRegistry,
) -> None:
    assert declared_backends()["anthropic"] == "daemon.models.backends.anthropic:AnthropicBackend"
    found: object = tree_backends.backend_class("anthropic")
    assert found is AnthropicBackend
    defaults = TektraConfig().backends
    assert defaults.enabled("anthropic") is False
    assert defaults.anthropic == AnthropicSettings(
        enabled=False, base_url=None, api_key_env="ANTHROPIC_API_KEY", timeout_s=120.0
    )


async def test_a_question_with_an_image_streams_through_the_messages_api(
    tree_backends: BackendRegistry, anthropic_api: Server, tmp_path: Path
) -> None:
    (tmp_path / "models.toml").write_text(
        f'[daemon]\nsystem_prompt = "{SYSTEM}"\npreset = "short"\n'
        "[presets.short]\nmax_tokens = 16\ntemperature = 0.0\n"
        f'[backends.anthropic]\nenabled = true\nbase_url = "{anthropic_api.url}"\n'
        f'api_key_env = "{KEY_ENV}"\n'
        f'[[models]]\nid = "claude"\nsource = {{ served = "{ANTHROPIC_MODEL}" }}\n'
        'capabilities = ["text", "image"]\nbackend_preferences = ["anthropic"]\n'
    )
    config = load_config(tmp_path / "models.toml", tree_backends.names())
    manager = UnifiedModelManager(config, registry=tree_backends)
    try:
        answer = manager.answer(Query("What is this?", images=(png(32, 32, 255),)))
        chunks = [chunk async for chunk in answer]
    finally:
        await manager.close()
    assert answer.backend == "anthropic"
    assert len(chunks) >= 2 and "".join(chunks) == answer.text != ""
    assert answer.stats.finish_reason in ("stop", "length")
    assert answer.stats.prompt_tokens > 0 and answer.stats.completion_tokens > 0

    (sent,) = requests(anthropic_api, "/v1/messages")
    assert sent["headers"]["authorization"] == f"Bearer {ANTHROPIC_KEY}"  # type: ignore[index]
    assert sent["headers"]["anthropic-version"]  # type: ignore[index]
    body = sent["body"]
    assert isinstance(body, dict)
    image = body["messages"][0]["content"][0]
    assert base64.b64decode(image["source"]["data"]).startswith(b"\xff\xd8\xff")  # the JPEG
    image["source"]["data"] = "…"
    assert body == {
        "model": ANTHROPIC_MODEL,
        "system": system_prompt(SYSTEM, with_tools=False, intents=True),  # with what it cannot do
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": "…"},
                    },
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
        "max_tokens": 16,
        "stream": True,
    }


async def test_with_sampling_on_the_preset_and_stop_sequences_are_sent(
    anthropic_api: Server,
) -> None:
    engine = AnthropicBackend(settings(anthropic_api, sampling=True))
    await engine.load(spec())
    request = GenerationRequest(
        (
            Message("system", SYSTEM),
            Message("user", "Hi"),
            Message("assistant", "Hello!"),
            Message("user", "Name a colour."),
        ),
        GenerationParams(max_tokens=8, temperature=0.2, top_p=0.9, top_k=40, stop=("\n",)),
    )
    stats = GenerationStats()
    try:
        text = "".join([c async for c in engine.generate("claude", request, stats)])
    finally:
        await engine.close()
    assert text
    (sent,) = requests(anthropic_api, "/v1/messages")
    body = sent["body"]
    assert isinstance(body, dict)
    assert {k: body[k] for k in ("max_tokens", "temperature", "top_p", "top_k")} == {
        "max_tokens": 8,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
    }
    assert body["stop_sequences"] == ["\n"]
    assert body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name a colour."},
    ]
    # The stand-in counts with SmolLM2's tokenizer and sends its counts in the stream's events.
    assert stats.completion_tokens > 0 and stats.prompt_tokens > 0


async def test_without_its_key_the_backend_says_which_variable_to_set(
    anthropic_api: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    engine = AnthropicBackend(settings(anthropic_api))
    with pytest.raises(BackendLoadError) as raised:
        await engine.load(spec())
    assert raised.value.message == (
        f"anthropic: no API key: set the environment variable {KEY_ENV}"
    )
    assert await engine.health() is False


async def test_a_model_the_api_does_not_have_is_a_load_error(anthropic_api: Server) -> None:
    engine = AnthropicBackend(settings(anthropic_api))
    try:
        assert await engine.health() is True
        with pytest.raises(BackendLoadError) as raised:
            await engine.load(spec("claude-nonexistent"))
    finally:
        await engine.close()
    assert raised.value.message == (
        f"anthropic: {anthropic_api.url} has no model 'claude-nonexistent'"
    )
