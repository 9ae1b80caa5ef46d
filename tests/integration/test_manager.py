"""The unified model manager over real llama.cpp and the test plugin backend.

Failures here really happen: llama.cpp is handed a file that is not a model, the plugin raises
where an engine raises (at load, mid-stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.core.config.schema import TektraConfig
from daemon.core.errors import (
    CapabilityError,
    GenerationError,
    MemoryBudgetError,
    NoBackendAvailable,
    TektraError,
)
from daemon.models.backends.registry import BackendRegistry, discover
from daemon.models.manager.manager import Query, UnifiedModelManager
from daemon.models.manager.tools import system_prompt
from daemon.models.media import MediaError
from tests.conftest import SMOLLM2_SOURCE, decoded_size, png
from tests.plugin_backend import RecordingBackend

WriteConfig = Callable[[str], tuple[TektraConfig, Path]]
PLUGINS = (
    "[backends.recorder]\nenabled = true\n[backends.flaky]\nenabled = true\nfail_load = true\n"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def told(prompt: str) -> str:
    """The system prompt as a model without tools gets it: with what it cannot do."""
    return system_prompt(prompt, with_tools=False, intents=True)


def recorder(manager: UnifiedModelManager, name: str = "recorder") -> RecordingBackend:
    backend = manager.backend(name)
    assert isinstance(backend, RecordingBackend)
    return backend


async def test_llama_cpp_failing_to_load_a_broken_file_falls_back_to_the_next_backend(
    plugin: BackendRegistry, write_config: WriteConfig, tmp_path: Path
) -> None:
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    config, _ = write_config(
        PLUGINS + '[[models]]\nid = "m"\nsource = { path = "broken.gguf" }\n'
        'backend_preferences = ["llama_cpp", "recorder"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    answer = manager.answer(Query("What is the capital of France?"))
    chunks = [chunk async for chunk in answer]
    assert "".join(chunks) == "You said: What is the capital of France?"
    assert (answer.model_id, answer.backend) == ("m", "recorder")
    status = manager.backend_status()
    assert "broken.gguf" in status["llama_cpp"].last_error
    assert status["recorder"].last_error == ""


async def test_a_plugin_that_cannot_be_imported_is_skipped_with_its_reason(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        PLUGINS + '[[models]]\nid = "m"\nsource = { ollama = "m" }\n'
        'backend_preferences = ["broken", "recorder"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    assert await manager.process_input("hi") == "You said: hi"
    assert manager.backend_status()["broken"].last_error == (
        "cannot start: ModuleNotFoundError: No module named 'tests.plugin_backend_missing'"
    )


async def test_audio_reaches_only_models_that_take_audio(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        PLUGINS + '[[models]]\nid = "plain"\nsource = { ollama = "p" }\n'
        'backend_preferences = ["recorder"]\n'
        '[[models]]\nid = "listener"\nsource = { ollama = "l" }\n'
        'backend_preferences = ["recorder"]\ncapabilities = ["text", "audio"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    wav = b"RIFF....WAVEfmt "
    assert await manager.process_multimodal("lights on", audio=wav) == "You said: lights on"
    assert recorder(manager).generations()[-1].audio is None  # the transcript alone
    await manager.process_multimodal("lights on", audio=wav, model="listener")
    assert recorder(manager).generations()[-1].audio == wav


async def test_repeated_failures_put_a_backend_in_cooldown_then_it_is_tried_again(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        "[backends]\nfailure_threshold = 2\ncooldown_s = 60.0\n"
        + PLUGINS
        + '[[models]]\nid = "m"\nsource = { ollama = "m" }\n'
        'backend_preferences = ["flaky", "recorder"]\n'
    )
    clock = Clock()
    manager = UnifiedModelManager(config, registry=plugin, clock=clock)
    for _ in range(3):
        assert await manager.process_input("hi") == "You said: hi"
    # Two failures sent flaky to rest, so the third question did not try it.
    assert [c.kind for c in recorder(manager, "flaky").calls] == ["load", "load"]
    assert manager.backend_status()["flaky"].resting_until == 1060.0
    clock.now = 1061.0
    assert await manager.process_input("hi") == "You said: hi"
    assert [c.kind for c in recorder(manager, "flaky").calls] == ["load", "load", "load"]


async def test_a_backend_failing_mid_answer_gives_one_clear_error_not_a_truncated_answer(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        "[backends.recorder]\nfail_after_chunks = 2\n"
        f'[[models]]\nid = "m"\nsource = {SMOLLM2_SOURCE}\n'
        'backend_preferences = ["recorder", "llama_cpp"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    answer = manager.answer(Query("tell me a story"))
    received: list[str] = []
    with pytest.raises(GenerationError) as caught:
        async for chunk in answer:
            received.append(chunk)
    assert received == ["You", " said:"]
    assert caught.value.code == "generation_failed"
    assert str(caught.value) == "recorder: the answer broke off: connection reset by peer"
    await manager.close()


async def test_no_backend_left_is_an_error_listing_each_reason(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        "[backends.recorder]\nenabled = false\n[backends.flaky]\nfail_load = true\n"
        '[[models]]\nid = "m"\nsource = { ollama = "m" }\n'
        'backend_preferences = ["flaky", "recorder", "openai"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    with pytest.raises(NoBackendAvailable) as caught:
        await manager.process_input("hi")
    assert str(caught.value) == (
        "no backend could answer with model 'm': flaky: cannot load model 'm': engine refused; "
        "recorder: disabled in [backends.recorder]; openai: disabled in [backends.openai]"
    )


async def test_least_recently_used_model_is_unloaded_to_fit_the_memory_limit(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    two_models = "".join(
        f'[[models]]\nid = "{name}"\nsource = {SMOLLM2_SOURCE}\ncontext_length = 1024\n'
        for name in ("first", "second")
    )
    config, _ = write_config(f"[memory_limits]\ntotal_mb = 300\n{two_models}")
    manager = UnifiedModelManager(config, registry=plugin)
    try:
        estimate = (await manager.list_models())[0].memory_mb
        assert estimate is not None and 150 < estimate < 300  # two never fit in 300 MB
        assert await manager.load_model("first") == "llama_cpp"
        assert await manager.load_model("second") == "llama_cpp"
        loaded = {m.id: m.loaded for m in (await manager.list_models())}
        assert loaded == {"first": False, "second": True}
        # Asking the first model brings it back and sends the second away.
        assert await manager.process_input("What is the capital of France?", model="first")
        assert {m.id: m.loaded for m in (await manager.list_models())} == {
            "first": True,
            "second": False,
        }
    finally:
        await manager.close()


async def test_a_model_that_can_never_fit_is_refused_with_the_numbers(
    write_config: WriteConfig,
) -> None:
    config, _ = write_config(
        f'[memory_limits]\ntotal_mb = 100\n[[models]]\nid = "m"\nsource = {SMOLLM2_SOURCE}\n'
    )
    manager = UnifiedModelManager(config)
    with pytest.raises(MemoryBudgetError, match=r"more than memory_limits.total_mb \(100 MB\)"):
        await manager.load_model("m")


async def test_each_session_keeps_its_own_history(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        PLUGINS + '[daemon]\nsystem_prompt = "Be brief."\n'
        '[[models]]\nid = "m"\nsource = { ollama = "m" }\nbackend_preferences = ["recorder"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    await manager.process_input("hello", session="kitchen")
    await manager.process_input("lights on", session="kitchen")
    await manager.process_input("hi", session="office")
    kitchen, office = recorder(manager).generations()[1:]
    assert [(m.role, m.content) for m in kitchen.messages] == [
        ("system", told("Be brief.")),
        ("user", "hello"),
        ("assistant", "You said: hello"),
        ("user", "lights on"),
    ]
    assert [(m.role, m.content) for m in office.messages] == [
        ("system", told("Be brief.")),
        ("user", "hi"),
    ]


async def test_history_beyond_the_token_budget_is_left_out(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        PLUGINS + "[daemon]\nhistory_tokens = 5\n"
        '[[models]]\nid = "m"\nsource = { ollama = "m" }\nbackend_preferences = ["recorder"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    for question in ("one", "two", "three"):
        await manager.process_input(question, session="kitchen")
    last = recorder(manager).generations()[-1]
    # Each earlier exchange costs 4 tokens ("two" + "You said: two"): only the latest fits in 5.
    assert [m.content for m in last.messages if m.role != "system"] == [
        "two",
        "You said: two",
        "three",
    ]


async def test_presets_and_system_prompt_reach_the_backend(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        PLUGINS + '[[models]]\nid = "m"\nsource = { ollama = "m" }\n'
        'backend_preferences = ["recorder"]\nstop = ["###"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    manager.set_system_prompt("Answer like a pirate.")
    await manager.process_input("hi", preset="fast")
    request = recorder(manager).generations()[-1]
    assert request.messages[0].content == told("Answer like a pirate.")
    assert (request.params.max_tokens, request.params.temperature) == (128, 0.5)
    assert request.params.stop == ("###",)
    with pytest.raises(TektraError, match=r"no preset 'turbo'"):
        await manager.process_input("hi", preset="turbo")


async def test_switch_backend_puts_a_backend_first_for_every_model(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        "[backends.flaky]\nenabled = false\n"
        f'[[models]]\nid = "m"\nsource = {SMOLLM2_SOURCE}\n'
        'backend_preferences = ["llama_cpp", "recorder"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    manager.switch_backend("recorder")
    answer = manager.answer(Query("hi"))
    assert "".join([c async for c in answer]) == "You said: hi"
    assert answer.backend == "recorder"
    with pytest.raises(TektraError, match="backend 'vllm' is not installed"):
        manager.switch_backend("vllm")
    with pytest.raises(TektraError, match=r"backend 'flaky' is disabled: set \[backends.flaky\]"):
        manager.switch_backend("flaky")


async def test_an_image_goes_to_a_model_that_accepts_images(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        PLUGINS + f'[[models]]\nid = "text"\nsource = {SMOLLM2_SOURCE}\n'
        '[[models]]\nid = "vision"\nsource = { ollama = "v" }\ncapabilities = ["text", "image"]\n'
        'backend_preferences = ["llama_cpp", "recorder"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    photo = png(width=1600, height=1200)
    text = await manager.process_multimodal("what is this?", images=[photo])
    assert text == "You said: what is this?"
    (sent,) = recorder(manager).generations()[-1].images
    assert sent.startswith(b"\xff\xd8")  # re-encoded as JPEG
    assert decoded_size(sent) == (768, 576)  # scaled to [media].max_side, aspect kept


async def test_a_damaged_image_is_refused_before_any_backend_is_tried(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        PLUGINS + '[[models]]\nid = "vision"\nsource = { ollama = "v" }\n'
        'capabilities = ["text", "image"]\nbackend_preferences = ["recorder"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    with pytest.raises(MediaError, match=r"^image 2 could not be decoded"):
        await manager.process_multimodal("what?", images=[png(), png()[:60]])
    assert recorder(manager).calls == []


async def test_no_model_for_the_input_is_a_clear_error(write_config: WriteConfig) -> None:
    config, _ = write_config(f'[[models]]\nid = "m"\nsource = {SMOLLM2_SOURCE}\n')
    manager = UnifiedModelManager(config)
    with pytest.raises(CapabilityError, match=r"^no configured model accepts images$"):
        await manager.process_multimodal("what is this?", images=[b"\xff\xd8"])


async def test_load_gemma3n_loads_the_gemma3n_model(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        PLUGINS + '[[models]]\nid = "gemma3n:e4b"\nsource = { ollama = "gemma3n:e4b" }\n'
        'backend_preferences = ["recorder"]\ncapabilities = ["text", "image", "audio"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    assert await manager.load_gemma3n() == "recorder"
    assert recorder(manager).loaded == {"gemma3n:e4b"}


async def test_list_models_reports_backend_capabilities_loaded_state_and_memory(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        PLUGINS + f'[[models]]\nid = "small"\nsource = {SMOLLM2_SOURCE}\n'
        '[[models]]\nid = "remote"\nsource = { ollama = "r" }\nbackend_preferences = ["recorder"]\n'
        'capabilities = ["text", "image"]\n'
        '[[models]]\nid = "hub"\nsource = { hf = "org/repo", file = "m.gguf" }\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    await manager.load_model("remote")
    rows = {m.id: m for m in (await manager.list_models())}
    assert (rows["remote"].backend, rows["remote"].loaded, rows["remote"].memory_mb) == (
        "recorder",
        True,
        100,
    )
    assert rows["remote"].capabilities == ("text", "image")
    assert (rows["small"].backend, rows["small"].loaded) == ("llama_cpp", False)
    assert rows["hub"].problem == "model 'hub' is not downloaded yet: run `tektra models pull hub`"


async def test_validate_config_reports_enabled_backends_that_are_not_installed(
    write_config: WriteConfig,
) -> None:
    config, path = write_config(
        f'[backends.ollama]\nenabled = true\n[[models]]\nid = "m"\nsource = {SMOLLM2_SOURCE}\n'
    )
    # An installation whose ollama backend is missing, as when a packager leaves it out.
    without_ollama = BackendRegistry({k: v for k, v in discover().items() if k != "ollama"})
    manager = UnifiedModelManager(config, registry=without_ollama, config_path=path)
    assert [str(i) for i in (await manager.validate_config())] == [
        "backends.ollama: enabled but not installed"
    ]
    assert (await UnifiedModelManager(config, config_path=path).validate_config()) == []


async def test_a_client_that_goes_away_stops_its_generation(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        "[backends.recorder]\nchunk_delay_s = 0.05\n"
        '[[models]]\nid = "m"\nsource = { ollama = "m" }\nbackend_preferences = ["recorder"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    answer = manager.answer(Query("one two three four five six seven eight"))
    first = asyncio.Event()

    async def client() -> None:
        async for _ in answer:
            first.set()

    task = asyncio.create_task(client())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert answer.stats.finish_reason == "cancelled"
    assert answer.stats.completion_tokens < 3
    # A cancelled answer is not remembered as part of the conversation.
    await manager.process_input("next")
    assert [
        m.content for m in recorder(manager).generations()[-1].messages if m.role == "user"
    ] == ["next"]
