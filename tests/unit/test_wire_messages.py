"""The OpenAI chat shape that llama.cpp, mistral.rs and OpenAI-compatible servers are sent."""

from __future__ import annotations

import base64

from daemon.models.backends.base import GenerationParams, GenerationRequest, openai_messages
from daemon.models.templates import Message

TURNS = (Message("system", "Be brief."), Message("user", "What is this?"))


def test_text_only_turns_are_plain_strings() -> None:
    request = GenerationRequest(TURNS, GenerationParams())
    assert openai_messages(request) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is this?"},
    ]


def test_images_then_the_question_make_up_the_last_user_turn() -> None:
    request = GenerationRequest(
        TURNS, GenerationParams(), images=(b"\xff\xd8\xff1", b"\xff\xd8\xff2")
    )
    last = openai_messages(request)[-1]
    assert last == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/MQ=="}},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/Mg=="}},
            {"type": "text", "text": "What is this?"},
        ],
    }


def test_the_utterance_goes_as_input_audio_only_where_the_engine_takes_it() -> None:
    wav = b"RIFF\x24\x00\x00\x00WAVE"
    request = GenerationRequest(TURNS, GenerationParams(), audio=wav)
    assert openai_messages(request)[-1] == {"role": "user", "content": "What is this?"}
    assert openai_messages(request, with_audio=True)[-1]["content"] == [
        {
            "type": "input_audio",
            "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"},
        },
        {"type": "text", "text": "What is this?"},
    ]
