"""Every engine real: the same question through each backend, images in each one's native format,
and fallbacks caused by real failures (a stopped server, a file an engine cannot load, a
connection that breaks mid-answer).

The Ollama backend talks to `tests/engines/ollama_standin.py`, a stand-in speaking Ollama's HTTP
API, because no Ollama server can be installed here; everything else is the real engine.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.core.config.schema import TektraConfig
from daemon.core.errors import GenerationError, NoBackendAvailable
from daemon.models.backends.ollama import OllamaBackend
from daemon.models.manager.manager import Answer, Query, UnifiedModelManager
from tests.conftest import SMOLLM2_SOURCE, png
from tests.engines.conftest import API_KEY, VLM, VLM_MMPROJ, Server

WriteConfig = Callable[[str], tuple[TektraConfig, Path]]
QUESTION = "What is the capital of France?"
GREEDY = (
    '[daemon]\npreset = "exact"\n[presets.exact]\ntemperature = 0.0\nseed = 7\nmax_tokens = 16\n'
)
VLM_SOURCE = f'{{ path = "{VLM}", mmproj = "{VLM_MMPROJ}" }}'


def engines(ollama: str = "http://127.0.0.1:9", openai: str = "http://127.0.0.1:9/v1") -> str:
    return (
        "[backends.mistral_rs]\nenabled = true\nthreads = 1\n"
        f'[backends.ollama]\nenabled = true\nhost = "{ollama}"\n'
        f'[backends.openai]\nenabled = true\nbase_url = "{openai}"\n'
        'api_key_env = "TEKTRA_TEST_KEY"\n'
    )


async def ask(manager: UnifiedModelManager, query: Query) -> tuple[Answer, list[str]]:
    answer = manager.answer(query)
    chunks = [chunk async for chunk in answer]
    return answer, chunks


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEKTRA_TEST_KEY", API_KEY)


@pytest.mark.parametrize("backend", ["llama_cpp", "mistral_rs", "ollama", "openai"])
async def test_each_backend_streams_an_answer_to_the_same_question(
    backend: str, write_config: WriteConfig, ollama: Server, llama_server: Server
) -> None:
    source = {"ollama": '{ ollama = "smollm2:135m" }', "openai": '{ served = "smollm2" }'}
    config, _ = write_config(
        GREEDY
        + engines(ollama.url, llama_server.url + "/v1")
        + f'[[models]]\nid = "smollm2"\nsource = {source.get(backend, SMOLLM2_SOURCE)}\n'
        f'backend_preferences = ["{backend}"]\n'
    )
    manager = UnifiedModelManager(config)
    try:
        answer, chunks = await ask(manager, Query(QUESTION))
    finally:
        await manager.close()
    assert answer.backend == backend
    assert len(chunks) >= 3, chunks
    assert answer.text.strip()
    assert answer.stats.finish_reason in ("stop", "length")


async def test_images_reach_ollama_as_base64_in_the_message(
    write_config: WriteConfig, ollama: Server
) -> None:
    config, _ = write_config(
        GREEDY + engines(ollama.url) + '[[models]]\nid = "vlm"\nsource = { ollama = "vlm:tiny" }\n'
        'capabilities = ["text", "image"]\nbackend_preferences = ["ollama"]\n'
    )
    manager = UnifiedModelManager(config)
    await ask(manager, Query("What do you see?", images=(png(32, 32, 255),)))
    await manager.close()
    (chat,) = ollama.requests("/api/chat")
    last = chat["messages"][-1]  # type: ignore[index]
    assert last["content"] == "What do you see?"
    (image,) = last["images"]
    assert base64.b64decode(image).startswith(b"\xff\xd8\xff")  # the prepared JPEG


def vlm_config(backend: str, llama_server: Server | None = None) -> str:
    source = '{ served = "tiny-vlm" }' if backend == "openai" else VLM_SOURCE
    url = llama_server.url + "/v1" if llama_server else "http://127.0.0.1:9/v1"
    return (
        GREEDY
        + engines(openai=url)
        + f'[[models]]\nid = "vlm"\nsource = {source}\ncontext_length = 256\n'
        f'capabilities = ["text", "image"]\nbackend_preferences = ["{backend}"]\n'
    )


async def black_and_white(manager: UnifiedModelManager) -> tuple[Answer, Answer]:
    black, _ = await ask(manager, Query("What is this?", images=(png(64, 64, 0),)))
    manager.forget_session("default")
    white, _ = await ask(manager, Query("What is this?", images=(png(64, 64, 255),)))
    return black, white


async def test_an_image_goes_through_llama_cpps_multimodal_path(write_config: WriteConfig) -> None:
    config, _ = write_config(vlm_config("llama_cpp"))
    manager = UnifiedModelManager(config)
    try:
        plain, _ = await ask(manager, Query("What is this?"))
        manager.forget_session("default")
        black, white = await black_and_white(manager)
    finally:
        await manager.close()
    # 16 image embeddings and the two image markers join the prompt.
    assert black.stats.prompt_tokens == plain.stats.prompt_tokens + 18
    # Random weights: the words mean nothing, but a black and a white image lead elsewhere.
    assert black.text != white.text


async def test_an_image_reaches_an_openai_compatible_server_as_a_data_uri(
    write_config: WriteConfig, llama_server: Server
) -> None:
    config, _ = write_config(vlm_config("openai", llama_server))
    manager = UnifiedModelManager(config)
    try:
        black, white = await black_and_white(manager)
    finally:
        await manager.close()
    assert (black.backend, white.backend) == ("openai", "openai")
    assert black.text != white.text  # the server embedded each image


async def test_an_image_goes_through_mistral_rs_multimodal_path(write_config: WriteConfig) -> None:
    hf_config = VLM.parent / "tiny-gemma3-vlm-hf"
    config, _ = write_config(
        vlm_config("mistral_rs").replace(
            f'mmproj = "{VLM_MMPROJ}"', f'mmproj = "{VLM_MMPROJ}", hf_config = "{hf_config}"'
        )
    )
    manager = UnifiedModelManager(config)
    try:
        black, white = await black_and_white(manager)
    finally:
        await manager.close()
    assert (black.backend, white.backend) == ("mistral_rs", "mistral_rs")
    assert black.text != white.text


async def test_the_openai_backend_sends_the_api_key_from_its_environment_variable(
    write_config: WriteConfig, llama_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEKTRA_TEST_KEY", "wrong-key")
    config, _ = write_config(
        GREEDY
        + engines(openai=llama_server.url + "/v1")
        + '[[models]]\nid = "m"\nsource = { served = "smollm2" }\n'
        'backend_preferences = ["openai"]\n'
    )
    manager = UnifiedModelManager(config)
    with pytest.raises(NoBackendAvailable, match="openai: not healthy"):
        await manager.process_input(QUESTION)
    await manager.close()


async def test_with_ollama_stopped_the_answer_comes_from_llama_cpp(
    write_config: WriteConfig, ollama: Server
) -> None:
    config, _ = write_config(
        GREEDY
        + engines(ollama.url)
        + f'[[models]]\nid = "smollm2:135m"\nsource = {SMOLLM2_SOURCE}\n'
        'backend_preferences = ["ollama", "llama_cpp"]\n'
    )
    ollama.stop()
    manager = UnifiedModelManager(config)
    try:
        answer, chunks = await ask(manager, Query(QUESTION))
    finally:
        await manager.close()
    assert answer.backend == "llama_cpp"
    assert "".join(chunks) == answer.text != ""
    assert manager.backend_status()["ollama"].last_error == "not healthy (its health check failed)"


async def test_mistral_rs_failing_to_load_a_file_falls_back_to_llama_cpp(
    write_config: WriteConfig,
) -> None:
    # mistral.rs cannot load a multimodal GGUF without the original model's config.json;
    # llama.cpp loads the same two files.
    config, _ = write_config(
        vlm_config("mistral_rs").replace('["mistral_rs"]', '["mistral_rs", "llama_cpp"]')
    )
    manager = UnifiedModelManager(config)
    try:
        answer, _ = await ask(manager, Query("What is this?", images=(png(64, 64, 0),)))
    finally:
        await manager.close()
    assert answer.backend == "llama_cpp"
    assert "cannot load" in manager.backend_status()["mistral_rs"].last_error


async def test_a_server_breaking_off_mid_answer_gives_one_clear_error(
    write_config: WriteConfig, tmp_path: Path, smollm2_path: Path
) -> None:
    from tests.engines.conftest import ollama_standin

    server = ollama_standin(tmp_path, smollm2_path, "--tag", "smollm2:135m", "--fail-after", "2")
    server.start()
    config, _ = write_config(
        GREEDY
        + engines(server.url)
        + f'[[models]]\nid = "smollm2:135m"\nsource = {SMOLLM2_SOURCE}\n'
        'backend_preferences = ["ollama", "llama_cpp"]\n'
    )
    manager = UnifiedModelManager(config)
    received: list[str] = []
    try:
        with pytest.raises(GenerationError) as caught:
            async for chunk in manager.answer(Query(QUESTION)):
                received.append(chunk)
    finally:
        await manager.close()
        server.stop()
    assert len(received) == 2  # what was streamed stays; no silent end, no second answer glued on
    assert str(caught.value).startswith(
        "ollama: the answer broke off: the connection to the Ollama server broke"
    )


async def test_ollama_pulls_a_missing_model_when_auto_pull_is_set(
    write_config: WriteConfig, ollama: Server
) -> None:
    model = (
        '[[models]]\nid = "m"\nsource = { ollama = "smollm2:pulled" }\n'
        'backend_preferences = ["ollama"]\n'
    )
    config, _ = write_config(GREEDY + engines(ollama.url) + model)
    manager = UnifiedModelManager(config)
    with pytest.raises(NoBackendAvailable, match=r"has no model 'smollm2:pulled' \(set auto_pull"):
        await manager.load_model("m")
    await manager.close()
    config, _ = write_config(
        GREEDY
        + engines(ollama.url).replace(
            "enabled = true\nhost", "enabled = true\nauto_pull = true\nhost"
        )
        + model
    )
    manager = UnifiedModelManager(config)
    progress: list[tuple[str, str, str]] = []
    manager.on_progress = lambda *report: progress.append(report)
    assert await manager.load_model("m") == "ollama"
    await manager.close()
    assert [r["model"] for r in ollama.requests("/api/pull")] == ["smollm2:pulled"]
    # The pull's progress reaches the manager's listener (the daemon makes events of it).
    assert progress[0] == ("ollama", "m", "pull smollm2:pulled: pulling manifest")
    assert ("ollama", "m", "pull smollm2:pulled: pulling 1234abcd 50%") in progress
    assert progress[-1] == ("ollama", "m", "pull smollm2:pulled: success")


async def test_ollama_warns_when_models_toml_and_the_server_disagree_on_images(
    write_config: WriteConfig, ollama: Server
) -> None:
    config, _ = write_config(
        GREEDY
        + engines(ollama.url)
        + '[[models]]\nid = "m"\nsource = { ollama = "smollm2:135m" }\n'
        'capabilities = ["text", "image"]\nbackend_preferences = ["ollama"]\n'
    )
    manager = UnifiedModelManager(config)
    await manager.load_model("m")
    backend = manager.backend("ollama")
    assert isinstance(backend, OllamaBackend)
    assert backend.warnings == [
        "models.toml gives model 'm' the image capability, "
        "but Ollama says smollm2:135m lacks vision"
    ]
    await manager.close()
