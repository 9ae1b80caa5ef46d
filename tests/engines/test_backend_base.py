"""What the four backends share, on the real engines: every preset setting reaches each engine or
is said to be dropped, token counts are the engine's tokens (never chunks), prompt tokens come
from an OpenAI-compatible server's `usage`, and a health answer is cached in one place."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.core.config.schema import TektraConfig
from daemon.models.backends.base import SAMPLING, EngineBackend
from daemon.models.backends.llama_cpp import LlamaCppBackend
from daemon.models.backends.mistral_rs import MistralRsBackend
from daemon.models.backends.ollama import OllamaBackend
from daemon.models.backends.openai_compat import OpenAICompatibleBackend
from daemon.models.manager.manager import Answer, Query, UnifiedModelManager
from tests.conftest import SMOLLM2_SOURCE
from tests.engines.conftest import Server

WriteConfig = Callable[[str], tuple[TektraConfig, Path]]
BUILT_IN: list[type[EngineBackend]] = [
    LlamaCppBackend,
    MistralRsBackend,
    OllamaBackend,
    OpenAICompatibleBackend,
]
# A question SmolLM2 answers at length, so that 16 tokens cut it (finish `length`).
QUESTION = "Write a long story about a cat who lives in Tokyo."


def config_for(backend: str, ollama_url: str = "http://127.0.0.1:9", seed: str = "") -> str:
    source = {"ollama": '{ ollama = "smollm2:135m" }', "openai": '{ served = "smollm2:135m" }'}
    return (
        '[daemon]\npreset = "cut"\n'
        f"[presets.cut]\ntemperature = 0.0\nmax_tokens = 16\n{seed}"
        "[backends.mistral_rs]\nenabled = true\nthreads = 1\n"
        f'[backends.ollama]\nenabled = true\nhost = "{ollama_url}"\n'
        f'[backends.openai]\nenabled = true\nbase_url = "{ollama_url}/v1"\n'
        f'[[models]]\nid = "smollm2"\nsource = {source.get(backend, SMOLLM2_SOURCE)}\n'
        f'backend_preferences = ["{backend}"]\n'
    )


async def ask(config: TektraConfig) -> tuple[Answer, list[str]]:
    manager = UnifiedModelManager(config)
    try:
        answer = manager.answer(Query(QUESTION))
        chunks = [chunk async for chunk in answer]
    finally:
        await manager.close()
    return answer, chunks


@pytest.mark.parametrize("backend", BUILT_IN, ids=lambda b: b.name)
def test_every_backend_names_every_preset_setting(backend: type[EngineBackend]) -> None:
    assert set(backend.param_names) == set(SAMPLING)
    dropped = {k for k, v in backend.param_names.items() if v is None}
    assert dropped <= set(backend.cannot)  # a setting an engine drops says why


@pytest.mark.parametrize("backend", ["llama_cpp", "mistral_rs", "openai"])
async def test_an_answer_cut_at_max_tokens_counts_exactly_max_tokens(
    backend: str, write_config: WriteConfig, ollama: Server
) -> None:
    config, _ = write_config(config_for(backend, ollama.url))
    answer, _ = await ask(config)
    assert (answer.backend, answer.stats.finish_reason) == (backend, "length")
    assert answer.stats.completion_tokens == 16
    assert answer.stats.prompt_tokens > 0


async def test_the_openai_backend_reports_the_servers_usage_not_its_chunks(
    write_config: WriteConfig, ollama: Server
) -> None:
    local, _ = await ask(write_config(config_for("llama_cpp"))[0])
    served, chunks = await ask(write_config(config_for("openai", ollama.url))[0])
    # The same GGUF and chat template behind the server: the same prompt, token for token.
    assert served.stats.prompt_tokens == local.stats.prompt_tokens
    assert served.stats.completion_tokens == 16
    assert len(chunks) < 16  # the server streams whole words: chunks are not tokens
    (chat,) = ollama.requests("/v1/chat/completions")
    assert chat["stream_options"] == {"include_usage": True}


async def test_mistral_rs_says_once_that_it_cannot_apply_the_presets_seed(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    config, _ = write_config(config_for("mistral_rs", seed="seed = 7\n"))
    manager = UnifiedModelManager(config)
    with caplog.at_level(logging.WARNING, logger="tektra.backends"):
        for _ in range(2):
            assert await manager.process_input("Hi") != ""
    await manager.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "tektra.backends"]
    assert warnings == [
        "mistral_rs: the preset's seed = 7 is not applied: mistral.rs takes no seed per "
        "request; answers above temperature 0 vary"
    ]


async def test_the_seed_reaches_the_engines_that_take_it(
    write_config: WriteConfig, ollama: Server
) -> None:
    for backend in ("ollama", "openai"):
        config, _ = write_config(config_for(backend, ollama.url, seed="seed = 7\n"))
        await ask(config)
    (chat,) = ollama.requests("/api/chat")
    (completion,) = ollama.requests("/v1/chat/completions")
    assert chat["options"]["seed"] == 7  # type: ignore[index]
    assert completion["seed"] == 7


class Probed(EngineBackend):
    """An engine whose health probe counts its calls, with a clock the test moves."""

    name = "probed"
    param_names = dict.fromkeys(SAMPLING, None)

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(clock=lambda: self.now)
        self.probes = 0

    async def probe(self) -> bool:
        self.probes += 1
        return self.probes == 1  # healthy, then down


async def test_a_health_answer_is_reused_for_five_seconds_then_asked_again() -> None:
    engine = Probed()
    assert [await engine.health() for _ in range(3)] == [True, True, True]
    assert engine.probes == 1
    engine.now = 4.9
    assert await engine.health() is True
    engine.now = 5.0
    assert await engine.health() is False
    assert engine.probes == 2
