"""`[tts]` is checked with the rest of models.toml: every problem named with its key path."""

from __future__ import annotations

from pathlib import Path

from daemon.core.config.load import inspect_file
from daemon.models.backends.registry import BackendRegistry
from tests.speech.conftest import MODEL


def issues_of(tmp_path: Path, tts: str) -> list[str]:
    path = tmp_path / "models.toml"
    path.write_text(f"[tts]\n{tts}\n{MODEL}")
    _config, issues, _notes = inspect_file(path, BackendRegistry().names())
    return [str(issue) for issue in issues]


def test_the_shipped_defaults_speak_answers_to_spoken_queries_with_piper(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(MODEL)
    config, issues, _ = inspect_file(path, BackendRegistry().names())
    assert issues == [] and config is not None
    assert (config.tts.engine, config.tts.speak, config.tts.output) == ("piper", "voice", "auto")


def test_every_tts_problem_is_named_in_one_pass(tmp_path: Path) -> None:
    found = issues_of(
        tmp_path,
        'engine = "festival"\nspeak = "sometimes"\nvolume = 3.0\n'
        'voice = { hf = "rhasspy/piper-voices", file = "en.onnx" }',
    )
    assert found == [
        "tts.engine: must be one of 'piper', 'espeak' or 'none' (got 'festival')",
        "tts.speak: must be one of 'voice', 'all' or 'none' (got 'sometimes')",
        "tts.volume: must be at most 2.0 (got 3.0)",
        "tts.voice.hf: a voice comes from a `path` or a `package`",
    ]


def test_a_voice_path_is_relative_to_the_file_that_names_it(tmp_path: Path) -> None:
    assert issues_of(tmp_path, 'voice = { path = "voices/me.onnx" }') == [
        f"tts.voice.path: file not found: {tmp_path / 'voices/me.onnx'}"
    ]
