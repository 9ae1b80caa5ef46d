"""The memory budget of loaded models: what to unload, least recently used first, to fit more."""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.core.errors import MemoryBudgetError


@dataclass
class Resident:
    model_id: str
    backend: str
    mb: int
    last_used: float
    busy: int = 0
    """Generations in progress; a busy model is never unloaded."""


@dataclass
class MemoryLedger:
    total_mb: int
    backend_mb: dict[str, int] = field(default_factory=dict)
    residents: dict[tuple[str, str], Resident] = field(default_factory=dict)

    def used(self, backend: str | None = None) -> int:
        return sum(r.mb for r in self.residents.values() if backend in (None, r.backend))

    def plan(self, model_id: str, backend: str, mb: int) -> list[Resident]:
        """Residents to unload, oldest use first, so that `mb` more fits; raises if it never can."""
        budget = self.backend_mb.get(backend, self.total_mb)
        limit = min(budget, self.total_mb)
        if mb > limit:
            which = f"{backend}'s budget" if budget < self.total_mb else "memory_limits.total_mb"
            raise MemoryBudgetError(
                f"model '{model_id}' needs about {mb} MB, more than {which} ({limit} MB); "
                f"raise [memory_limits] or use a smaller model"
            )
        others = sorted(
            (r for key, r in self.residents.items() if key != (model_id, backend)),
            key=lambda r: r.last_used,
        )
        evict: list[Resident] = []
        backend_used, total_used = self.used(backend), self.used()
        for r in others:
            over_backend = r.backend == backend and backend_used + mb > budget
            if over_backend or total_used + mb > self.total_mb:
                if r.busy:
                    continue
                evict.append(r)
                total_used -= r.mb
                backend_used -= r.mb if r.backend == backend else 0
        if backend_used + mb > budget or total_used + mb > self.total_mb:
            raise MemoryBudgetError(
                f"model '{model_id}' needs about {mb} MB but the models in use leave "
                f"{min(budget - backend_used, self.total_mb - total_used)} MB; try again when "
                f"their answers finish"
            )
        return evict

    def add(self, model_id: str, backend: str, mb: int, now: float) -> None:
        self.residents[(model_id, backend)] = Resident(model_id, backend, mb, now)

    def remove(self, model_id: str, backend: str) -> None:
        self.residents.pop((model_id, backend), None)

    def get(self, model_id: str, backend: str) -> Resident | None:
        return self.residents.get((model_id, backend))

    def backend_of(self, model_id: str) -> str | None:
        return next((b for (m, b) in self.residents if m == model_id), None)
