"""The camera attach policy (pure logic)."""

from __future__ import annotations

import pytest

from pipelines.fusion import AttachPolicy, wants_images


@pytest.mark.parametrize(
    ("policy", "text", "capable", "expected"),
    [
        ("always", "turn on the lights", True, True),
        ("never", "what do you see", True, False),
        ("on_request", "What do you see?", True, True),
        ("on_request", "Take a look at this plant", True, True),
        ("on_request", "turn on the lights", True, False),
        ("on_request", "I see you later", True, False),
        ("always", "what do you see", False, False),
        ("on_request", "what do you see", False, False),
    ],
)
def test_frames_go_with_a_query_only_as_the_policy_says_and_a_model_can_take_them(
    policy: AttachPolicy, text: str, capable: bool, expected: bool
) -> None:
    assert wants_images(policy, text, image_capable=capable) is expected


def test_configured_request_phrases_replace_the_defaults() -> None:
    phrases = ("show me",)
    assert wants_images(
        "on_request", "Show me the door", image_capable=True, request_phrases=phrases
    )
    assert not wants_images(
        "on_request", "what do you see", image_capable=True, request_phrases=phrases
    )
