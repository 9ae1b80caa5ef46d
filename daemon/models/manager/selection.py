"""Which model answers a query, and which backends to try for it, in order. Pure logic."""

from __future__ import annotations

from collections.abc import Container, Sequence

from daemon.core.config.schema import BackendsSettings, ModelEntry
from daemon.core.errors import CapabilityError, UnknownModel
from daemon.models.manager.health import HealthBook

_NOUNS = {"image": "images", "audio": "audio", "video": "video", "text": "text"}


def describe_needs(needs: frozenset[str]) -> str:
    return " and ".join(_NOUNS[n] for n in sorted(needs - {"text"})) or "text"


def choose_model(
    models: Sequence[ModelEntry], requested: str | None, default: str | None, needs: frozenset[str]
) -> ModelEntry:
    """The requested model, else the default, else the first model that can take the input."""
    if requested is not None:
        model = next((m for m in models if m.id == requested), None)
        if model is None:
            known = ", ".join(m.id for m in models)
            raise UnknownModel(f"no model with id '{requested}' (models: {known})")
        if not needs <= set(model.capabilities):
            raise CapabilityError(f"model '{requested}' does not accept {describe_needs(needs)}")
        return model
    ordered = sorted(models, key=lambda m: m.id != default)  # stable: the default first
    for model in ordered:
        if needs <= set(model.capabilities):
            return model
    raise CapabilityError(f"no configured model accepts {describe_needs(needs)}")


def backend_order(
    model: ModelEntry,
    settings: BackendsSettings,
    installed: Container[str],
    health: HealthBook,
    now: float,
    forced: str | None = None,
    routed: Sequence[str] = (),
) -> tuple[list[str], list[str]]:
    """Backends to try, best first, and why the others of the preference list were left out.
    `routed`: the backends `[[routing]]` shares the model between, tried too if not preferred."""
    preferred = list(model.backend_preferences or settings.default)
    preferred += [name for name in routed if name not in preferred]
    if forced is not None:
        preferred = [forced] + [b for b in preferred if b != forced]
    order: list[str] = []
    skipped: list[str] = []
    for name in preferred:
        if name not in installed:
            skipped.append(f"{name}: not installed")
        elif not settings.enabled(name):
            skipped.append(f"{name}: disabled in [backends.{name}]")
        elif not health.available(name, now):
            wait = health.resting_until(name) - now
            skipped.append(f"{name}: resting {wait:.0f} s after repeated failures")
        else:
            order.append(name)
    return order, skipped
