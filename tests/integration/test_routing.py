"""A/B routing with real engines: llama.cpp and mistral.rs both run SmolLM2, `[[routing]]` shares
its queries between them, and the manager records how each backend did."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from daemon.core.config.schema import RouteSettings, TektraConfig
from daemon.models.backends.registry import BackendRegistry
from daemon.models.manager.manager import Query, UnifiedModelManager
from daemon.models.manager.routing import Router, stats_table
from tests.conftest import SMOLLM2_SOURCE

WriteConfig = Callable[[str], tuple[TektraConfig, Path]]
SHORT = '[daemon]\npreset = "short"\n[presets.short]\ntemperature = 0.0\nseed = 3\nmax_tokens = 6\n'
SMOLLM2 = f'[[models]]\nid = "smollm2"\nsource = {SMOLLM2_SOURCE}\ncontext_length = 1024\n'
QUESTIONS = ["Say hi.", "Name a colour.", "Count to three.", "Name a fruit.", "Say bye.", "2+2?"]


async def ask_all(manager: UnifiedModelManager, questions: list[str]) -> list[str]:
    backends = []
    try:
        for question in questions:
            answer = manager.answer(Query(question))
            async for _ in answer:
                pass
            assert answer.text.strip(), question
            backends.append(answer.backend or "")
    finally:
        await manager.close()
    return backends


def test_shares_alternate_deterministically_by_weight() -> None:
    router = Router([RouteSettings(model="m", backends={"a": 0.75, "b": 0.25})])
    picks = [router.arrange("m", ["a", "b"])[0] for _ in range(8)]
    assert picks == ["a", "a", "b", "a", "a", "a", "b", "a"]
    assert router.arrange("other", ["b", "a"]) == ["b", "a"]


async def test_half_the_queries_go_to_llama_cpp_and_half_to_mistral_rs(
    write_config: WriteConfig,
) -> None:
    config, _ = write_config(
        SHORT
        + "[backends.mistral_rs]\nenabled = true\nthreads = 1\n"
        + SMOLLM2
        + '[[routing]]\nmodel = "smollm2"\nbackends = { llama_cpp = 0.5, mistral_rs = 0.5 }\n'
    )
    manager = UnifiedModelManager(config)
    backends = await ask_all(manager, QUESTIONS)
    assert backends == ["llama_cpp", "mistral_rs"] * 3
    rows = manager.router.stats()
    assert [(r["backend"], r["share"], r["answers"], r["failures"]) for r in rows] == [
        ("llama_cpp", 0.5, 3, 0),
        ("mistral_rs", 0.5, 3, 0),
    ]
    for row in rows:
        assert row["model"] == "smollm2"
        assert row["first_token_ms_p50"] > 0, row
        assert row["first_token_ms_mean"] > 0, row
        assert row["tokens_per_s"] > 0, row
    table = stats_table(rows).splitlines()
    assert re.split(" {2,}", table[0]) == [
        "MODEL",
        "BACKEND",
        "SHARE",
        "ANSWERS",
        "FAILURES",
        "FIRST TOKEN P50",
        "FIRST TOKEN MEAN",
        "TOK/S",
    ]
    assert [line.split()[:5] for line in table[1:]] == [
        ["smollm2", "llama_cpp", "0.5", "3", "0"],
        ["smollm2", "mistral_rs", "0.5", "3", "0"],
    ]


async def test_a_failing_backend_counts_a_failure_and_the_other_answers(
    write_config: WriteConfig, plugin: BackendRegistry
) -> None:
    config, _ = write_config(
        SHORT
        + "[backends.flaky]\nfail_load = true\n"
        + SMOLLM2
        + '[[routing]]\nmodel = "smollm2"\nbackends = { flaky = 0.5, llama_cpp = 0.5 }\n'
    )
    manager = UnifiedModelManager(config, registry=plugin)
    backends = await ask_all(manager, QUESTIONS[:4])
    assert backends == ["llama_cpp"] * 4
    rows = {r["backend"]: r for r in manager.router.stats()}
    assert (rows["flaky"]["answers"], rows["flaky"]["failures"]) == (0, 2)
    assert rows["flaky"]["first_token_ms_p50"] is None
    assert (rows["llama_cpp"]["answers"], rows["llama_cpp"]["failures"]) == (4, 0)
    assert rows["llama_cpp"]["first_token_ms_p50"] > 0


async def test_a_reload_keeps_the_counts_while_the_routes_stay_the_same(
    write_config: WriteConfig, plugin: BackendRegistry
) -> None:
    text = (
        '[[models]]\nid = "echo"\nsource = { path = "models.toml" }\n'
        '[[routing]]\nmodel = "echo"\nbackends = { recorder = 0.5, flaky = 0.5 }\n'
    )
    config, _ = write_config(text)
    old = UnifiedModelManager(config, registry=plugin)
    assert await ask_all(old, ["one", "two"]) == ["recorder", "flaky"]
    same = UnifiedModelManager(write_config(text)[0], registry=plugin)
    same.adopt_choices(old)
    assert [r["answers"] for r in same.router.stats()] == [1, 1]
    changed = UnifiedModelManager(
        write_config(text.replace("0.5", "0.25", 1).replace("flaky = 0.5", "flaky = 0.75"))[0],
        registry=plugin,
    )
    changed.adopt_choices(old)
    assert [(r["share"], r["answers"]) for r in changed.router.stats()] == [(0.25, 0), (0.75, 0)]


def test_stats_with_no_routing_say_how_to_start_one() -> None:
    assert stats_table([]) == (
        "no routing: add a [[routing]] table to models.toml to compare backends"
    )
