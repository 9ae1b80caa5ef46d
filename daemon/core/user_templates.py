"""Chat templates a user writes in models.toml (`[templates.NAME]`), in the Jinja format Hugging
Face and llama.cpp read: `messages`, `add_generation_prompt`, `bos_token`, `eos_token`,
`raise_exception` and the rest of what llama.cpp's chat formatter passes.

The engine renders them with llama-cpp-python's own formatter (see
`daemon.models.backends.llama_cpp`); this module reads them and renders a test conversation with an
environment configured like that formatter, so `tektra validate` finds a template that would fail at
the first question: a syntax error, an undefined variable that reaches the output, a
`raise_exception`, a missing file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from daemon.core.config.schema import TemplateSource

TEST_CONVERSATION: tuple[dict[str, str], ...] = (
    {"role": "system", "content": "You are Tektra."},
    {"role": "user", "content": "What time is it?"},
    {"role": "assistant", "content": "Nine o'clock."},
    {"role": "user", "content": "Thanks."},
)
"""What `validate` renders each template with: the turns the daemon sends (a system prompt, then
alternating user and assistant turns, ending with a user's)."""


def source_of(template: TemplateSource) -> str:
    """The template text, read from its file where it has one; OSError when it cannot be read."""
    if template.source is not None:
        return template.source
    assert template.file is not None  # the schema asks for exactly one of source and file
    return Path(template.file).read_text(encoding="utf-8")


def problem(template: TemplateSource) -> tuple[str, str] | None:
    """(key, what is wrong) when the template cannot render the test conversation, else None.

    The key is `source` or `file`, whichever holds the template."""
    key = "source" if template.source is not None else "file"
    try:
        text = source_of(template)
    except FileNotFoundError:
        return key, f"file not found: {template.file}"
    except UnicodeDecodeError as exc:
        return key, f"{template.file} is not UTF-8 text: {exc.reason}"
    except OSError as exc:
        return key, f"cannot read {template.file}: {exc.strerror or exc}"
    found = render_problem(text)
    return None if found is None else (key, found)


def render_problem(text: str) -> str | None:
    """Why `text` fails to render the test conversation, in words; None when it renders."""
    import jinja2

    try:
        rendered = _environment().from_string(text).render(_context())
    except jinja2.TemplateSyntaxError as exc:
        return f"Jinja syntax error at line {exc.lineno}: {exc.message}"
    except jinja2.UndefinedError as exc:
        return f"the template uses an undefined variable: {exc.message}"
    except _Raised as exc:
        return f"the template refused the test conversation: {exc}"
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError) as exc:
        return f"the template fails on the test conversation: {type(exc).__name__}: {exc}"
    if "What time is it?" not in rendered:
        return "the rendered prompt does not contain the conversation (is `messages` used?)"
    return None


class _Raised(Exception):
    """A template's own `raise_exception(...)`."""


def _raise(message: str) -> None:
    raise _Raised(message)


def _context() -> dict[str, Any]:
    # The variables llama.cpp's Jinja2ChatFormatter passes, with placeholder special tokens.
    return {
        "messages": [dict(m) for m in TEST_CONVERSATION],
        "add_generation_prompt": True,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "raise_exception": _raise,
        "functions": None,
        "function_call": None,
        "tools": None,
        "tool_choice": None,
        "strftime_now": lambda fmt: "2026-01-01",
    }


def _environment() -> Any:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Strict(jinja2.StrictUndefined):
        # An unknown name in a test (`{% if tools %}`) is false, as in the engine; one whose
        # value reaches the prompt or is iterated is an error, where the engine would silently
        # write nothing.
        def __bool__(self) -> bool:  # type: ignore[override]  # strict's raises
            return False

    class Generation(jinja2.ext.Extension):
        # Hugging Face's `{% generation %}` marks the assistant's text; it renders as its body.
        tags = {"generation"}  # noqa: RUF012  # jinja declares it an instance attribute

        def parse(self, parser: Any) -> Any:
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    env = ImmutableSandboxedEnvironment(
        loader=jinja2.BaseLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=Strict,
        extensions=[Generation, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
    return env
