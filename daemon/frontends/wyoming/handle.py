"""The conversation agent over Wyoming: a `transcript` (text) in, Tektra's answer out as
`handled`, or `not-handled` with the reason when there is no answer.

The question takes the path every front-end's `ask` takes (`Commands.run_request`), so it is on
the bus and MQTT like any other. Each connection is its own conversation. Home Assistant opens a
connection per turn and names the conversation in `context.conversation_id`; that name, when
given, carries the conversation over from one connection to the next.
"""

from __future__ import annotations

import logging
from typing import Any

from wyoming.asr import Transcript
from wyoming.event import Event
from wyoming.handle import Handled, NotHandled
from wyoming.info import Attribution, HandleModel, HandleProgram, Info

from daemon.assistant.commands import Commands
from daemon.assistant.protocol import AskArgs, Request
from daemon.core.events import new_request_id
from daemon.frontends.mqtt.discovery import support_url, tektra_version
from daemon.frontends.wyoming.base import Send, WyomingRefusal

log = logging.getLogger("tektra.wyoming")

FRONT_END = "wyoming"
MAX_CONVERSATION_ID = 150
"""Longest `conversation_id` taken as a conversation's name (a ULID has 26 characters)."""


class HandleService:
    """Tektra's assistant as a Wyoming conversation agent."""

    def __init__(self, commands: Commands) -> None:
        self.commands = commands

    def describe(self, info: Info) -> None:
        config = self.commands.assistant.config
        model_id = config.default_model_id or "none"
        # The model answers in the language it is spoken to; [stt] language says which one
        # the house speaks (none: any, which Home Assistant reads from an empty list).
        languages = [config.stt.language] if config.stt.language else []
        model = HandleModel(
            name=model_id,
            attribution=Attribution("Tektra", support_url() or ""),
            installed=True,
            description=f"Tektra's default model ({model_id})",
            version=None,
            languages=languages,
        )
        info.handle.append(
            HandleProgram(
                name="tektra",
                attribution=Attribution("Tektra", support_url() or ""),
                installed=True,
                description="Tektra's conversation agent",
                version=tektra_version(),
                models=[model],
                # Tektra answers in words; it does not act on Home Assistant's devices here.
                supports_home_control=False,
            )
        )

    def open(self) -> HandleSession:
        return HandleSession(self.commands)


class HandleSession:
    """One connection's conversation."""

    takes = frozenset({"transcript"})
    opens_audio: frozenset[str] = frozenset()

    def __init__(self, commands: Commands) -> None:
        self.commands = commands
        self.own = commands.open_conversation()

    async def on_event(self, event: Event, send: Send) -> None:
        try:
            transcript = Transcript.from_event(event)
        except (KeyError, TypeError, AttributeError) as exc:
            raise WyomingRefusal("bad_request", "transcript needs `text`") from exc
        context = transcript.context if isinstance(transcript.context, dict) else None
        text = transcript.text.strip() if isinstance(transcript.text, str) else ""
        if not text:
            await send(NotHandled(text="there is nothing to answer", context=context).event())
            return
        request = Request(new_request_id(FRONT_END), "ask", AskArgs(text=text), FRONT_END)
        outcome = await self.commands.run_request(request, session=self.session(context))
        if outcome.result is None:
            log.info("Wyoming question not answered: %s [%s]", outcome.message, outcome.code)
            await send(NotHandled(text=outcome.message, context=context).event())
            return
        await send(Handled(text=str(outcome.result["text"]), context=context).event())

    def session(self, context: dict[str, Any] | None) -> str:
        """The client's named conversation, else this connection's own."""
        named = (context or {}).get("conversation_id")
        if isinstance(named, str) and 0 < len(named) <= MAX_CONVERSATION_ID:
            return f"wyoming-{named}"
        return self.own

    def close(self) -> None:
        self.commands.close_conversation(self.own)
