"""Work that does not need repeating is done once: a GGUF header is walked once per version of the
file, and a conversation's history is counted once, not again for every question."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from daemon.core.config.schema import TektraConfig
from daemon.models import gguf_header
from daemon.models.backends.registry import BackendRegistry
from daemon.models.manager.manager import UnifiedModelManager
from daemon.models.manager.tools import system_prompt
from tests.engines.conftest import VLM
from tests.plugin_backend import RecordingBackend

WriteConfig = Callable[[str], tuple[TektraConfig, Path]]


async def test_the_gguf_header_is_walked_once_per_version_of_the_file(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    model = tmp_path / "tiny.gguf"
    shutil.copy(VLM, model)
    config, _ = write_config(
        f'[[models]]\nid = "tiny"\nsource = {{ path = "{model}" }}\ncontext_length = 256\n'
        'backend_preferences = ["llama_cpp"]\n'
    )
    manager = UnifiedModelManager(config)
    walks = gguf_header._metadata.cache_info().misses
    listed = [await manager.list_models() for _ in range(3)]
    assert listed[0] == listed[1] == listed[2]
    assert listed[0][0].memory_mb is not None and listed[0][0].memory_mb > 0
    assert gguf_header._metadata.cache_info().misses == walks + 1
    status = model.stat()
    os.utime(model, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))  # the file changed
    await manager.list_models()
    assert gguf_header._metadata.cache_info().misses == walks + 2


async def test_a_new_question_counts_its_own_tokens_not_the_whole_history_again(
    plugin: BackendRegistry, write_config: WriteConfig
) -> None:
    config, _ = write_config(
        '[daemon]\nsystem_prompt = "Be brief."\n[backends.recorder]\nenabled = true\n'
        '[[models]]\nid = "m"\nsource = { ollama = "m" }\nbackend_preferences = ["recorder"]\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    questions = ["one", "two", "three", "four", "five", "six"]
    for question in questions:
        await manager.process_input(question, session="kitchen")
    backend = manager.backend("recorder")
    assert isinstance(backend, RecordingBackend)
    # The sixth prompt still carries the five earlier exchanges...
    assert len(backend.generations()[-1].messages) == 1 + 2 * 5 + 1
    # ...but every text was counted once: the system prompt, each question, each answer that
    # went into a later prompt.
    answers = [f"You said: {q}" for q in questions[:-1]]
    told = system_prompt("Be brief.", with_tools=False, intents=True)  # with what it cannot do
    assert sorted(backend.counted) == sorted([told, *questions, *answers])
