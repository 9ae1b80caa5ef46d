"""Reading a device's message with its `value_template`, as Home Assistant would.

Devices describe how to read their state in Jinja (`{{ value_json.state }}`); the template runs in
Jinja's sandbox with `value` (the payload as text) and `value_json` (the payload parsed, when it
is JSON). A template that fails reads as nothing: one odd message must not stop the following."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

log = logging.getLogger("tektra.home")

_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.ChainableUndefined)


@lru_cache(maxsize=512)
def _compiled(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def parse_json(payload: str) -> Any:
    """The payload parsed as JSON, or None when it is not JSON."""
    try:
        return json.loads(payload)
    except ValueError:
        return None


def render(template: str | None, payload: str) -> str | None:
    """`payload` read through `template` (the payload itself without one); None when the
    template fails or gives nothing."""
    if template is None:
        return payload
    try:
        text = _compiled(template).render(value=payload, value_json=parse_json(payload))
    except (jinja2.TemplateError, TypeError, ValueError) as exc:
        log.debug("template %r failed on %r: %s", template, payload[:100], exc)
        return None
    text = text.strip()
    return text or None
