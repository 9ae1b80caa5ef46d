"""A/B routing: which backend answers the next query for a routed model, and how each did.

Assignment is deterministic: a smooth weighted round-robin (the one nginx uses). Every query adds
each backend's share to its credit; the backend with the most credit answers and gives back 1.
Shares of 0.5/0.5 alternate A, B, A, B; 0.75/0.25 gives A, A, B, A per four queries. The first
query goes to the backend written first. A pick that cannot be used now (resting, disabled, unable
to take the input) moves nothing: the query goes down the usual order instead.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon.core.config.schema import RouteSettings


@dataclass
class BackendRecord:
    """How one backend did for one routed model."""

    answers: int = 0
    failures: int = 0
    first_token_ms: list[float] = field(default_factory=list)
    tokens_per_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def mean(values: list[float]) -> float | None:
            return round(statistics.fmean(values), 1) if values else None

        median = round(statistics.median(self.first_token_ms), 1) if self.first_token_ms else None
        return {
            "answers": self.answers,
            "failures": self.failures,
            "first_token_ms_p50": median,
            "first_token_ms_mean": mean(self.first_token_ms),
            "tokens_per_s": mean(self.tokens_per_s),
        }


class Router:
    def __init__(self, routes: Sequence[RouteSettings]) -> None:
        self._shares = {r.model: dict(r.backends) for r in routes}
        self._credit = {r.model: dict.fromkeys(r.backends, 0.0) for r in routes}
        self._records = {r.model: {b: BackendRecord() for b in r.backends} for r in routes}

    def backends(self, model_id: str) -> list[str]:
        """The backends the model's queries are shared between (none for a model not routed)."""
        return list(self._shares.get(model_id, ()))

    def arrange(self, model_id: str, order: list[str]) -> list[str]:
        """`order` with this query's pick first (unchanged for a model with no route)."""
        shares = self._shares.get(model_id)
        if shares is None:
            return order
        credit = self._credit[model_id]
        for name, share in shares.items():
            credit[name] += share
        pick = max(credit, key=lambda name: credit[name])  # ties: the one written first
        credit[pick] -= 1.0
        if pick not in order:
            return order
        return [pick] + [name for name in order if name != pick]

    def answered(
        self, model_id: str, backend: str, first_token_s: float, tokens_per_s: float
    ) -> None:
        record = self._record(model_id, backend)
        if record is not None:
            record.answers += 1
            record.first_token_ms.append(first_token_s * 1000.0)
            record.tokens_per_s.append(tokens_per_s)

    def failed(self, model_id: str, backend: str) -> None:
        record = self._record(model_id, backend)
        if record is not None:
            record.failures += 1

    def stats(self) -> list[dict[str, Any]]:
        """One row per routed model and backend, in the order models.toml names them."""
        return [
            {"model": model_id, "backend": backend, "share": self._shares[model_id][backend]}
            | record.summary()
            for model_id, records in self._records.items()
            for backend, record in records.items()
        ]

    def _record(self, model_id: str, backend: str) -> BackendRecord | None:
        return self._records.get(model_id, {}).get(backend)


COLUMNS = (
    "MODEL",
    "BACKEND",
    "SHARE",
    "ANSWERS",
    "FAILURES",
    "FIRST TOKEN P50",
    "FIRST TOKEN MEAN",
    "TOK/S",
)


def stats_table(rows: list[dict[str, Any]]) -> str:
    """The comparison as `tektra stats` prints it."""
    if not rows:
        return "no routing: add a [[routing]] table to models.toml to compare backends"

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f} ms"

    lines = [COLUMNS] + [
        (
            r["model"],
            r["backend"],
            f"{r['share']:g}",
            str(r["answers"]),
            str(r["failures"]),
            ms(r["first_token_ms_p50"]),
            ms(r["first_token_ms_mean"]),
            "-" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


@dataclass
class StreamTiming:
    """When an answer's stream started and its chunks came (monotonic seconds). The model's load
    is not in it: a backend is compared on answering, not on its one-time start."""

    started: float
    first: float | None = None
    chunks: int = 0

    def chunk(self, now: float) -> None:
        if self.first is None:
            self.first = now
        self.chunks += 1

    def result(self, ended: float, tokens: int) -> tuple[float, float]:
        """(seconds to the first token, tokens per second after it); tokens are the backend's
        count, else the chunks."""
        first = self.started if self.first is None else self.first
        tokens = tokens or self.chunks
        if tokens > 1 and ended > first:
            rate = (tokens - 1) / (ended - first)
        else:  # one token: no stretch after the first to measure, so over the whole answer
            rate = tokens / max(ended - self.started, 1e-6)
        return first - self.started, rate
