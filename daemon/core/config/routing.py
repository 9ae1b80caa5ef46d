"""Rules of `[[routing]]`: the model and the backends exist, the model can run on each backend,
and the shares say how to split every query (above 0, summing to 1)."""

from __future__ import annotations

import math

from daemon.core import sources as model_sources
from daemon.core.config.partial import Reported
from daemon.core.config.schema import ModelEntry, RouteSettings
from daemon.core.errors import ConfigIssue

ENGINES = ("llama_cpp", "mistral_rs")
"""Backends that run local weights (a path, a package or a Hugging Face file)."""
SERVERS = ("ollama", "openai", "anthropic")
"""Backends whose server owns the weights (an `ollama` or `served` source)."""
_LOCAL = ("path", "package", "hf")


def check_routing(
    routes: list[RouteSettings] | None,
    models: list[ModelEntry | None],
    ids: list[str | None],
    known: list[str],
    reported: Reported,
) -> list[ConfigIssue]:
    from daemon.core.config.checks import unknown_backend  # checks calls us: import late

    issues: list[ConfigIssue] = []
    # An entry whose id failed has none (see `partial`): it is nobody's route.
    by_id = {m.__dict__["id"]: m for m in models if m is not None and "id" in m.__dict__}
    names = list(dict.fromkeys(i for i in ids if i is not None))
    seen: dict[str, int] = {}
    for i, route in enumerate(routes or []):
        path = f"routing[{i}]"
        if not reported.ok(path):
            continue
        if route.model not in names:
            issues.append(
                ConfigIssue(
                    f"{path}.model",
                    f"no model with id '{route.model}' (models: {', '.join(names)})",
                )
            )
        elif route.model in seen:
            issues.append(
                ConfigIssue(
                    f"{path}.model",
                    f"model '{route.model}' is already routed by routing[{seen[route.model]}]",
                )
            )
        else:
            seen[route.model] = i
        if len(route.backends) < 2:
            issues.append(
                ConfigIssue(f"{path}.backends", "name at least two backends to share queries")
            )
        for name, share in route.backends.items():
            where = f"{path}.backends.{name}"
            if name not in known:
                issues.append(ConfigIssue(where, unknown_backend(name, known)))
            elif not 0.0 < share <= 1.0:
                issues.append(ConfigIssue(where, f"a share is above 0 and at most 1 (got {share})"))
            else:
                problem = _cannot_run(by_id.get(route.model), name)
                if problem is not None:
                    issues.append(ConfigIssue(where, problem))
        total = sum(route.backends.values())
        if route.backends and not math.isclose(total, 1.0, abs_tol=1e-6):
            issues.append(
                ConfigIssue(f"{path}.backends", f"the shares sum to {total:g}; they must sum to 1")
            )
    return issues


def _cannot_run(model: ModelEntry | None, backend: str) -> str | None:
    """Why `backend` cannot run `model`, judged from where the model's weights live."""
    if model is None:
        return None
    kind = model_sources.source_kind(model.source)
    if backend in ENGINES and kind not in _LOCAL:
        return f"{backend} runs local weights; the source of model '{model.id}' is `{kind}`"
    if backend in SERVERS and kind in _LOCAL:
        return (
            f"{backend} asks a server for the model; the source of model '{model.id}' is "
            f"`{kind}` (local weights)"
        )
    return None
