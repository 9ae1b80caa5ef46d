"""One error never hides another: every problem of a file is reported in one pass, each at its key.

Each case pairs a key that fails the schema with a rule that spans keys (a name that must refer to
something, a budget that must fit) in the same table or the same entry: pydantic rejects the whole
table on the first failure, so the second problem used to stay hidden until the first was fixed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.core.config.load import check_text

KNOWN = "known: anthropic, llama_cpp, mistral_rs, ollama, openai"
MODEL = '[[models]]\nid = "m"\nsource = { ollama = "m:1" }\n'

CASES: dict[str, tuple[str, list[str]]] = {
    "model_unknown_key_and_unknown_backend": (
        '[[models]]\nid = "m"\nsource = { ollama = "m:1" }\ncolour = "red"\n'
        'backend_preferences = ["lama_cpp"]\n',
        [
            "models[0].colour: unknown key",
            f"models[0].backend_preferences[0]: unknown backend 'lama_cpp' ({KNOWN}); "
            "did you mean 'llama_cpp'?",
        ],
    ),
    "bad_node_id_and_unknown_preset": (
        '[daemon]\nnode_id = "my tektra"\npreset = "turbo"\n' + MODEL,
        [
            "daemon.node_id: 'my tektra' does not match the pattern ^[A-Za-z0-9_-]+$",
            "daemon.preset: no preset 'turbo' (presets: balanced, creative, fast, quality)",
        ],
    ),
    "max_clients_not_a_number_and_default_model_missing": (
        '[daemon]\nmax_clients = "many"\ndefault_model = "gemma"\n' + MODEL,
        [
            "daemon.max_clients: expected an integer, got string 'many'",
            "daemon.default_model: no model with id 'gemma' (models: m)",
        ],
    ),
    "failure_threshold_zero_and_unknown_default_backend": (
        '[backends]\nfailure_threshold = 0\ndefault = ["llama_cpp", "vllm"]\n' + MODEL,
        [
            "backends.failure_threshold: must be at least 1 (got 0)",
            f"backends.default[1]: unknown backend 'vllm' ({KNOWN}); did you mean 'ollama'?",
        ],
    ),
    "memory_limits_unknown_key_and_budget_over_total": (
        "[memory_limits]\ntotal_mb = 4096\ncolour = 1\nbackends = { llama_cpp = 8192 }\n" + MODEL,
        [
            "memory_limits.colour: unknown key",
            "memory_limits.backends.llama_cpp: 8192 MB exceeds memory_limits.total_mb (4096 MB)",
        ],
    ),
    "bad_budget_and_another_budget_over_total": (
        '[memory_limits]\nbackends = { llama_cpp = "2 GB", ollama = 9000 }\n' + MODEL,
        [
            "memory_limits.backends.llama_cpp: expected an integer, got string '2 GB'",
            "memory_limits.backends.ollama: 9000 MB exceeds memory_limits.total_mb (4096 MB)",
        ],
    ),
    "bad_source_and_unknown_backend_and_model_too_big": (
        '[[models]]\nid = "m"\nsource = { ollama = "m:1", path = "m.gguf" }\n'
        'backend_preferences = ["vllm"]\nmemory_mb = 99999\n',
        [
            "models[0].source: give exactly one of path, package, hf, ollama, served "
            "(got path, ollama)",
            f"models[0].backend_preferences[0]: unknown backend 'vllm' ({KNOWN}); "
            "did you mean 'ollama'?",
            "models[0].memory_mb: 99999 MB can never fit in memory_limits.total_mb (4096 MB)",
        ],
    ),
    "bad_vad_value_and_missing_replay_file": (
        '[audio]\nsource = "file:/nonexistent.wav"\n[audio.vad]\nthreshold = 2.0\n' + MODEL,
        [
            "audio.vad.threshold: must be less than 1.0 (got 2.0)",
            "audio.source: file not found: /nonexistent.wav",
        ],
    ),
    "bad_preset_value_and_preset_still_known": (
        '[daemon]\npreset = "terse"\n[presets.terse]\nmax_tokens = 0\n' + MODEL,
        ["presets.terse.max_tokens: must be at least 1 (got 0)"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_problem_is_reported_in_one_pass(name: str, tmp_path: Path) -> None:
    text, expected = CASES[name]
    config, issues = check_text(text, tmp_path)
    assert config is None
    assert [str(i) for i in issues] == expected


def test_a_rule_never_judges_the_default_standing_in_for_a_failed_key(tmp_path: Path) -> None:
    # total_mb failed, so its default (4096) must not be compared with the budgets.
    text = '[memory_limits]\ntotal_mb = "lots"\nbackends = { llama_cpp = 8192 }\n' + MODEL
    _, issues = check_text(text, tmp_path)
    assert [str(i) for i in issues] == [
        "memory_limits.total_mb: expected an integer, got string 'lots'"
    ]
