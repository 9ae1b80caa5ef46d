"""Reading models.toml: parse, validate every section, run the cross-checks, report all at once."""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from daemon.config.checks import cross_check
from daemon.config.schema import BUILTIN_PRESETS, ModelEntry, Section, TektraConfig
from daemon.errors import ConfigError, ConfigIssue

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

CONFIG_ENV = "TEKTRA_CONFIG"


def default_config_path() -> Path:
    """`$TEKTRA_CONFIG`, else ./models.toml, else the user's, else the system's."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    config_home = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    for candidate in (Path("models.toml"), config_home / "tektra/models.toml"):
        if candidate.is_file():
            return candidate
    return Path("/etc/tektra/models.toml")


def load_config(path: Path, known_backends: Iterable[str] = ()) -> TektraConfig:
    """The validated configuration, or ConfigError listing every problem."""
    config, issues = check_file(path, known_backends)
    if issues or config is None:
        raise ConfigError(issues)
    return config


def check_file(
    path: Path, known_backends: Iterable[str] = ()
) -> tuple[TektraConfig | None, list[ConfigIssue]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [ConfigIssue("", f"cannot read {path}: {exc.strerror or exc}")]
    except UnicodeDecodeError as exc:
        return None, [ConfigIssue("", f"{path} is not UTF-8 text: {exc.reason}")]
    return check_text(text, path.resolve().parent, known_backends)


def check_text(
    text: str, base_dir: Path, known_backends: Iterable[str] = ()
) -> tuple[TektraConfig | None, list[ConfigIssue]]:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [ConfigIssue("", f"not valid TOML: {exc}")]
    raw = _with_builtin_presets(_with_absolute_paths(raw, base_dir))
    issues: list[ConfigIssue] = []
    sections: dict[str, Any] = {}
    for key, value in raw.items():
        field = TektraConfig.model_fields.get(key)
        if field is None:
            issues.append(ConfigIssue(key, "unknown section" + _did_you_mean(key, _SECTIONS)))
        elif key == "models":
            sections[key] = _validate_models(value, issues)
        else:
            sections[key] = _validate(_field_type(key), value, key, issues)
    for key, field in TektraConfig.model_fields.items():
        if key not in raw and key != "models":  # absent sections take their defaults in checks
            sections[key] = field.get_default(call_default_factory=True)
    issues.extend(cross_check(raw, sections, set(known_backends)))
    if issues:
        return None, issues
    return TektraConfig.model_validate(raw), []


def _field_type(key: str) -> Any:
    return TektraConfig.model_fields[key].annotation


def _validate(kind: Any, value: Any, prefix: str, issues: list[ConfigIssue]) -> Any:
    """Validate one section; on failure record its errors under `prefix` and return None."""
    try:
        return TypeAdapter(kind).validate_python(value, strict=True)
    except ValidationError as exc:
        issues.extend(_issues(exc.errors(), prefix))
        return None


def _validate_models(value: Any, issues: list[ConfigIssue]) -> list[Any] | None:
    """Each `[[models]]` entry on its own, so one bad entry does not hide checks on the others."""
    if not isinstance(value, list):
        issues.append(
            ConfigIssue("models", f"expected an array of tables, got {_toml_type(value)}")
        )
        return None
    return [_validate(ModelEntry, entry, f"models[{i}]", issues) for i, entry in enumerate(value)]


def _issues(errors: list[ErrorDetails], prefix: str) -> list[ConfigIssue]:
    out = []
    for err in errors:
        path = prefix
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        out.append(ConfigIssue(path, describe(err)))
    return out


def describe(err: ErrorDetails) -> str:
    """A message a user can act on, in TOML's words rather than Python's."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    expected = {
        "int_type": "an integer",
        "float_type": "a number",
        "bool_type": "true or false",
        "string_type": "a string",
        "list_type": "an array",
        "dict_type": "a table",
        "model_type": "a table",
        "model_attributes_type": "a table",
    }
    if kind in expected:
        return f"expected {expected[kind]}, got {_toml_type(value)} {_show(value)}"
    if kind == "extra_forbidden":
        return "unknown key" + _did_you_mean(str(err["loc"][-1]), _KEYS)
    if kind == "missing":
        return "required key is missing"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']} (got {_show(value)})"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']} (got {_show(value)})"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']} (got {_show(value)})"
    if kind == "less_than":
        return f"must be less than {ctx['lt']} (got {_show(value)})"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']} (got {_show(value)})"
    if kind == "string_pattern_mismatch":
        return f"{_show(value)} does not match the pattern {ctx['pattern']}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"]


_SECTIONS = sorted(TektraConfig.model_fields)
# Every key of every table, for "did you mean" hints on unknown keys.
_KEYS = sorted({name for cls in Section.__subclasses__() for name in cls.model_fields})


def _did_you_mean(word: str, vocabulary: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(vocabulary), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _toml_type(value: object) -> str:
    names = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "table",
    }
    return names.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    """Relative source paths are relative to the file that names them, not to the working dir."""

    def fix(source: object) -> object:
        if not isinstance(source, Mapping):
            return source
        fixed = dict(source)
        keys = ("path", "mmproj", "hf_config") if "path" in fixed else ("hf_config",)
        for key in keys:
            if isinstance(fixed.get(key), str):
                fixed[key] = str((base_dir / Path(fixed[key]).expanduser()).resolve())
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
    return out
