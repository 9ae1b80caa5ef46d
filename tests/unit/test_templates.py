"""Each family's template renders exactly what that family's reference chat template renders."""

from __future__ import annotations

import pytest

from daemon.models.templates import Message, guess_family, template

CONVERSATION = (
    Message("system", "Be brief."),
    Message("user", "Hi"),
    Message("assistant", "Hello!"),
    Message("user", "Weather?"),
)
NO_SYSTEM = (Message("user", "Hi"),)


def test_chatml() -> None:
    assert template("chatml").render(CONVERSATION) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nWeather?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert template("chatml").render(NO_SYSTEM) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_qwen_adds_its_default_system_turn_only_when_none_is_given() -> None:
    assert template("qwen").render(NO_SYSTEM) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
        "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert template("qwen").render(CONVERSATION) == template("chatml").render(CONVERSATION)


def test_llama3() -> None:
    assert template("llama3").render(CONVERSATION) == (
        "<|begin_of_text|>"
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWeather?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_mistral_puts_the_system_text_before_the_last_user_message() -> None:
    assert template("mistral").render(CONVERSATION) == (
        "<s>[INST] Hi[/INST] Hello!</s>[INST] Be brief.\n\nWeather?[/INST]"
    )
    assert template("mistral").render(NO_SYSTEM) == "<s>[INST] Hi[/INST]"


def test_phi() -> None:
    assert template("phi").render(CONVERSATION) == (
        "<|system|>\nBe brief.<|end|>\n"
        "<|user|>\nHi<|end|>\n"
        "<|assistant|>\nHello!<|end|>\n"
        "<|user|>\nWeather?<|end|>\n"
        "<|assistant|>\n"
    )


def test_gemma_has_no_system_role_so_the_system_text_opens_the_first_user_turn() -> None:
    assert template("gemma").render(CONVERSATION) == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nWeather?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert template("gemma").render(NO_SYSTEM) == (
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    )


@pytest.mark.parametrize(
    ("name", "stop"),
    [
        ("chatml", ("<|im_end|>",)),
        ("qwen", ("<|im_end|>", "<|endoftext|>")),
        ("llama3", ("<|eot_id|>",)),
        ("mistral", ("</s>",)),
        ("phi", ("<|end|>", "<|endoftext|>")),
        ("gemma", ("<end_of_turn>",)),
    ],
)
def test_each_template_stops_at_its_end_of_turn(name: str, stop: tuple[str, ...]) -> None:
    assert template(name).stop == stop


def test_unknown_template_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown template 'vicuna' \\(known: chatml, qwen"):
        template("vicuna")


@pytest.mark.parametrize(
    ("architecture", "name", "family"),
    [
        ("gemma3", "Gemma 3 1b It", "gemma"),
        ("qwen2", "Qwen2.5 1.5B Instruct", "qwen"),
        ("phi3", "Phi 3 Mini", "phi"),
        ("llama", "Mistral 7B Instruct v0.3", "mistral"),
        ("llama", "Meta Llama-3 8B Instruct", "llama3"),
        ("llama", "Smollm2 135M", "chatml"),
    ],
)
def test_family_of_a_file_without_template(architecture: str, name: str, family: str) -> None:
    assert guess_family(architecture, name) == family
