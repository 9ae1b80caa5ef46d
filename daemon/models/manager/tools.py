"""What a model is told about acting on the home, and what an answer that called tools says.

Tektra never says it did something it did not: a model without tools is told it cannot act or
know the time or any state, and a model with tools has its calls carried out by the caller's
`Toolbox`, whose results, not the model's words, are the reply."""

from __future__ import annotations

import logging

from daemon.models.manager.query import Answer, Query

log = logging.getLogger("tektra.models")

NO_TOOLS_NOTE = (
    "You cannot act on devices, set timers or read clocks and sensors: never say you did, and "
    "never state the time, the date or a device's state."
)
"""Told to a model without tools; short, as it comes with every prompt (small models read few)."""
NO_TOOLS_INTENTS = " Tektra carries out home commands itself."
"""Added while the intents are on: they, not the model, act on the home."""
TOOLS_NOTE = (
    "To act on the home, set timers or tell the time, the date or a device's state, call a "
    "tool: only its result says what happened. Never claim an action you did not call."
)
"""Told to a model given tools."""


def system_prompt(prompt: str, with_tools: bool, intents: bool) -> str:
    """The system prompt, with the truth about what the model can do in the home."""
    note = TOOLS_NOTE if with_tools else NO_TOOLS_NOTE + (NO_TOOLS_INTENTS if intents else "")
    return f"{prompt}\n\n{note}" if prompt else note


async def after_tools(query: Query, answer: Answer, text: str) -> str:
    """What an answer given tools says: the tools' own results when the model called any (never
    the model's words about them), else its text."""
    calls = answer.stats.tool_calls
    if not calls or query.tools is None:
        return text
    if text.strip():
        log.info("%s: the words beside its tool calls are not said: %r", answer.model_id, text)
    results = [await query.tools.call(call) for call in calls]
    return " ".join(r for r in results if r)
