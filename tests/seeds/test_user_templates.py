"""Chat templates a user writes in models.toml: checked by `validate`, used by llama.cpp.

The llama.cpp tests load the real SmolLM2-135M-Instruct GGUF and answer with it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.core.config.load import check_file, load_config
from daemon.core.config.schema import LlamaCppSettings, MistralRsSettings, TemplateSource
from daemon.core.errors import BackendLoadError
from daemon.models.backends.base import (
    GenerationParams,
    GenerationRequest,
    GenerationStats,
    ModelSpec,
)
from daemon.models.backends.llama_cpp import LlamaCppBackend
from daemon.models.backends.mistral_rs import MistralRsBackend
from daemon.models.templates import Message
from tests.conftest import SMOLLM2_SOURCE

TEKTRA = str(Path(sys.executable).with_name("tektra"))

# ChatML as SmolLM2 was trained on it, plus a line of our own in the system turn: the prompt the
# engine receives shows which template wrote it.
MARKED_CHATML = """\
{% for m in messages %}
<|im_start|>{{ m.role }}
{% if m.role == 'system' %}[custom template]
{% endif %}{{ m.content }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

MODEL = f'[[models]]\nid = "smollm2"\nsource = {SMOLLM2_SOURCE}\ncontext_length = 2048\n'


def test_a_model_names_a_template_from_a_file_next_to_models_toml(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates/marked.jinja").write_text(MARKED_CHATML)
    (tmp_path / "models.toml").write_text(
        MODEL + 'template = "marked"\n[templates.marked]\nfile = "templates/marked.jinja"\n'
    )
    config = load_config(tmp_path / "models.toml")
    assert config.models[0].template == "marked"
    assert config.templates["marked"] == TemplateSource(
        file=str(tmp_path / "templates/marked.jinja")
    )


def test_validate_reports_each_broken_template_with_its_key_path_in_one_pass(
    tmp_path: Path,
) -> None:
    (tmp_path / "models.toml").write_text(
        MODEL
        + 'template = "missing"\n'
        + "[daemon]\nnode_id = 'my tektra'\n"
        + '[templates.syntax]\nsource = "{% for m in messages %}{{ m.content }}"\n'
        + '[templates.undefined]\nsource = "{{ greeting }}{% for m in messages %}{{ m.content }}'
        + '{% endfor %}"\n'
        + "[templates.refuses]\nsource = \"{{ raise_exception('no system turns, please') }}\"\n"
        + '[templates.missing]\nfile = "nowhere.jinja"\n'
        + '[templates.both]\nsource = "x"\nfile = "x.jinja"\n'
        + '[templates.chatml]\nsource = "{% for m in messages %}{{ m.content }}{% endfor %}"\n'
    )
    config, issues = check_file(tmp_path / "models.toml")
    assert config is None
    assert sorted(str(i) for i in issues) == [
        "daemon.node_id: 'my tektra' does not match the pattern ^[A-Za-z0-9_-]+$",
        "templates.both: give exactly one of source, file",
        "templates.chatml: the name of a built-in template; choose another",
        f"templates.missing.file: file not found: {tmp_path / 'nowhere.jinja'}",
        "templates.refuses.source: the template refused the test conversation: "
        "no system turns, please",
        "templates.syntax.source: Jinja syntax error at line 1: Unexpected end of template. "
        "Jinja was looking for the following tags: 'endfor' or 'else'. The innermost block "
        "that needs to be closed is 'for'.",
        "templates.undefined.source: the template uses an undefined variable: "
        "'greeting' is undefined",
    ]


def test_a_model_naming_no_known_template_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text(
        MODEL + 'template = "vicuna"\n[templates.mine]\nsource = "{{ messages }}"\n'
    )
    _config, issues = check_file(tmp_path / "models.toml")
    assert [str(i) for i in issues] == [
        "models[0].template: no template 'vicuna' (built-in or in [templates]: 'auto', "
        "'gemma', 'llama3', 'mistral', 'chatml', 'qwen', 'phi', 'mine')"
    ]


def test_tektra_validate_names_the_broken_template_and_fails(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(MODEL + 'template = "mine"\n[templates.mine]\nfile = "mine.jinja"\n')
    run = subprocess.run(
        [TEKTRA, "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        f"{config}: 1 error(s)",
        f"  templates.mine.file: file not found: {tmp_path / 'mine.jinja'}",
    ]
    (tmp_path / "mine.jinja").write_text(MARKED_CHATML)
    run = subprocess.run(
        [TEKTRA, "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (run.returncode, run.stdout) == (0, f"{config}: OK\n")


def spec(path: Path, template: TemplateSource | None, mmproj: Path | None = None) -> ModelSpec:
    return ModelSpec(
        id="smollm2",
        path=path,
        remote_name=None,
        template="marked",
        context_length=2048,
        capabilities=frozenset({"text"}),
        mmproj=mmproj,
        chat_template=template,
    )


async def test_llama_cpp_answers_through_the_users_template_file(
    smollm2_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "marked.jinja").write_text(MARKED_CHATML)
    engine = LlamaCppBackend(LlamaCppSettings(n_threads=2))
    await engine.load(spec(smollm2_path, TemplateSource(file=str(tmp_path / "marked.jinja"))))
    request = GenerationRequest(
        (Message("system", "You are Tektra."), Message("user", "What is the capital of France?")),
        GenerationParams(max_tokens=24, temperature=0.0, seed=1),
    )
    stats = GenerationStats()
    try:
        with caplog.at_level(logging.DEBUG, logger="daemon.models.backends.llama_cpp"):
            answer = "".join([c async for c in engine.generate("smollm2", request, stats)])
        expected = (
            "<|im_start|>system\n[custom template]\nYou are Tektra.<|im_end|>\n"
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
        assert [r.getMessage() for r in caplog.records] == [f"prompt: {expected!r}"]
        # The engine evaluated exactly that text, and stopped at the template's end of turn.
        assert stats.prompt_tokens == len(engine.tokenize("smollm2", expected))
        assert answer.strip() and "<|im_end|>" not in answer
        assert stats.finish_reason == "stop"
    finally:
        await engine.close()


async def test_llama_cpp_refuses_to_load_with_a_template_file_that_is_gone(
    smollm2_path: Path, tmp_path: Path
) -> None:
    engine = LlamaCppBackend(LlamaCppSettings(n_threads=2))
    gone = TemplateSource(file=str(tmp_path / "gone.jinja"))
    with pytest.raises(BackendLoadError) as raised:
        await engine.load(spec(smollm2_path, gone))
    assert raised.value.message == (
        "llama_cpp: cannot read template 'marked': No such file or directory"
    )
    assert engine.loaded_ids() == []


async def test_mistral_rs_answers_through_the_users_inline_template(smollm2_path: Path) -> None:
    from llama_cpp import Llama

    engine = MistralRsBackend(MistralRsSettings(threads=1))
    await engine.load(spec(smollm2_path, TemplateSource(source=MARKED_CHATML)))
    request = GenerationRequest(
        (Message("system", "You are Tektra."), Message("user", "What is the capital of France?")),
        GenerationParams(max_tokens=8, temperature=0.0),
    )
    stats = GenerationStats()
    try:
        answer = "".join([c async for c in engine.generate("smollm2", request, stats)])
    finally:
        await engine.close()
    expected = (
        "<|im_start|>system\n[custom template]\nYou are Tektra.<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    vocab = Llama(str(smollm2_path), vocab_only=True, verbose=False)
    # mistral.rs counts the prompt it rendered: exactly the tokens of the template's text.
    assert stats.prompt_tokens == len(vocab.tokenize(expected.encode(), False, special=True))
    assert answer.strip()
