"""The pure decisions of the manager: model choice, backend order, cooldown, memory, history."""

from __future__ import annotations

import pytest

from daemon.core.config.schema import BackendsSettings, ModelEntry, ModelSource
from daemon.core.errors import CapabilityError, MemoryBudgetError, UnknownModel
from daemon.models.manager.conversation import Conversation, Sessions
from daemon.models.manager.health import HealthBook
from daemon.models.manager.memory import MemoryLedger
from daemon.models.manager.selection import backend_order, choose_model
from daemon.models.templates import Message

TEXT = frozenset({"text"})
IMAGE = frozenset({"text", "image"})


def model(
    model_id: str, caps: tuple[str, ...] = ("text",), prefs: tuple[str, ...] = ()
) -> ModelEntry:
    return ModelEntry(
        id=model_id,
        source=ModelSource(ollama=model_id),
        capabilities=list(caps),  # type: ignore[arg-type]
        backend_preferences=list(prefs),
    )


MODELS = [model("small"), model("vision", ("text", "image")), model("other")]


def test_default_model_answers_text() -> None:
    assert choose_model(MODELS, None, "other", TEXT).id == "other"


def test_an_image_moves_the_query_to_the_first_capable_model() -> None:
    assert choose_model(MODELS, None, "small", IMAGE).id == "vision"


def test_no_capable_model_is_a_clear_error() -> None:
    with pytest.raises(CapabilityError, match=r"^no configured model accepts images$"):
        choose_model([model("small")], None, "small", IMAGE)


def test_a_named_model_that_cannot_take_the_input_is_refused() -> None:
    with pytest.raises(CapabilityError, match=r"^model 'small' does not accept audio$"):
        choose_model(MODELS, "small", None, frozenset({"text", "audio"}))


def test_unknown_model_lists_the_configured_ones() -> None:
    with pytest.raises(
        UnknownModel, match=r"no model with id 'big' \(models: small, vision, other\)"
    ):
        choose_model(MODELS, "big", None, TEXT)


def settings(**enabled: bool) -> BackendsSettings:
    tables = {name: {"enabled": on} for name, on in enabled.items()}
    return BackendsSettings.model_validate(tables)


def test_order_follows_preferences_and_skips_what_cannot_run() -> None:
    health = HealthBook(failure_threshold=2, cooldown_s=30)
    m = model("m", prefs=("ollama", "mistral_rs", "llama_cpp", "openai"))
    order, skipped = backend_order(
        m,
        settings(ollama=True, mistral_rs=False, llama_cpp=True, openai=True),
        installed={"ollama", "llama_cpp", "mistral_rs"},
        health=health,
        now=0.0,
    )
    assert order == ["ollama", "llama_cpp"]
    assert skipped == ["mistral_rs: disabled in [backends.mistral_rs]", "openai: not installed"]


def test_model_without_preferences_uses_the_default_order() -> None:
    order, _ = backend_order(
        model("m"),
        settings(ollama=True),
        installed={"ollama", "llama_cpp"},
        health=HealthBook(3, 30),
        now=0.0,
    )
    assert order == ["llama_cpp", "ollama"]


def test_switched_backend_goes_first() -> None:
    order, _ = backend_order(
        model("m"),
        settings(ollama=True),
        installed={"ollama", "llama_cpp"},
        health=HealthBook(3, 30),
        now=0.0,
        forced="ollama",
    )
    assert order == ["ollama", "llama_cpp"]


def test_repeated_failures_rest_a_backend_until_the_cooldown_ends() -> None:
    health = HealthBook(failure_threshold=2, cooldown_s=30)
    assert health.record_failure("ollama", "refused", now=0.0) is False
    assert health.available("ollama", now=1.0)
    assert health.record_failure("ollama", "refused", now=1.0) is True
    assert not health.available("ollama", now=30.9)
    order, skipped = backend_order(
        model("m", prefs=("ollama", "llama_cpp")),
        settings(ollama=True),
        installed={"ollama", "llama_cpp"},
        health=health,
        now=11.0,
    )
    assert order == ["llama_cpp"]
    assert skipped == ["ollama: resting 20 s after repeated failures"]
    assert health.available("ollama", now=31.0)
    # One more failure after the rest is enough to rest again; a success clears the record.
    assert health.record_failure("ollama", "refused", now=31.0) is True
    health.record_success("ollama")
    assert health.available("ollama", now=32.0)
    assert health.record_failure("ollama", "refused", now=32.0) is False


def test_least_recently_used_models_are_unloaded_to_fit() -> None:
    ledger = MemoryLedger(total_mb=1000)
    ledger.add("a", "llama_cpp", 400, now=1.0)
    ledger.add("b", "llama_cpp", 400, now=2.0)
    ledger.get("a", "llama_cpp").last_used = 3.0  # type: ignore[union-attr]
    assert [r.model_id for r in ledger.plan("c", "llama_cpp", 500)] == ["b"]
    assert [r.model_id for r in ledger.plan("c", "llama_cpp", 900)] == ["b", "a"]
    assert ledger.plan("c", "llama_cpp", 200) == []


def test_a_backend_budget_evicts_only_that_backends_models() -> None:
    ledger = MemoryLedger(total_mb=1000, backend_mb={"llama_cpp": 500})
    ledger.add("old-ollama", "ollama", 300, now=1.0)
    ledger.add("llama", "llama_cpp", 400, now=2.0)
    assert [r.model_id for r in ledger.plan("new", "llama_cpp", 300)] == ["llama"]


def test_a_model_that_can_never_fit_is_refused() -> None:
    ledger = MemoryLedger(total_mb=1000, backend_mb={"llama_cpp": 500})
    with pytest.raises(
        MemoryBudgetError, match=r"needs about 600 MB, more than llama_cpp's budget \(500 MB\)"
    ):
        ledger.plan("big", "llama_cpp", 600)
    with pytest.raises(MemoryBudgetError, match=r"more than memory_limits.total_mb \(1000 MB\)"):
        ledger.plan("huge", "ollama", 1200)


def test_busy_models_are_never_unloaded() -> None:
    ledger = MemoryLedger(total_mb=1000)
    ledger.add("a", "llama_cpp", 800, now=1.0)
    ledger.get("a", "llama_cpp").busy = 1  # type: ignore[union-attr]
    with pytest.raises(MemoryBudgetError, match="the models in use leave 200 MB"):
        ledger.plan("b", "llama_cpp", 500)


def words(text: str) -> int:
    return len(text.split())


def test_history_keeps_the_most_recent_exchanges_that_fit_the_budget() -> None:
    conversation = Conversation()
    conversation.add("one two", "three")
    conversation.add("four five", "six seven")
    conversation.add("eight", "nine")
    messages = conversation.messages("sys", "now", budget_tokens=6, count=words)
    assert messages == (
        Message("system", "sys"),
        Message("user", "four five"),
        Message("assistant", "six seven"),
        Message("user", "eight"),
        Message("assistant", "nine"),
        Message("user", "now"),
    )
    assert conversation.messages(None, "now", 0, words) == (Message("user", "now"),)


def test_sessions_are_separate_and_the_least_recently_used_is_forgotten() -> None:
    sessions = Sessions(limit=2)
    sessions.get("kitchen").add("q1", "a1")
    sessions.get("office").add("q2", "a2")
    assert sessions.get("kitchen").turns == [("q1", "a1")]  # kitchen is now the most recent
    sessions.get("garage")  # a third session: office, the least recently used, is forgotten
    assert sessions.get("kitchen").turns == [("q1", "a1")]
    assert sessions.get("office").turns == []


def test_a_conversation_left_alone_for_idle_s_is_forgotten() -> None:
    now = [0.0]
    sessions = Sessions(idle_s=3600.0, clock=lambda: now[0])
    sessions.get("kitchen").add("q1", "a1")
    now[0] = 3000.0
    sessions.get("office").add("q2", "a2")
    now[0] = 3599.0
    assert sessions.get("kitchen").turns == [("q1", "a1")]  # used again: its hour starts over
    now[0] = 6700.0  # office idle for 3700 s, kitchen for 3101 s
    assert len(sessions) == 2
    sessions.get("garage")
    assert len(sessions) == 2  # office went; kitchen and the new garage remain
    assert sessions.forget("office") == 0
    assert sessions.forget("kitchen") == 1
