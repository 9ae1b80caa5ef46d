"""Chat templates of the model families, each rendered exactly as the family's reference template.

Used when a model file carries no chat template of its own, or when models.toml names a family.
The references are the chat templates published with each family's instruct models:
ChatML (SmolLM2, many fine-tunes), Qwen2.5 (ChatML plus a default system turn), Llama 3,
Mistral-7B-Instruct-v0.3, Phi-3, and Gemma 3 (no system role: the system text opens the first
user turn).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    render: Callable[[Sequence[Message]], str]
    """Prompt for the conversation, ending where the assistant's next turn begins."""
    stop: tuple[str, ...]
    """Text that ends the assistant's turn."""
    bos: str = ""
    """Beginning-of-sequence text the template writes itself (the tokenizer must not add it)."""


def _split_system(messages: Sequence[Message]) -> tuple[str | None, list[Message]]:
    if messages and messages[0].role == "system":
        return messages[0].content, list(messages[1:])
    return None, list(messages)


def _chatml(messages: Sequence[Message], default_system: str | None = None) -> str:
    system, turns = _split_system(messages)
    system = system if system is not None else default_system
    parts = [] if system is None else [f"<|im_start|>system\n{system}<|im_end|>\n"]
    parts += [f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in turns]
    return "".join(parts) + "<|im_start|>assistant\n"


QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def _qwen(messages: Sequence[Message]) -> str:
    return _chatml(messages, QWEN_DEFAULT_SYSTEM)


def _llama3(messages: Sequence[Message]) -> str:
    parts = ["<|begin_of_text|>"]
    parts += [
        f"<|start_header_id|>{m.role}<|end_header_id|>\n\n{m.content.strip()}<|eot_id|>"
        for m in messages
    ]
    return "".join(parts) + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _mistral(messages: Sequence[Message]) -> str:
    # v0.3: the system text goes before the *last* user message; assistant turns end with </s>.
    system, turns = _split_system(messages)
    last_user = max((i for i, m in enumerate(turns) if m.role == "user"), default=-1)
    parts = ["<s>"]
    for i, m in enumerate(turns):
        if m.role == "user":
            text = (
                f"{system}\n\n{m.content}" if system is not None and i == last_user else m.content
            )
            parts.append(f"[INST] {text}[/INST]")
        else:
            parts.append(f" {m.content}</s>")
    return "".join(parts)


def _phi(messages: Sequence[Message]) -> str:
    parts = [f"<|{m.role}|>\n{m.content}<|end|>\n" for m in messages]
    return "".join(parts) + "<|assistant|>\n"


def _gemma(messages: Sequence[Message]) -> str:
    system, turns = _split_system(messages)
    prefix = f"{system}\n\n" if system is not None else ""
    parts = ["<bos>"]
    for i, m in enumerate(turns):
        role = "model" if m.role == "assistant" else m.role
        lead = prefix if i == 0 else ""
        parts.append(f"<start_of_turn>{role}\n{lead}{m.content.strip()}<end_of_turn>\n")
    return "".join(parts) + "<start_of_turn>model\n"


TEMPLATES: dict[str, ChatTemplate] = {
    t.name: t
    for t in (
        ChatTemplate("chatml", _chatml, ("<|im_end|>",)),
        ChatTemplate("qwen", _qwen, ("<|im_end|>", "<|endoftext|>")),
        ChatTemplate("llama3", _llama3, ("<|eot_id|>",), bos="<|begin_of_text|>"),
        ChatTemplate("mistral", _mistral, ("</s>",), bos="<s>"),
        ChatTemplate("phi", _phi, ("<|end|>", "<|endoftext|>")),
        ChatTemplate("gemma", _gemma, ("<end_of_turn>",), bos="<bos>"),
    )
}


def template(name: str) -> ChatTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise KeyError(f"unknown template '{name}' (known: {', '.join(TEMPLATES)})") from None


def guess_family(architecture: str, model_name: str = "") -> str:
    """Family of a model file that carries no template, from its GGUF architecture and name."""
    arch, name = architecture.lower(), model_name.lower()
    for family, hints in (
        ("gemma", ("gemma",)),
        ("qwen", ("qwen",)),
        ("phi", ("phi",)),
        ("mistral", ("mistral", "mixtral")),
    ):
        if any(h in arch or h in name for h in hints):
            return family
    if arch == "llama" and "llama-3" in name.replace(" ", "-"):
        return "llama3"
    return "chatml"
