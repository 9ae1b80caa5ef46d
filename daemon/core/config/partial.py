"""Validating models.toml section by section, keeping whatever is valid.

Pydantic stops a model at its first failing layer: when one key of a table is wrong, the table as a
whole is rejected and nothing of it reaches the cross-section checks, so one error hides the next
(a bad `node_id` hid an unknown `preset`). Here every section is validated whole for its errors, and
then rebuilt key by key from the keys that are valid on their own, so the cross-checks still see
them. A key that failed keeps its default in the rebuilt section; the checks skip any rule that
reads a key with a reported error (see `Reported`), so a default never stands in for a user's value.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from daemon.core.config.schema import Section, TektraConfig
from daemon.core.errors import ConfigIssue


class Reported:
    """The key paths that already have an error; rules reading them stay silent."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self._paths = {issue.path for issue in issues}

    def ok(self, *paths: str) -> bool:
        """No error was reported at any of `paths` or inside them."""
        return not any(
            p == path or p.startswith((f"{path}.", f"{path}["))
            for path in paths
            for p in self._paths
        )


def validate(kind: Any, value: Any, prefix: str, issues: list[ConfigIssue]) -> Any:
    """`value` as `kind`, or its valid part; errors are recorded under `prefix`.

    Returns None only when nothing of the value can be used (it is not even a table).
    """
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return _section(kind, value, prefix, issues)
    item = _dict_of_sections(kind)
    if item is not None and isinstance(value, dict):
        # Each named table on its own ([presets.fast], [presets.terse]): one bad one keeps the rest.
        return {
            name: validate(item, entry, f"{prefix}.{name}", issues) for name, entry in value.items()
        }
    try:
        return TypeAdapter(kind).validate_python(value, strict=True)
    except ValidationError as exc:
        issues.extend(issues_of(exc.errors(), prefix))
        return None


def _dict_of_sections(kind: Any) -> type[BaseModel] | None:
    if typing.get_origin(kind) is not dict:
        return None
    _key, item = typing.get_args(kind)
    return item if isinstance(item, type) and issubclass(item, BaseModel) else None


def _section(
    kind: type[BaseModel], value: Any, prefix: str, issues: list[ConfigIssue]
) -> BaseModel | None:
    try:
        return kind.model_validate(value, strict=True)
    except ValidationError as exc:
        issues.extend(issues_of(exc.errors(), prefix))
    if not isinstance(value, dict):
        return None
    # Rebuild from the keys that are valid on their own. Fields that failed keep their defaults;
    # a required field that failed is absent (the checks know it from its reported error).
    extra_allowed = kind.model_config.get("extra") == "allow"
    extras = {k: v for k, v in value.items() if k not in kind.model_fields and extra_allowed}
    partial = kind.model_construct(**extras)
    validator = kind.__pydantic_validator__
    for name, item in value.items():
        field = kind.model_fields.get(name)
        if field is None:
            continue
        if isinstance(field.annotation, type) and issubclass(field.annotation, Section):
            nested = _section(field.annotation, item, prefix, [])
            if nested is not None:
                partial.__dict__[name] = nested
            continue
        try:
            validator.validate_assignment(partial, name, item)
        except ValidationError:  # reported above, from the whole table
            if isinstance(item, dict):  # a table of entries (budgets): keep the valid ones
                _valid_entries(validator, partial, name, item)
    return partial


def _valid_entries(validator: Any, partial: BaseModel, name: str, table: dict[str, Any]) -> None:
    good: dict[str, Any] = {}
    for key, entry in table.items():
        try:
            validator.validate_assignment(partial, name, {**good, key: entry})
        except ValidationError:
            continue
        good[key] = entry


def issues_of(errors: list[ErrorDetails], prefix: str) -> list[ConfigIssue]:
    out = []
    for err in errors:
        path = prefix
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        out.append(ConfigIssue(path, describe(err)))
    return out


def describe(err: ErrorDetails) -> str:
    """A message a user can act on, in TOML's words rather than Python's."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    expected = {
        "int_type": "an integer",
        "float_type": "a number",
        "bool_type": "true or false",
        "string_type": "a string",
        "list_type": "an array",
        "dict_type": "a table",
        "model_type": "a table",
        "model_attributes_type": "a table",
    }
    if kind in expected:
        return f"expected {expected[kind]}, got {toml_type(value)} {_show(value)}"
    if kind == "extra_forbidden":
        return "unknown key" + did_you_mean(str(err["loc"][-1]), _KEYS)
    if kind == "missing":
        return "required key is missing"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']} (got {_show(value)})"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']} (got {_show(value)})"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']} (got {_show(value)})"
    if kind == "less_than":
        return f"must be less than {ctx['lt']} (got {_show(value)})"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']} (got {_show(value)})"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"must be at least {ctx.get('min_length')} characters (got {_show(value)})"
    if kind == "string_pattern_mismatch":
        return f"{_show(value)} does not match the pattern {ctx['pattern']}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"]


SECTIONS = sorted(TektraConfig.model_fields)
# Every key of every table, for "did you mean" hints on unknown keys.
_KEYS = sorted({name for cls in Section.__subclasses__() for name in cls.model_fields})


def did_you_mean(word: str, vocabulary: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(vocabulary), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def toml_type(value: object) -> str:
    names = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "table",
    }
    return names.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
