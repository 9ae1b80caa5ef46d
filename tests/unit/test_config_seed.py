"""The original Tektra's models.toml loads: each old spelling is understood and noted.

The two fixtures are the seed documents' own snippets, unchanged. Where an old spelling has no clear
meaning today, the error says what to write instead.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import pytest

from daemon.core.config.load import check_text, inspect_file, load_config

CONFIGS = Path(__file__).parents[2] / "fixtures" / "configs"
OLLAMA_BY_ID = (
    "models[0].source: not given; an Ollama model named by its id is the original Tektra's "
    'spelling; now source = { ollama = "gemma3n:e4b" }'
)
MULTIMODAL = (
    "models[0].multimodal: the original Tektra's spelling; capabilities already says which "
    "inputs the model takes, remove multimodal"
)
APPLE_SILICON = platform.system() == "Darwin" and platform.machine() == "arm64"


@pytest.mark.skipif(APPLE_SILICON, reason="metal exists there: no note")
def test_the_migration_guides_models_toml_loads_with_notes() -> None:
    config, issues, notes = inspect_file(CONFIGS / "seed_migration_guide.toml")
    assert issues == []
    assert [str(n) for n in notes] == [
        MULTIMODAL,
        OLLAMA_BY_ID,
        # Today's spelling too: where there is no Metal, mistral.rs models do not load (a clear
        # error at load, then the next backend), rather than running on the CPU unasked.
        "backends.mistral_rs.device: 'metal' is an Apple Silicon GPU (Metal), which a "
        f"{platform.system()} {platform.machine()} machine does not have: models there will "
        'not load (device = "auto" uses the CPU here)',
    ]
    assert config is not None
    assert config.backends.mistral_rs.device == "metal"
    assert config.backends.default == ["mistral_rs", "llama_cpp", "ollama"]
    model = config.models[0]
    assert (model.id, model.source.ollama) == ("gemma3n:e4b", "gemma3n:e4b")
    assert model.capabilities == ["text", "image", "audio", "video"]
    assert config.presets["fast"].max_tokens == 256


def test_the_status_reports_models_toml_loads_with_notes() -> None:
    config, issues, notes = inspect_file(CONFIGS / "seed_status_report.toml")
    assert issues == []
    assert [str(n) for n in notes] == [
        "backends.default[0]: 'enhanced_ollama' is the original Tektra's name; now 'ollama'",
        "backends.enhanced_ollama: the original Tektra's spelling; now [backends.ollama] with "
        'host = "http://localhost:11434"',
        "models[0].backend_preferences[0]: 'enhanced_ollama' is the original Tektra's name; "
        "now 'ollama'",
        MULTIMODAL,
        OLLAMA_BY_ID,
    ]
    assert config is not None
    assert config.backends.default == ["ollama"]
    assert config.backends.ollama.enabled
    assert config.backends.ollama.host == "http://localhost:11434"
    model = config.models[0]
    assert model.backend_preferences == ["ollama"]
    assert (model.source.ollama, model.template, model.context_length) == (
        "gemma3n:e4b",
        "gemma",
        32768,
    )


SEED_MODEL = '[[models]]\nid = "gemma3n:e4b"\nbackend_preferences = ["ollama"]\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            SEED_MODEL + "multimodal = true\n",
            [
                "models[0].multimodal: the original Tektra's spelling, which does not say which "
                'inputs the model takes; write capabilities = ["text", "image"] (any of text, '
                "image, audio, video)"
            ],
        ),
        (
            SEED_MODEL + 'multimodal = true\ncapabilities = ["text"]\n',
            [
                "models[0].multimodal: true contradicts capabilities; remove multimodal "
                "(capabilities says which inputs the model takes)"
            ],
        ),
        (
            "[backends.ollama]\nenabled = true\n[backends.enhanced_ollama]\nenabled = true\n"
            + SEED_MODEL,
            [
                "backends.enhanced_ollama: the original Tektra's name of [backends.ollama], "
                "which this file also has; keep only [backends.ollama]"
            ],
        ),
        (
            '[backends.enhanced_ollama]\nhost = "http://gpu.lan:11434"\nport = 11500\n'
            + SEED_MODEL,
            [
                "backends.enhanced_ollama.port: 11500 conflicts with the port in host "
                "(http://gpu.lan:11434)"
            ],
        ),
        (
            # Not an Ollama model: no source means nothing to load.
            '[[models]]\nid = "gemma"\nbackend_preferences = ["llama_cpp"]\n',
            ["models[0].source: required key is missing"],
        ),
    ],
)
def test_an_old_spelling_without_a_clear_meaning_is_an_error(
    text: str, expected: list[str], tmp_path: Path
) -> None:
    config, issues = check_text(text, tmp_path)
    assert config is None
    assert [str(i) for i in issues] == expected


def test_ollama_host_and_port_in_todays_table_become_one_url(tmp_path: Path) -> None:
    text = '[backends.ollama]\nhost = "gpu.lan"\nport = 11500\n' + SEED_MODEL
    config, issues = check_text(text, tmp_path)
    assert issues == []
    assert config is not None and config.backends.ollama.host == "http://gpu.lan:11500"


def test_the_daemon_logs_each_note_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    seed = CONFIGS / "seed_status_report.toml"
    with caplog.at_level(logging.WARNING, logger="tektra.config"):
        load_config(seed)
    assert caplog.messages[-1] == f"{seed}: note: {OLLAMA_BY_ID}"
    assert len(caplog.messages) == 5
