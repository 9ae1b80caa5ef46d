"""Rules of models.toml that span sections: names that must refer to something, budgets that fit.

They run on whatever parts of the file validated (see `daemon.core.config.partial`), so a type error
in one key does not hide a wrong name in another; a rule that reads a key with a reported error
stays silent rather than judging that key's default. Files the configuration names must exist now,
not at the first use hours later."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from daemon.core import sources as model_sources
from daemon.core import user_templates
from daemon.core.config.partial import Reported
from daemon.core.config.routing import check_routing
from daemon.core.config.schema import (
    BUILTIN_BACKENDS,
    FAMILY_TEMPLATES,
    TOOL_BACKENDS,
    AudioSettings,
    BackendsSettings,
    DaemonSettings,
    MemoryLimits,
    ModelEntry,
    ModelSource,
    MqttSettings,
    PluginBackendSettings,
    SttSettings,
    TemplateSource,
    TtsSettings,
)
from daemon.core.config.urls import broker_problem
from daemon.core.errors import ConfigIssue


def cross_check(
    raw: dict[str, Any], sections: dict[str, Any], plugins: set[str], reported: Reported
) -> list[ConfigIssue]:
    known = sorted(set(BUILTIN_BACKENDS) | plugins)
    models: list[ModelEntry | None] = sections.get("models") or []
    issues: list[ConfigIssue] = []
    issues += _backends(sections.get("backends"), known, plugins, reported)
    ids = _raw_ids(raw.get("models"))
    issues += _duplicates(ids)
    templates: dict[str, TemplateSource | None] | None = sections.get("templates")
    issues += _models(models, known, reported)
    issues += _templates(templates, models, raw.get("templates"), reported)
    issues += _daemon(sections.get("daemon"), raw, ids, sections.get("presets"), reported)
    issues += _memory(sections.get("memory_limits"), models, known, reported)
    issues += check_routing(sections.get("routing"), models, ids, known, reported)
    stt = sections.get("stt")
    if isinstance(stt, SttSettings) and stt.model is not None and reported.ok("stt.model"):
        issues += _source_problem("stt.model", stt.model)
    issues += _mqtt(sections.get("mqtt"), reported)
    issues += _audio(sections.get("audio"), reported)
    issues += _tts(sections.get("tts"), reported)
    return issues


def _tts(tts: TtsSettings | None, reported: Reported) -> list[ConfigIssue]:
    """A piper voice is a local file: from a path or inside an installed package."""
    if tts is None or tts.voice is None or not reported.ok("tts.voice"):
        return []
    kind = model_sources.source_kind(tts.voice)
    if kind not in ("path", "package"):
        return [ConfigIssue(f"tts.voice.{kind}", "a voice comes from a `path` or a `package`")]
    return _source_problem("tts.voice", tts.voice)


def unknown_backend(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown backend '{name}' (known: {', '.join(known)}){hint}"


def _backends(
    backends: BackendsSettings | None, known: list[str], plugins: set[str], reported: Reported
) -> list[ConfigIssue]:
    if backends is None:
        return []
    issues: list[ConfigIssue] = []
    llama = backends.llama_cpp
    if llama.n_gpu_layers == 0 and llama.device != "cpu" and reported.ok("backends.llama_cpp"):
        issues.append(
            ConfigIssue(
                "backends.llama_cpp.n_gpu_layers",
                f'0 offloads no layer to the GPU that device = "{llama.device}" allows; write '
                'device = "cpu" to run on the CPU',
            )
        )
    issues += [
        ConfigIssue(f"backends.default[{i}]", unknown_backend(name, known))
        for i, name in enumerate(backends.default)
        if name not in known and reported.ok("backends.default")
    ]
    for name, table in (backends.model_extra or {}).items():
        if name not in plugins:
            issues.append(ConfigIssue(f"backends.{name}", unknown_backend(name, known)))
            continue
        try:
            PluginBackendSettings.model_validate(table)
        except ValidationError as exc:
            issues += [ConfigIssue(f"backends.{name}", e["msg"]) for e in exc.errors()]
    return issues


def _raw_ids(raw_models: object) -> list[str | None]:
    """Model ids as written, so an entry with another error still counts for duplicates."""
    if not isinstance(raw_models, list):
        return []
    return [
        m["id"] if isinstance(m, dict) and isinstance(m.get("id"), str) else None
        for m in raw_models
    ]


def _duplicates(ids: list[str | None]) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    first_index: dict[str, int] = {}
    for i, model_id in enumerate(ids):
        if model_id is None:
            continue
        if model_id in first_index:
            issues.append(
                ConfigIssue(
                    f"models[{i}].id",
                    f"duplicate model id '{model_id}' "
                    f"(first used by models[{first_index[model_id]}])",
                )
            )
        else:
            first_index[model_id] = i
    return issues


def _models(
    models: list[ModelEntry | None], known: list[str], reported: Reported
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for i, model in enumerate(models):
        if model is None:
            continue
        if reported.ok(f"models[{i}].backend_preferences"):
            for j, name in enumerate(model.backend_preferences):
                if name not in known:
                    issues.append(
                        ConfigIssue(
                            f"models[{i}].backend_preferences[{j}]", unknown_backend(name, known)
                        )
                    )
        if reported.ok(f"models[{i}].source"):
            issues += _source_problem(f"models[{i}].source", model.source)
        if "tools" in model.capabilities and reported.ok(f"models[{i}].backend_preferences"):
            issues += _tools_backends(i, model)
    return issues


def _tools_backends(i: int, model: ModelEntry) -> list[ConfigIssue]:
    """A model that takes tools must be preferred on backends that pass them."""
    return [
        ConfigIssue(
            f"models[{i}].backend_preferences[{j}]",
            f"backend '{name}' cannot give a model tools; a model with the tools capability "
            f"runs on {', '.join(TOOL_BACKENDS)}",
        )
        for j, name in enumerate(model.backend_preferences)
        if name in BUILTIN_BACKENDS and name not in TOOL_BACKENDS
    ]


def _templates(
    templates: dict[str, TemplateSource | None] | None,
    models: list[ModelEntry | None],
    raw: object,
    reported: Reported,
) -> list[ConfigIssue]:
    """Each `[templates]` table renders a test conversation; each model names a template that
    exists."""
    issues: list[ConfigIssue] = []
    for name, template in (templates or {}).items():
        if name in FAMILY_TEMPLATES:
            issues.append(
                ConfigIssue(f"templates.{name}", "the name of a built-in template; choose another")
            )
        elif template is not None and reported.ok(f"templates.{name}"):
            found = user_templates.problem(template)
            if found is not None:
                issues.append(ConfigIssue(f"templates.{name}.{found[0]}", found[1]))
    # Names as written, so a template with an error of its own still counts as existing.
    names = sorted(raw) if isinstance(raw, dict) else []
    for i, model in enumerate(models):
        if model is None or not reported.ok(f"models[{i}].template"):
            continue
        if model.template not in FAMILY_TEMPLATES and model.template not in names:
            choices = ", ".join(f"'{n}'" for n in (*FAMILY_TEMPLATES, *names))
            issues.append(
                ConfigIssue(
                    f"models[{i}].template",
                    f"no template '{model.template}' (built-in or in [templates]: {choices})",
                )
            )
    return issues


def _source_problem(prefix: str, source: ModelSource) -> list[ConfigIssue]:
    found = model_sources.problem(source)
    return [] if found is None else [ConfigIssue(f"{prefix}.{found[0]}", found[1])]


def _daemon(
    daemon: DaemonSettings | None,
    raw: dict[str, Any],
    model_ids: list[str | None],
    presets: dict[str, BaseModel] | None,
    reported: Reported,
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if "models" not in raw or (isinstance(raw["models"], list) and not raw["models"]):
        issues.append(ConfigIssue("models", "at least one [[models]] entry is required"))
    if daemon is None:
        return issues
    ids = list(dict.fromkeys(i for i in model_ids if i is not None))
    if (
        daemon.default_model is not None
        and ids
        and daemon.default_model not in ids
        and reported.ok("daemon.default_model")
    ):
        issues.append(
            ConfigIssue(
                "daemon.default_model",
                f"no model with id '{daemon.default_model}' (models: {', '.join(ids)})",
            )
        )
    if presets is not None and daemon.preset not in presets and reported.ok("daemon.preset"):
        issues.append(
            ConfigIssue(
                "daemon.preset",
                f"no preset '{daemon.preset}' (presets: {', '.join(sorted(presets))})",
            )
        )
    return issues


def _memory(
    limits: MemoryLimits | None,
    models: Iterable[ModelEntry | None],
    known: list[str],
    reported: Reported,
) -> list[ConfigIssue]:
    if limits is None:
        return []
    issues: list[ConfigIssue] = []
    total_ok = reported.ok("memory_limits.total_mb")
    for name, budget in limits.backends.items():
        path = f"memory_limits.backends.{name}"
        if name not in known:
            issues.append(ConfigIssue(path, unknown_backend(name, known)))
        elif budget > limits.total_mb and total_ok:
            issues.append(
                ConfigIssue(
                    path, f"{budget} MB exceeds memory_limits.total_mb ({limits.total_mb} MB)"
                )
            )
    for i, model in enumerate(models):
        if (
            model is not None
            and model.memory_mb is not None
            and model.memory_mb > limits.total_mb
            and total_ok
        ):
            issues.append(
                ConfigIssue(
                    f"models[{i}].memory_mb",
                    f"{model.memory_mb} MB can never fit in memory_limits.total_mb "
                    f"({limits.total_mb} MB)",
                )
            )
    return issues


def _mqtt(mqtt: MqttSettings | None, reported: Reported) -> list[ConfigIssue]:
    if mqtt is None:
        return []
    issues: list[ConfigIssue] = []
    if reported.ok("mqtt.broker"):
        problem = broker_problem(mqtt.broker)
        if problem is not None:
            issues.append(ConfigIssue("mqtt.broker", problem))
    for key in ("password_file", "ca_file", "cert_file", "key_file"):
        name = getattr(mqtt, key)
        if name is not None and reported.ok(f"mqtt.{key}"):
            problem = _file_problem(Path(name))
            if problem is not None:
                issues.append(ConfigIssue(f"mqtt.{key}", problem))
    if mqtt.key_file is not None and mqtt.cert_file is None and reported.ok("mqtt.cert_file"):
        issues.append(ConfigIssue("mqtt.key_file", "needs cert_file (the certificate it signs)"))
    return issues


def _audio(audio: AudioSettings | None, reported: Reported) -> list[ConfigIssue]:
    if audio is None or not reported.ok("audio.source"):
        return []
    if not audio.source.startswith("file:"):
        return []
    problem = _file_problem(Path(audio.source[len("file:") :]))
    return [] if problem is None else [ConfigIssue("audio.source", problem)]


def _file_problem(path: Path) -> str | None:
    """Why the daemon could not read `path`, or None."""
    if not path.exists():
        return f"file not found: {path}"
    if not path.is_file():
        return f"not a file: {path}"
    if not os.access(path, os.R_OK):
        return f"not readable by this user: {path}"
    return None
