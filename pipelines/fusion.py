"""Which camera frames go with an utterance: pure logic over the `[camera]` attach policy."""

from __future__ import annotations

from typing import Literal

from daemon.core.config.schema import CameraSettings
from pipelines.wake import normalise

AttachPolicy = Literal["always", "on_request", "never"]

# The shipped phrases that ask about what the camera sees; models.toml may replace them.
DEFAULT_REQUEST_PHRASES: tuple[str, ...] = tuple(CameraSettings().request_phrases)


def wants_images(
    policy: AttachPolicy,
    text: str,
    *,
    image_capable: bool,
    request_phrases: tuple[str, ...] = DEFAULT_REQUEST_PHRASES,
) -> bool:
    """Whether to attach the latest frame to a query with this text.

    Never when no configured model accepts images: the manager would refuse the whole query.
    """
    if not image_capable or policy == "never":
        return False
    if policy == "always":
        return True
    words = f" {normalise(text)} "
    return any(f" {normalise(phrase)} " in words for phrase in request_phrases)
