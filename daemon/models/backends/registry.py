"""Where backends come from: the `tektra.backends` entry-point group.

Built-in backends are declared in Tektra's own pyproject.toml under that group, exactly as a
third-party plugin declares its own, so nothing is special-cased. Listing the group imports
nothing; a backend's module is imported only when the backend is created.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

from pydantic import BaseModel

from daemon.core.config.schema import BackendsSettings, PluginBackendSettings
from daemon.models.backends.base import Backend

ENTRY_POINT_GROUP = "tektra.backends"


class BackendRegistry:
    """The installed backends, by name."""

    def __init__(self, found: dict[str, EntryPoint] | None = None) -> None:
        self._entry_points = found if found is not None else discover()

    def names(self) -> list[str]:
        return sorted(self._entry_points)

    def __contains__(self, name: object) -> bool:
        return name in self._entry_points

    def backend_class(self, name: str) -> type[Backend]:
        cls = self._entry_points[name].load()
        if not isinstance(cls, type):
            raise TypeError(f"entry point {name!r} of {ENTRY_POINT_GROUP} is not a class")
        return cast(type[Backend], cls)

    def create(self, name: str, settings: BackendsSettings) -> Backend:
        cls = self.backend_class(name)
        table = settings_for(name, settings)
        model = getattr(cls, "settings_model", None)
        if model is not None and not isinstance(table, model):
            table = model.model_validate(_as_dict(table))
        return cls(table)  # type: ignore[call-arg]  # the protocol cannot declare __init__


def discover() -> dict[str, EntryPoint]:
    # A later distribution of the same name wins, so a plugin can replace a built-in backend.
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def settings_for(name: str, settings: BackendsSettings) -> BaseModel:
    table = getattr(settings, name, None)
    if isinstance(table, BaseModel):
        return table
    extra = (settings.model_extra or {}).get(name, {})
    return PluginBackendSettings.model_validate(_as_dict(extra))


def _as_dict(table: object) -> dict[str, Any]:
    if isinstance(table, BaseModel):
        return table.model_dump()
    return dict(cast(dict[str, Any], table)) if isinstance(table, dict) else {}
