"""The camera reader on real video: fixture files and an ffmpeg MJPEG stream on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from pipelines.camera import CameraReader, encode_jpeg
from pipelines.events import DeviceState
from tests.pipelines.conftest import (
    VIDEO,
    CameraServer,
    colour_of,
    decode_jpeg,
    free_port,
    wait_for,
)

pytestmark = pytest.mark.integration


async def with_reader(
    source: str, body: Callable[[CameraReader, list[DeviceState]], Awaitable[None]]
) -> list[DeviceState]:
    states: list[DeviceState] = []
    reader = CameraReader(source, states.append)
    task = asyncio.create_task(reader.run(), name="test-camera")
    try:
        await body(reader, states)
        assert not task.done(), "the reader stopped by itself"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert states[-1].state == "closed"
    return states


async def test_a_video_file_is_read_at_its_own_pace_and_loops() -> None:
    async def body(reader: CameraReader, states: list[DeviceState]) -> None:
        await wait_for(lambda: reader.latest() is not None, 10, "a frame")
        frame = reader.latest()
        assert frame is not None and frame.shape == (120, 160, 3)
        assert colour_of(frame) == "red"
        # The file holds 20 frames at 10 fps: more than 20 read means it started over.
        await wait_for(lambda: reader.frames_read > 25, 10, "the file to loop")

    states = await with_reader(str(VIDEO / "red.avi"), body)
    assert [s.state for s in states] == ["open", "closed"]  # looping is not losing the camera


async def test_the_stream_reader_recovers_when_the_server_stops_and_comes_back(
    camera_server: CameraServer,
) -> None:
    camera_server.start("red")

    async def body(reader: CameraReader, states: list[DeviceState]) -> None:
        await wait_for(lambda: reader.latest() is not None, 20, "a frame from the stream")
        latest = reader.latest()
        assert latest is not None and colour_of(latest) == "red"
        seen = len(states)  # the reader may have met the server before it listened: a loss too
        camera_server.stop()
        await wait_for(lambda: any(s.state == "lost" for s in states[seen:]), 20, "the loss")
        await asyncio.sleep(1.0)
        assert reader.latest(max_age_s=0.5) is None  # nothing fresh while the camera is away
        camera_server.start("blue")
        await wait_for(lambda: states[-1].state == "open", 30, "the stream to reopen")

        def blue_again() -> bool:
            frame = reader.latest(max_age_s=1.0)
            return frame is not None and colour_of(frame) == "blue"

        await wait_for(blue_again, 20, "a frame from the restarted server")

    states = await with_reader(camera_server.url, body)
    names = [s.state for s in states]
    first_open = names.index("open")
    assert names[first_open + 1] == "lost" and "reopening" in names[first_open:]
    assert names[-2:] == ["open", "closed"]
    assert {s.kind for s in states} == {"camera"} and states[first_open].detail == "160x120"


async def test_a_camera_that_never_opens_is_retried_not_fatal() -> None:
    async def body(reader: CameraReader, states: list[DeviceState]) -> None:
        await wait_for(lambda: len(states) >= 3, 20, "repeated attempts")

    states = await with_reader("/nonexistent/camera.avi", body)
    assert [s.state for s in states[:3]] == ["lost", "reopening", "lost"]


def test_frames_are_scaled_down_to_max_side_and_encoded_as_jpeg() -> None:
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:] = (0, 0, 255)
    jpeg = encode_jpeg(frame, max_side=64)
    decoded = decode_jpeg(jpeg)
    assert jpeg[:2] == b"\xff\xd8" and decoded.shape == (48, 64, 3)
    assert colour_of(decoded) == "red"
    assert decode_jpeg(encode_jpeg(frame, 768)).shape == (120, 160, 3)  # never scaled up


async def test_an_mpeg_ts_stream_over_tcp_is_read_too() -> None:
    server = CameraServer(free_port(), kind="mpegts")
    server.start("green")
    try:

        async def body(reader: CameraReader, states: list[DeviceState]) -> None:
            def green() -> bool:
                frame = reader.latest()
                return frame is not None and colour_of(frame) == "green"

            await wait_for(green, 20, "a green frame over TCP")

        states = await with_reader(server.url, body)
    finally:
        server.stop()
    assert "open" in [s.state for s in states]
