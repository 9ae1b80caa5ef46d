"""Images and clips coming in with a query: checked, decoded, resized, re-encoded.

Whatever a client sends (a phone photo, a camera frame, a short clip) reaches a model as a JPEG no
larger than `[media].max_side`, so no engine ever sees an undecodable or oversized payload. OpenCV
(headless) does the decoding; it is imported only when media actually arrives.
"""

from __future__ import annotations

import base64
import os
import tempfile
from typing import Any

from daemon.core.errors import TektraError

JPEG, PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


class MediaError(TektraError):
    """An image or clip that cannot be used; the message says which and why."""

    code = "bad_media"


def image_kind(data: bytes) -> str | None:
    if data.startswith(JPEG):
        return "jpeg"
    if data.startswith(PNG):
        return "png"
    return None


def data_uri(image: bytes) -> str:
    """`data:image/…;base64,…`, the form OpenAI-style servers and llama.cpp take images in."""
    mime = "image/png" if image_kind(image) == "png" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def prepare_image(data: bytes, max_side: int, max_bytes: int, label: str = "image") -> bytes:
    """A JPEG of the image, its longer side at most `max_side`; MediaError if it is not usable."""
    if len(data) > max_bytes:
        raise MediaError(f"{label} is {len(data)} bytes, more than the limit of {max_bytes}")
    if image_kind(data) is None:
        raise MediaError(f"{label} is neither JPEG nor PNG")
    import cv2
    import numpy as np

    frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise MediaError(f"{label} could not be decoded (damaged or truncated file)")
    return encode_frame(frame, max_side)


def encode_frame(frame: Any, max_side: int) -> bytes:
    """JPEG of a BGR frame, scaled down (never up) to `max_side`."""
    import cv2

    height, width = frame.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise MediaError("a frame could not be encoded as JPEG")
    return bytes(encoded.tobytes())


def sample_video(data: bytes, frames: int, max_side: int, max_bytes: int) -> tuple[bytes, ...]:
    """`frames` JPEGs spread evenly over a short clip (any container OpenCV's FFmpeg reads)."""
    if len(data) > max_bytes:
        raise MediaError(f"video is {len(data)} bytes, more than the limit of {max_bytes}")
    import cv2

    # OpenCV reads containers from files only; the temp file lives just for the decode.
    fd, path = tempfile.mkstemp(suffix=".video")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        capture = cv2.VideoCapture(path)
        try:
            total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            if not capture.isOpened() or total <= 0:
                raise MediaError("video could not be decoded (unknown or damaged container)")
            picks = sorted({round(i * (total - 1) / max(frames - 1, 1)) for i in range(frames)})
            out = []
            for index in picks:
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
                ok, frame = capture.read()
                if ok:
                    out.append(encode_frame(frame, max_side))
        finally:
            capture.release()
    finally:
        os.unlink(path)
    if not out:
        raise MediaError("video has no readable frames")
    return tuple(out)
