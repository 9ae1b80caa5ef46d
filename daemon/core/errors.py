"""The one exception family of the daemon.

Every error a user can meet carries a stable `code` (for MQTT and socket replies, and for callers
that catch precisely) and a message that says what to do about it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


class TektraError(Exception):
    """Base of every error the daemon reports to a user."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in models.toml."""

    path: str
    """Key path such as `models[1].context_length`; empty for file-level problems."""
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(TektraError):
    """models.toml is unreadable or invalid; `issues` lists every problem found in one pass."""

    code = "invalid_config"

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"invalid configuration ({len(issues)} error(s)):\n{lines}")


def print_error(exc: TektraError, config: object) -> None:
    """How a command line reports `exc` on stderr: every issue of an invalid `config` file, else
    the error's code and message."""
    if isinstance(exc, ConfigError):
        print(f"{config}: {len(exc.issues)} error(s)", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
    else:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)


class UnknownModel(TektraError):
    code = "unknown_model"


class UnknownBackend(TektraError):
    """A request names a backend that is not installed."""

    code = "unknown_backend"


class BackendDisabled(TektraError):
    """A request names a backend that `[backends.<name>] enabled` turns off."""

    code = "backend_disabled"


class UnknownPreset(TektraError):
    """A request names a preset that models.toml does not define."""

    code = "unknown_preset"


class InputTooLong(TektraError):
    """The question and system prompt do not fit in the model's context."""

    code = "too_long"


class ModelUnavailable(TektraError):
    """The model's weights cannot be found where its source says (not installed, not pulled)."""

    code = "model_unavailable"


class MemoryBudgetError(TektraError):
    """The model cannot fit in `[memory_limits]`, even with every other model unloaded."""

    code = "memory_limit"


class NoBackendAvailable(TektraError):
    """No enabled, healthy, capable backend could serve the request."""

    code = "no_backend"


class CapabilityError(TektraError):
    """The query needs a capability (image, audio, video) that no configured model has."""

    code = "unsupported_input"


class BackendError(TektraError):
    """A backend failed; the manager tries the next one."""

    code = "backend_error"

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend}: {reason}")
        self.backend = backend
        self.reason = reason


class BackendLoadError(BackendError):
    code = "load_failed"


class GenerationError(BackendError):
    """Generation failed after it started; what was streamed so far is incomplete."""

    code = "generation_failed"
