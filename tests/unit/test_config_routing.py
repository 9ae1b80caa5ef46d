"""`[[routing]]` is checked with the rest of models.toml, in the same one pass: every problem of
a route is reported at its key, next to problems elsewhere in the file."""

from __future__ import annotations

from pathlib import Path

from daemon.core.config.load import check_text
from tests.conftest import SMOLLM2_SOURCE

KNOWN = "known: anthropic, llama_cpp, mistral_rs, ollama, openai"
MODELS = (
    f'[[models]]\nid = "smollm2"\nsource = {SMOLLM2_SOURCE}\n'
    '[[models]]\nid = "remote"\nsource = { ollama = "smollm2:135m" }\n'
)


def issues(text: str) -> list[str]:
    config, found = check_text(MODELS + text, Path.cwd())
    assert (config is None) == bool(found)
    return [str(issue) for issue in found]


def test_a_route_of_two_engines_with_shares_summing_to_1_is_valid() -> None:
    config, found = check_text(
        MODELS
        + '[[routing]]\nmodel = "smollm2"\nbackends = { llama_cpp = 0.5, mistral_rs = 0.5 }\n',
        Path.cwd(),
    )
    assert found == []
    assert config is not None
    assert [(r.model, r.backends) for r in config.routing] == [
        ("smollm2", {"llama_cpp": 0.5, "mistral_rs": 0.5})
    ]


def test_every_problem_of_every_route_is_reported_in_one_pass() -> None:
    found = issues(
        '[daemon]\npreset = "turbo"\n'
        '[[routing]]\nmodel = "gemma"\nbackends = { llama_cpp = 0.5, mistral_rs = 0.5 }\n'
        '[[routing]]\nmodel = "smollm2"\nbackends = { llama_cpp = 0.7, mistral_rs = 0.2 }\n'
        '[[routing]]\nmodel = "smollm2"\nbackends = { lama_cpp = 0.5, ollama = 0.5 }\n'
        '[[routing]]\nmodel = "remote"\nbackends = { llama_cpp = 1.0 }\n'
        '[[routing]]\nmodel = "remote"\nbackends = { ollama = 1.5, openai = -0.5 }\n'
    )
    assert found == [
        "daemon.preset: no preset 'turbo' (presets: balanced, creative, fast, quality)",
        "routing[0].model: no model with id 'gemma' (models: smollm2, remote)",
        "routing[1].backends: the shares sum to 0.9; they must sum to 1",
        "routing[2].model: model 'smollm2' is already routed by routing[1]",
        f"routing[2].backends.lama_cpp: unknown backend 'lama_cpp' ({KNOWN}); "
        "did you mean 'llama_cpp'?",
        "routing[2].backends.ollama: ollama asks a server for the model; the source of model "
        "'smollm2' is `package` (local weights)",
        "routing[3].backends: name at least two backends to share queries",
        "routing[3].backends.llama_cpp: llama_cpp runs local weights; the source of model "
        "'remote' is `ollama`",
        "routing[4].model: model 'remote' is already routed by routing[3]",
        "routing[4].backends.ollama: a share is above 0 and at most 1 (got 1.5)",
        "routing[4].backends.openai: a share is above 0 and at most 1 (got -0.5)",
    ]


def test_a_route_that_is_not_a_table_of_shares_says_so_at_its_key() -> None:
    assert issues('[[routing]]\nmodel = "smollm2"\nbackends = ["llama_cpp", "mistral_rs"]\n') == [
        "routing[0].backends: expected a table, got array ['llama_cpp', 'mistral_rs']"
    ]
