"""`tektra entities`: what Tektra knows of the home, as a table for people."""

from __future__ import annotations

from typing import Any

COLUMNS = ("ID", "NAME", "AREA", "STATE", "ORIGIN", "SOURCE")


def entities_table(entities: list[dict[str, Any]]) -> str:
    """One row per entity, state `unavailable` when the device says it is away."""
    if not entities:
        return "no entities: none discovered on the broker, none in [[entities]] of models.toml"
    rows = [COLUMNS]
    for e in entities:
        state = e.get("state") if e.get("available") else "unavailable"
        names = ", ".join([e["name"], *e.get("aliases", [])])
        rows.append(
            (e["id"], names, e.get("area") or "-", str(state or "?"), e["origin"], e["source"])
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )
