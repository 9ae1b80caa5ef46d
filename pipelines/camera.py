"""The camera through OpenCV: a device index, a video file or a stream URL, read in the background.

A dedicated thread reads frames (OpenCV's `read` blocks) and keeps the latest with its time, plus
a short ring of recent ones for video. Frames stay raw BGR until a query needs them: JPEG
encoding and resizing cost far more than reading, so they happen only per query. A stream that
breaks or a device that vanishes is reported lost and reopened with backoff; a file loops.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from pipelines.events import DeviceState, DeviceStateName
from pipelines.microphone import backoff_delays

log = logging.getLogger(__name__)

Frame = npt.NDArray[np.uint8]
RING_SIZE = 8
RING_EVERY_S = 0.25  # the ring keeps ~2 s of video at 4 frames per second
TIMEOUT_MS = 3000  # open/read timeouts for streams, so a dead server cannot hang the reader


def parse_source(source: str) -> int | str:
    """`auto` → device 0; digits → a device index; anything else → a path or URL."""
    if source == "auto":
        return 0
    return int(source) if source.isdigit() else source


def encode_jpeg(frame: Frame, max_side: int, quality: int = 85) -> bytes:
    """The frame as JPEG, scaled down (never up) so its longer side is at most `max_side`."""
    height, width = frame.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(data.tobytes())


class CameraReader:
    """Reads `source` in a background thread while `run()` is awaited."""

    def __init__(self, source: str, on_state: Callable[[DeviceState], None]) -> None:
        self.source = source
        self._target = parse_source(source)
        self._is_file = isinstance(self._target, str) and "://" not in self._target
        self._on_state = on_state
        self._lock = threading.Lock()
        self._latest: tuple[float, Frame] | None = None
        self._ring: deque[tuple[float, Frame]] = deque(maxlen=RING_SIZE)
        self._stop = threading.Event()
        self.state: DeviceStateName = "closed"
        self.frames_read = 0

    async def run(self) -> None:
        """Read until cancelled; the thread is stopped and joined before this returns."""
        loop = asyncio.get_running_loop()
        self._stop.clear()
        thread = threading.Thread(
            target=self._read_forever, args=(loop,), name=f"tektra-camera {self.source}"
        )
        thread.start()
        try:
            await asyncio.to_thread(thread.join)
        finally:
            self._stop.set()
            # Joining waits at most one read timeout; it runs in a thread so the loop goes on.
            await asyncio.to_thread(thread.join)

    def latest(self, max_age_s: float | None = None) -> Frame | None:
        """The newest frame, or None if there is none (or it is older than `max_age_s`)."""
        with self._lock:
            if self._latest is None:
                return None
            at, frame = self._latest
        if max_age_s is not None and time.monotonic() - at > max_age_s:
            return None
        return frame

    def recent(self) -> list[Frame]:
        """The short ring of recent frames, oldest first (for video-capable models)."""
        with self._lock:
            return [frame for _, frame in self._ring]

    # --- the reader thread -----------------------------------------------------------------

    def _read_forever(self, loop: asyncio.AbstractEventLoop) -> None:
        delays = backoff_delays()
        attempt = 0
        while not self._stop.is_set():
            if attempt:
                self._report(loop, "reopening", f"attempt {attempt + 1}")
            try:
                capture = self._open()
            except cv2.error as exc:
                log.warning("camera %s: %s", self.source, exc)
                capture = cv2.VideoCapture()
            if not capture.isOpened():
                capture.release()
                self._report(loop, "lost", "cannot open")
                self._stop.wait(delays[min(attempt, len(delays) - 1)])
                attempt += 1
                continue
            if attempt or self.state != "open":
                width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
                height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
                self._report(loop, "open", f"{width}x{height}")
            attempt = 0
            try:
                read = self._pump(capture)
            except cv2.error as exc:  # a decoder error mid-stream is a lost stream, not a crash
                log.warning("camera %s: %s", self.source, exc)
                read = 0
            capture.release()
            if self._stop.is_set():
                break
            if self._is_file and read > 0:
                continue  # end of the file: play it again from the start
            self._report(loop, "lost", "no frame could be read")
            self._stop.wait(delays[0])
            attempt = 1
        self._report(loop, "closed", "stopped")

    def _open(self) -> Any:
        if isinstance(self._target, int):
            return cv2.VideoCapture(self._target)
        params = [
            *(cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, TIMEOUT_MS),
            *(cv2.CAP_PROP_READ_TIMEOUT_MSEC, TIMEOUT_MS),
        ]
        return cv2.VideoCapture(self._target, cv2.CAP_FFMPEG, params)

    def _pump(self, capture: Any) -> int:
        """Read frames until the source fails or we are stopped; returns how many were read."""
        # A file would otherwise be read as fast as the disk allows: pace it at its own rate.
        fps = capture.get(cv2.CAP_PROP_FPS) if self._is_file else 0.0
        pause = 1.0 / fps if fps and fps > 0 else 0.0
        count = 0
        last_ring = 0.0
        while not self._stop.is_set():
            ok, frame = capture.read()
            if not ok or frame is None:
                return count
            now = time.monotonic()
            with self._lock:
                self._latest = (now, frame)
                if now - last_ring >= RING_EVERY_S:
                    self._ring.append((now, frame))
                    last_ring = now
            count += 1
            self.frames_read += 1
            if pause:
                self._stop.wait(pause)
        return count

    def _report(self, loop: asyncio.AbstractEventLoop, state: DeviceStateName, detail: str) -> None:
        if state == self.state and state != "reopening":
            return
        self.state = state
        log.info("camera %s: %s (%s)", self.source, state, detail)
        event = DeviceState("camera", self.source, state, detail)
        try:
            loop.call_soon_threadsafe(self._on_state, event)
        except RuntimeError:  # the loop closed under us at shutdown: nobody is left to tell
            log.debug("camera state %s not delivered: event loop closed", state)
