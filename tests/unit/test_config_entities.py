"""`[[entities]]` and `[intents]` are checked like the rest of models.toml, in our words."""

from __future__ import annotations

from pathlib import Path

from daemon.core.config.load import check_file

MODEL = '[[models]]\nid = "m"\nsource = { path = "m.gguf" }\n'


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "models.toml"
    path.write_text(MODEL + text)
    _, issues = check_file(path, ["llama_cpp"])
    return [str(issue) for issue in issues if not str(issue).startswith("models")]


def test_an_entity_without_the_topic_its_domain_needs_is_refused(tmp_path: Path) -> None:
    text = (
        '[[entities]]\nname = "hall light"\ndomain = "light"\n'
        '[[entities]]\nname = "porch"\ndomain = "sensor"\n'
        '[[entities]]\nname = "x"\ndomain = "toaster"\ncommand_topic = "t/#"\n'
        "[intents]\nlanguage = 3\n"
    )
    assert problems(tmp_path, text) == [
        "entities[0]: a light needs `command_topic` (where its commands go)",
        "entities[1]: a sensor needs `state_topic` (where it tells its state)",
        "entities[2].domain: must be one of 'light', 'switch', 'fan', 'cover', 'lock', "
        "'climate', 'scene', 'button', 'sensor' or 'binary_sensor' (got 'toaster')",
        "entities[2].command_topic: 't/#' does not match the pattern ^[^#+]+$",
        "intents.language: expected a string, got integer 3",
    ]
