"""The original Tektra's spelling of models.toml, read where its meaning is clear.

The seed documents wrote `multimodal = true`, `[backends.enhanced_ollama]` with `host` and `port`,
and Ollama models named only by their id. Files written that way load: each old spelling is
rewritten to today's before validation and leaves a note naming the new spelling (shown by
`tektra validate`, logged by the daemon). Where the old meaning is ambiguous the rewrite
stops and an error says what to write instead.

Their `device = "metal"` is today's spelling too: `daemon.core.devices` notes it on a machine
without Metal, and a model asked to run there does not load (rather than run on the CPU unasked).
"""

from __future__ import annotations

from typing import Any

from daemon.core.errors import ConfigIssue

OLD_OLLAMA = "enhanced_ollama"
ALL_CAPABILITIES = ("text", "image", "audio", "video")


def modernise(raw: dict[str, Any]) -> tuple[dict[str, Any], list[ConfigIssue], list[ConfigIssue]]:
    """`raw` in today's spelling, with (errors, notes) about what was rewritten."""
    errors: list[ConfigIssue] = []
    notes: list[ConfigIssue] = []
    out = dict(raw)
    backends = out.get("backends")
    if isinstance(backends, dict):
        out["backends"] = _backends(backends, errors, notes)
    models = out.get("models")
    if isinstance(models, list):
        out["models"] = [
            _model(m, f"models[{i}]", errors, notes) if isinstance(m, dict) else m
            for i, m in enumerate(models)
        ]
    return out, errors, notes


def _backends(
    table: dict[str, Any], errors: list[ConfigIssue], notes: list[ConfigIssue]
) -> dict[str, Any]:
    out = dict(table)
    if isinstance(out.get("default"), list):
        out["default"] = _renamed(out["default"], "backends.default", notes)
    if OLD_OLLAMA in out:
        old = out.pop(OLD_OLLAMA)
        if "ollama" in out:
            errors.append(
                ConfigIssue(
                    f"backends.{OLD_OLLAMA}",
                    "the original Tektra's name of [backends.ollama], which this file also "
                    "has; keep only [backends.ollama]",
                )
            )
        else:
            out["ollama"] = old
            if isinstance(old, dict):
                out["ollama"] = _ollama_host(old, f"backends.{OLD_OLLAMA}", errors)
            notes.append(
                ConfigIssue(
                    f"backends.{OLD_OLLAMA}",
                    "the original Tektra's spelling; now [backends.ollama]"
                    + _host_hint(out["ollama"]),
                )
            )
    elif isinstance(out.get("ollama"), dict) and "port" in out["ollama"]:
        out["ollama"] = _ollama_host(out["ollama"], "backends.ollama", errors)
        notes.append(
            ConfigIssue(
                "backends.ollama.port",
                "the original Tektra's spelling; now part of the URL in host"
                + _host_hint(out["ollama"]),
            )
        )
    return out


def _ollama_host(table: dict[str, Any], path: str, errors: list[ConfigIssue]) -> dict[str, Any]:
    """The seed's `host = "localhost"` + `port = 11434` as today's `host` URL."""
    out = dict(table)
    host, port = out.get("host", "127.0.0.1"), out.pop("port", None)
    if not isinstance(host, str) or (port is not None and not isinstance(port, int)):
        errors.append(ConfigIssue(path, "host must be a string and port an integer"))
        return out
    if "://" not in host:
        host = f"http://{host}"
    if port is not None:
        scheme, _, rest = host.partition("://")
        hostport = rest.split("/", 1)[0]
        if hostport.rsplit(":", 1)[-1].isdigit() and ":" in hostport:
            errors.append(
                ConfigIssue(f"{path}.port", f"{port} conflicts with the port in host ({host})")
            )
            return out
        host = f"{scheme}://{hostport}:{port}{rest[len(hostport) :]}"
    out["host"] = host
    return out


def _host_hint(table: object) -> str:
    if isinstance(table, dict) and isinstance(table.get("host"), str):
        return f' with host = "{table["host"]}"'
    return ""


def _renamed(names: list[Any], path: str, notes: list[ConfigIssue]) -> list[Any]:
    """`enhanced_ollama` as `ollama`, each backend once, in the order given."""
    out: list[Any] = []
    for i, name in enumerate(names):
        if name == OLD_OLLAMA:
            notes.append(
                ConfigIssue(
                    f"{path}[{i}]", f"'{OLD_OLLAMA}' is the original Tektra's name; now 'ollama'"
                )
            )
            name = "ollama"
        if name not in out:
            out.append(name)
    return out


def _model(
    entry: dict[str, Any], path: str, errors: list[ConfigIssue], notes: list[ConfigIssue]
) -> dict[str, Any]:
    out = dict(entry)
    if isinstance(out.get("backend_preferences"), list):
        out["backend_preferences"] = _renamed(
            out["backend_preferences"], f"{path}.backend_preferences", notes
        )
    if "multimodal" in out:
        _multimodal(out, path, errors, notes)
    model_id, prefs = out.get("id"), out.get("backend_preferences")
    named_by_id = isinstance(model_id, str) and isinstance(prefs, list) and "ollama" in prefs
    if "source" not in out and named_by_id:
        # The seed named Ollama models by their tag alone; that tag is the model's source.
        out["source"] = {"ollama": model_id}
        notes.append(
            ConfigIssue(
                f"{path}.source",
                "not given; an Ollama model named by its id is the original Tektra's "
                f'spelling; now source = {{ ollama = "{model_id}" }}',
            )
        )
    return out


def _multimodal(
    out: dict[str, Any], path: str, errors: list[ConfigIssue], notes: list[ConfigIssue]
) -> None:
    flag = out.pop("multimodal")
    caps = out.get("capabilities")
    where = f"{path}.multimodal"
    if not isinstance(flag, bool):
        errors.append(ConfigIssue(where, "expected true or false (better: use capabilities)"))
        return
    if caps is None:
        if flag:
            errors.append(
                ConfigIssue(
                    where,
                    "the original Tektra's spelling, which does not say which inputs the model "
                    'takes; write capabilities = ["text", "image"] (any of '
                    f"{', '.join(ALL_CAPABILITIES)})",
                )
            )
            return
        out["capabilities"] = ["text"]
        notes.append(
            ConfigIssue(where, 'the original Tektra\'s spelling; now capabilities = ["text"]')
        )
        return
    if isinstance(caps, list) and flag != any(c != "text" for c in caps):
        errors.append(
            ConfigIssue(
                where,
                f"{str(flag).lower()} contradicts capabilities; remove multimodal "
                "(capabilities says which inputs the model takes)",
            )
        )
        return
    notes.append(
        ConfigIssue(
            where,
            "the original Tektra's spelling; capabilities already says which inputs the model "
            "takes, remove multimodal",
        )
    )
