"""Conversations by session, bounded, trimmed to a token budget before each prompt.

Each client has its own conversation unless it names a shared one (`session`); a query without a
session has no history at all. The sessions are bounded twice: the least recently used beyond
`limit` are forgotten, and so is any left idle for `idle_s`.

Token counts of earlier exchanges are kept with them (per tokenizer), so a question costs one
count of its own text, not a new count of the whole history.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from daemon.models.templates import Message

TokenCounter = Callable[[str], int]

SESSION_LIMIT = 256
"""Conversations kept at most; the least recently used go first."""
SESSION_IDLE_S = 3600.0
"""A conversation nobody continued for this long is forgotten."""


def rough_tokens(text: str) -> int:
    """About four characters a token: used only until a model's own tokenizer is loaded."""
    return len(text) // 4 + 1


@dataclass
class Conversation:
    turns: list[tuple[str, str]] = field(default_factory=list)
    """Earlier (user, assistant) exchanges, oldest first."""
    last_used: float = 0.0
    _costs: list[dict[str, tuple[int | None, int | None]]] = field(default_factory=list, repr=False)
    """Tokens of each exchange's question and answer, by tokenizer; parallel to `turns`."""

    def messages(
        self,
        system: str | None,
        user: str,
        budget_tokens: int,
        count: TokenCounter,
        tokenizer: str = "",
    ) -> tuple[Message, ...]:
        """System turn, as many recent exchanges as fit `budget_tokens`, then the new user turn.

        `tokenizer` names the counter: an exchange is counted once per tokenizer."""
        kept: list[tuple[str, str]] = []
        spent = 0
        for index in range(len(self.turns) - 1, -1, -1):
            cost = self._cost(index, count, tokenizer)
            if spent + cost > budget_tokens:
                break
            kept.insert(0, self.turns[index])
            spent += cost
        out = [Message("system", system)] if system else []
        for question, answer in kept:
            out += [Message("user", question), Message("assistant", answer)]
        out.append(Message("user", user))
        return tuple(out)

    def _cost(self, index: int, count: TokenCounter, tokenizer: str) -> int:
        self._costs += [{} for _ in range(len(self.turns) - len(self._costs))]
        known = self._costs[index].get(tokenizer, (None, None))
        question, answer = self.turns[index]
        cost = (
            known[0] if known[0] is not None else count(question),
            known[1] if known[1] is not None else count(answer),
        )
        self._costs[index][tokenizer] = cost
        return cost[0] + cost[1]

    def add(
        self, user: str, assistant: str, user_tokens: dict[str, int] | None = None, keep: int = 64
    ) -> None:
        """Add an exchange; `user_tokens` are the question's tokens already counted, by
        tokenizer."""
        self.turns.append((user, assistant))
        self._costs.append({k: (n, None) for k, n in (user_tokens or {}).items()})
        del self.turns[:-keep]
        del self._costs[:-keep]


@dataclass
class Sessions:
    """Conversations by session id, bounded by count (`limit`) and by idle time (`idle_s`)."""

    limit: int = SESSION_LIMIT
    idle_s: float = SESSION_IDLE_S
    clock: Callable[[], float] = time.monotonic
    _by_id: OrderedDict[str, Conversation] = field(default_factory=OrderedDict)

    def get(self, session: str) -> Conversation:
        now = self.clock()
        self._expire(now)
        conversation = self._by_id.pop(session, None) or Conversation()
        conversation.last_used = now
        self._by_id[session] = conversation
        while len(self._by_id) > self.limit:
            self._by_id.popitem(last=False)
        return conversation

    def forget(self, session: str) -> int:
        """Forget a conversation; returns how many exchanges it held."""
        conversation = self._by_id.pop(session, None)
        return len(conversation.turns) if conversation is not None else 0

    def __len__(self) -> int:
        return len(self._by_id)

    def _expire(self, now: float) -> None:
        # Oldest use first: stop at the first conversation still in use.
        while self._by_id:
            oldest = next(iter(self._by_id.values()))
            if now - oldest.last_used < self.idle_s:
                return
            self._by_id.popitem(last=False)
