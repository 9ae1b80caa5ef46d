"""Which backends may be tried now: consecutive failures lead to a cooldown.

Pure bookkeeping with an injected clock, so the rules are tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _State:
    failures: int = 0
    resting_until: float = 0.0
    last_error: str = ""


@dataclass
class HealthBook:
    failure_threshold: int
    """Consecutive failures that send a backend into cooldown."""
    cooldown_s: float
    _states: dict[str, _State] = field(default_factory=dict)

    def available(self, backend: str, now: float) -> bool:
        return now >= self._states.get(backend, _State()).resting_until

    def record_success(self, backend: str) -> None:
        self._states.pop(backend, None)

    def record_failure(self, backend: str, error: str, now: float) -> bool:
        """Count a failure; True when it starts a cooldown."""
        state = self._states.setdefault(backend, _State())
        state.failures += 1
        state.last_error = error
        if state.failures < self.failure_threshold:
            return False
        state.resting_until = now + self.cooldown_s
        # After the rest one more failure is enough to rest again (a half-open circuit).
        state.failures = self.failure_threshold - 1
        return True

    def resting_until(self, backend: str) -> float:
        return self._states.get(backend, _State()).resting_until

    def last_error(self, backend: str) -> str:
        return self._states.get(backend, _State()).last_error
