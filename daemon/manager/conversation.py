"""A conversation per session, trimmed to a token budget before each prompt."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from daemon.templates import Message

TokenCounter = Callable[[str], int]


def rough_tokens(text: str) -> int:
    """About four characters a token: used only until a model's own tokenizer is loaded."""
    return len(text) // 4 + 1


@dataclass
class Conversation:
    turns: list[tuple[str, str]] = field(default_factory=list)
    """Earlier (user, assistant) exchanges, oldest first."""

    def messages(
        self, system: str | None, user: str, budget_tokens: int, count: TokenCounter
    ) -> tuple[Message, ...]:
        """System turn, as many recent exchanges as fit `budget_tokens`, then the new user turn."""
        kept: list[tuple[str, str]] = []
        spent = 0
        for question, answer in reversed(self.turns):
            cost = count(question) + count(answer)
            if spent + cost > budget_tokens:
                break
            kept.insert(0, (question, answer))
            spent += cost
        out = [Message("system", system)] if system else []
        for question, answer in kept:
            out += [Message("user", question), Message("assistant", answer)]
        out.append(Message("user", user))
        return tuple(out)

    def add(self, user: str, assistant: str, keep: int = 64) -> None:
        self.turns.append((user, assistant))
        del self.turns[:-keep]


@dataclass
class Sessions:
    """Conversations by session id; the least recently used are forgotten beyond `limit`."""

    limit: int = 256
    _by_id: OrderedDict[str, Conversation] = field(default_factory=OrderedDict)

    def get(self, session: str) -> Conversation:
        conversation = self._by_id.pop(session, None) or Conversation()
        self._by_id[session] = conversation
        while len(self._by_id) > self.limit:
            self._by_id.popitem(last=False)
        return conversation

    def forget(self, session: str) -> None:
        self._by_id.pop(session, None)
