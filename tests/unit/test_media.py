"""Images and clips are checked, scaled and re-encoded before any model sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.models.media import MediaError, data_uri, prepare_image, sample_video
from tests.conftest import decoded_size, png

MB = 2**20


def test_a_large_png_becomes_a_jpeg_no_larger_than_max_side() -> None:
    out = prepare_image(png(1000, 250), max_side=200, max_bytes=MB)
    assert out.startswith(b"\xff\xd8\xff")
    assert decoded_size(out) == (200, 50)


def test_a_small_image_is_never_scaled_up() -> None:
    assert decoded_size(prepare_image(png(40, 30), max_side=768, max_bytes=MB)) == (40, 30)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GIF89a....", "photo is neither JPEG nor PNG"),
        (png()[:40], "photo could not be decoded (damaged or truncated file)"),
        (png() + b"\0" * MB, f"photo is {len(png()) + MB} bytes, more than the limit of {MB}"),
    ],
)
def test_unusable_images_are_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(MediaError) as caught:
        prepare_image(data, max_side=768, max_bytes=MB, label="photo")
    assert (caught.value.code, str(caught.value)) == ("bad_media", message)


def test_data_uri_names_the_image_type() -> None:
    assert data_uri(png()).startswith("data:image/png;base64,iVBORw0KGgo")
    assert data_uri(b"\xff\xd8\xff\xe0").startswith("data:image/jpeg;base64,/9j/")


def clip(path: Path, frames: int = 30) -> bytes:
    """An MJPG .avi whose frames get brighter, so sampled frames can be told apart."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 15, (160, 120))
    for i in range(frames):
        writer.write(np.full((120, 160, 3), i * 8, dtype=np.uint8))
    writer.release()
    return path.read_bytes()


def brightness(image: bytes) -> float:
    import cv2
    import numpy as np

    frame = cv2.imdecode(np.frombuffer(image, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None
    return float(frame.mean())


def test_a_clip_is_sampled_to_evenly_spread_frames(tmp_path: Path) -> None:
    frames = sample_video(clip(tmp_path / "c.avi"), frames=4, max_side=80, max_bytes=10 * MB)
    assert len(frames) == 4
    assert [decoded_size(f) for f in frames] == [(80, 60)] * 4
    # Frames 0, 10, 19 and 29 of a clip brightening by 8 per frame.
    assert [round(brightness(f) / 8) for f in frames] == [0, 10, 19, 29]


def test_something_that_is_not_a_clip_is_refused() -> None:
    with pytest.raises(MediaError, match="video could not be decoded"):
        sample_video(b"not a video at all", frames=4, max_side=80, max_bytes=MB)
