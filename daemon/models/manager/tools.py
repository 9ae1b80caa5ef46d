"""What a model is told about acting on the home, and what an answer that called tools says.

Tektra never says it did something it did not: a model without tools is told it cannot act or
know the time or any state, and a model with tools has its calls carried out by the caller's
`Toolbox`, whose results, not the model's words, are the reply."""

from __future__ import annotations

import logging

from daemon.models.manager.query import Answer, Query

log = logging.getLogger("tektra.models")

NO_TOOLS_NOTE = (
    "You cannot act on anything: you cannot switch or set devices, set timers, or read the "
    "clock or any sensor, so you do not know the time, the date or the state of anything in the "
    "home. Never say that you did such a thing or know such a fact; say that you cannot."
)
"""Told to a model without tools."""
NO_TOOLS_INTENTS = (
    " Requests Tektra understands as home commands are carried out by Tektra itself and never "
    "reach you."
)
"""Added while the intents are on: they, not the model, act on the home."""
TOOLS_NOTE = (
    "To act on the home, set or check timers, or tell the time, the date or a device's state, "
    "call a tool: only its result says what happened. Never say you did such a thing without "
    "calling a tool."
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
