"""Reading models.toml: find it, parse it, validate every section, run the cross-checks, report all
at once."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from daemon.core import devices
from daemon.core.config import legacy
from daemon.core.config.checks import cross_check
from daemon.core.config.partial import SECTIONS, Reported, did_you_mean, toml_type, validate
from daemon.core.config.partial import (
    describe as describe,  # re-exported: the protocol words errors
)
from daemon.core.config.schema import BUILTIN_PRESETS, ModelEntry, TektraConfig
from daemon.core.errors import ConfigError, ConfigIssue, TektraError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

CONFIG_ENV = "TEKTRA_CONFIG"
SYSTEM_CONFIG = Path("/etc/tektra/models.toml")

log = logging.getLogger("tektra.config")


class ConfigNotFound(TektraError):
    """No models.toml in any of the places Tektra looks."""

    code = "no_config"


class Checked(NamedTuple):
    """The result of checking a file: the configuration (None when any error), errors, notes."""

    config: TektraConfig | None
    issues: list[ConfigIssue]
    notes: list[ConfigIssue]
    """Old spellings that were understood, each naming today's spelling."""


def config_search() -> list[Path]:
    """Where models.toml is looked for, in order: `$TEKTRA_CONFIG` alone when it is set."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return [Path(env)]
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [Path("models.toml"), config_home / "tektra/models.toml", SYSTEM_CONFIG]


def default_config_path() -> Path:
    """The first of `config_search()` that exists; ConfigNotFound names every place looked."""
    places = config_search()
    for candidate in places:
        if candidate.is_file():
            return candidate
    env = os.environ.get(CONFIG_ENV)
    if env:
        looked = [f"  ${CONFIG_ENV}: {Path(env).absolute()}"]
    else:
        looked = [f"  ${CONFIG_ENV} (not set)"] + [f"  {p.absolute()}" for p in places]
    raise ConfigNotFound(
        "no configuration file found; looked in, in order:\n"
        + "\n".join(looked)
        + "\nwrite one (see README: models.toml) or pass --config FILE"
    )


def load_config(path: Path, known_backends: Iterable[str] = ()) -> TektraConfig:
    """The validated configuration, or ConfigError listing every problem; notes are logged."""
    config, issues, notes = inspect_file(path, known_backends)
    if issues or config is None:
        raise ConfigError(issues)
    for note in notes:
        log.warning("%s: note: %s", path, note)
    return config


def check_file(
    path: Path, known_backends: Iterable[str] = ()
) -> tuple[TektraConfig | None, list[ConfigIssue]]:
    config, issues, _notes = inspect_file(path, known_backends)
    return config, issues


def inspect_file(path: Path, known_backends: Iterable[str] = ()) -> Checked:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return Checked(None, [ConfigIssue("", f"cannot read {path}: {exc.strerror or exc}")], [])
    except UnicodeDecodeError as exc:
        return Checked(None, [ConfigIssue("", f"{path} is not UTF-8 text: {exc.reason}")], [])
    return inspect_text(text, path.resolve().parent, known_backends)


def check_text(
    text: str, base_dir: Path, known_backends: Iterable[str] = ()
) -> tuple[TektraConfig | None, list[ConfigIssue]]:
    config, issues, _notes = inspect_text(text, base_dir, known_backends)
    return config, issues


def inspect_text(text: str, base_dir: Path, known_backends: Iterable[str] = ()) -> Checked:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return Checked(None, [ConfigIssue("", f"not valid TOML: {exc}")], [])
    raw, issues, notes = legacy.modernise(raw)
    raw = _with_builtin_presets(_with_absolute_paths(raw, base_dir))
    sections: dict[str, Any] = {}
    for key, value in raw.items():
        field = TektraConfig.model_fields.get(key)
        if field is None:
            issues.append(ConfigIssue(key, "unknown section" + did_you_mean(key, SECTIONS)))
        elif key == "models":
            sections[key] = _validate_models(value, issues)
        else:
            sections[key] = validate(field.annotation, value, key, issues)
    for key, field in TektraConfig.model_fields.items():
        if key not in raw and key != "models":  # absent sections take their defaults in checks
            sections[key] = field.get_default(call_default_factory=True)
    issues.extend(cross_check(raw, sections, set(known_backends), Reported(issues)))
    notes += devices.config_notes(sections)
    if issues:
        return Checked(None, issues, notes)
    return Checked(TektraConfig.model_validate(raw), [], notes)


def _validate_models(value: Any, issues: list[ConfigIssue]) -> list[Any] | None:
    """Each `[[models]]` entry on its own, so one bad entry does not hide checks on the others."""
    if not isinstance(value, list):
        issues.append(ConfigIssue("models", f"expected an array of tables, got {toml_type(value)}"))
        return None
    return [validate(ModelEntry, entry, f"models[{i}]", issues) for i, entry in enumerate(value)]


def _with_builtin_presets(raw: dict[str, Any]) -> dict[str, Any]:
    """The four named presets always exist; a user's table overrides their fields one by one."""
    user = raw.get("presets", {})
    if not isinstance(user, dict):
        return raw
    merged: dict[str, Any] = {name: dict(values) for name, values in BUILTIN_PRESETS.items()}
    for name, values in user.items():
        merged[name] = {**merged.get(name, {}), **values} if isinstance(values, dict) else values
    return {**raw, "presets": merged}


def _with_absolute_paths(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Relative paths are relative to the file that names them, not to the working directory."""

    def absolute(value: str) -> str:
        return str((base_dir / Path(value).expanduser()).resolve())

    def fix(source: object) -> object:
        if not isinstance(source, Mapping):
            return source
        fixed = dict(source)
        keys = ("path", "mmproj", "hf_config") if "path" in fixed else ("hf_config",)
        for key in keys:
            if isinstance(fixed.get(key), str):
                fixed[key] = absolute(fixed[key])
        return fixed

    out = dict(raw)
    if isinstance(out.get("models"), list):
        out["models"] = [
            {**m, "source": fix(m["source"])} if isinstance(m, dict) and "source" in m else m
            for m in out["models"]
        ]
    stt = out.get("stt")
    if isinstance(stt, dict) and "model" in stt:
        out["stt"] = {**stt, "model": fix(stt["model"])}
    tts = out.get("tts")
    if isinstance(tts, dict) and isinstance(tts.get("voice"), dict):
        out["tts"] = {**tts, "voice": fix(tts["voice"])}
    mqtt = out.get("mqtt")
    if isinstance(mqtt, dict):
        files = ("password_file", "ca_file", "cert_file", "key_file")
        out["mqtt"] = {
            k: absolute(v) if k in files and isinstance(v, str) and v else v
            for k, v in mqtt.items()
        }
    templates = out.get("templates")
    if isinstance(templates, dict):
        out["templates"] = {
            name: {**t, "file": absolute(t["file"])}
            if isinstance(t, dict) and isinstance(t.get("file"), str)
            else t
            for name, t in templates.items()
        }
    audio = out.get("audio")
    if isinstance(audio, dict) and isinstance(audio.get("source"), str):
        prefix, _, wav = audio["source"].partition(":")
        if prefix == "file" and wav:
            out["audio"] = {**audio, "source": f"file:{absolute(wav)}"}
    return out
