"""Clips from a wire command (`multimodal` with `video`) and `look` at the camera's frame, through
the real llama.cpp multimodal path with the tiny Gemma3 VLM fixture.

The fixture has random weights, so its words mean nothing: the tests prove the frames were
embedded by the prompt's token count. Each image adds 16 embeddings and 2 markers
(tests/engines/test_tiny_vlm_fixture.py); text describing an image would add a handful.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.assistant.assistant import Assistant
from daemon.assistant.commands import Commands, Outcome
from daemon.assistant.protocol import LookArgs, Request
from daemon.core.config.schema import MqttSettings, TektraConfig
from daemon.core.events import EventBus
from daemon.models.manager.manager import Query, UnifiedModelManager
from pipelines.camera import CameraReader, encode_jpeg
from pipelines.events import DeviceState
from tests.conftest import png
from tests.daemon.conftest import ROOT, TEKTRA, Daemon, SocketClient
from tests.engines.conftest import VLM, VLM_MMPROJ

WriteConfig = Callable[[str], tuple[TektraConfig, Path]]
VIDEO = Path(__file__).parents[2] / "fixtures" / "video"
PER_IMAGE = 16 + 2  # embeddings plus <start_of_image> and <end_of_image>
FRAMES = 3
CONFIG = (
    '[daemon]\npreset = "exact"\n[presets.exact]\ntemperature = 0.0\nseed = 7\nmax_tokens = 4\n'
    f"[media]\nvideo_frames = {FRAMES}\nmax_video_mb = 1.0\n"
    f'[[models]]\nid = "vlm"\nsource = {{ path = "{VLM}", mmproj = "{VLM_MMPROJ}" }}\n'
    'context_length = 256\ncapabilities = ["text", "image"]\nbackend_preferences = ["llama_cpp"]\n'
)


@pytest.fixture
async def commands(write_config: WriteConfig) -> AsyncIterator[Commands]:
    config, _ = write_config(CONFIG)
    assistant = Assistant(config, None, EventBus())
    yield Commands(assistant)
    await assistant.manager.close()


async def run(commands: Commands, request: dict[str, Any]) -> Outcome:
    line = commands.read_line(json.dumps(request).encode())
    assert isinstance(line, Request), line
    return await commands.run_request(line)


def clip(name: str) -> str:
    return base64.b64encode((VIDEO / f"{name}.avi").read_bytes()).decode()


async def test_a_clip_sent_to_multimodal_reaches_the_model_as_sampled_frames(
    commands: Commands,
) -> None:
    question = {"cmd": "multimodal", "id": 1, "text": "What happens here?"}
    plain = await run(commands, question)
    with_clip = await run(commands, {**question, "id": 2, "video": clip("moving_square")})
    assert plain.result is not None and with_clip.result is not None, (plain, with_clip)
    added = with_clip.result["prompt_tokens"] - plain.result["prompt_tokens"]
    assert added == FRAMES * PER_IMAGE
    assert with_clip.result["model"] == "vlm"


async def test_a_clip_alone_is_a_complete_multimodal_request(commands: Commands) -> None:
    done = await run(commands, {"cmd": "multimodal", "id": 1, "video": clip("red")})
    assert done.result is not None, done


async def test_a_clip_over_max_video_mb_is_refused_before_decoding(commands: Commands) -> None:
    big = base64.b64encode(b"\0" * (2 * 1024 * 1024)).decode()
    done = await run(commands, {"cmd": "multimodal", "id": 1, "text": "hi", "video": big})
    assert (done.code, done.message) == (
        "too_large",
        "`video` is larger than the 1048576-byte limit",
    )


async def test_a_clip_ffmpeg_cannot_read_is_refused_in_our_words(commands: Commands) -> None:
    junk = base64.b64encode(b"not a video at all").decode()
    done = await run(commands, {"cmd": "multimodal", "id": 1, "text": "hi", "video": junk})
    assert done.code == "bad_media", done
    assert done.message == "video could not be decoded (unknown or damaged container)"


async def test_look_without_a_camera_says_no_camera(commands: Commands) -> None:
    done = await run(commands, {"cmd": "look", "id": 1})
    assert done.code == "no_camera"
    assert done.message.startswith("no camera frame to look at: set [camera] source")


async def test_look_asks_about_the_current_frame_of_a_video_file_camera(
    write_config: WriteConfig,
) -> None:
    config, _ = write_config(CONFIG)
    assistant = Assistant(config, None, EventBus())
    states: list[DeviceState] = []
    reader = CameraReader(str(VIDEO / "red.avi"), states.append)
    reading = asyncio.create_task(reader.run())

    async def frame() -> bytes | None:
        latest = reader.latest()
        return None if latest is None else encode_jpeg(latest, 64)

    try:
        for _ in range(300):
            if reader.latest() is not None:
                break
            await asyncio.sleep(0.1)
        commands = Commands(assistant, camera=frame)
        looked = await run(commands, {"cmd": "look", "id": 1})
        asked = await run(commands, {"cmd": "ask", "id": 2, "text": "What do you see?"})
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await assistant.manager.close()
    assert looked.result is not None and asked.result is not None, (looked, asked)
    # The same default question, plus one frame's embeddings.
    assert looked.result["prompt_tokens"] - asked.result["prompt_tokens"] == PER_IMAGE


async def test_a_running_daemon_looks_through_its_camera_with_an_image_model(
    make_daemon: Callable[..., Daemon],
) -> None:
    # No microphone (it is reported lost), but the voice pipeline runs and reads the camera: a
    # video file, looped. `echo` answers plain questions; `look` needs the image model `eyes`.
    extra = (
        'default_model = "echo"\n'
        f'[camera]\nsource = "{VIDEO / "red.avi"}"\nmax_side = 64\n'
        '[[models]]\nid = "eyes"\nsource = { path = "models.toml" }\n'
        'backend_preferences = ["recorder"]\ncapabilities = ["text", "image"]\n'
    )
    daemon = make_daemon('broker = "none"', extra=extra, audio="no-such-microphone")
    client = await SocketClient.connect(daemon.socket)
    looked = await client.call({"id": 1, "cmd": "look"})
    asked = await client.call({"id": 2, "cmd": "look", "text": "Is it red?"})
    await client.close()
    assert daemon.stop() == 0
    assert looked["result"]["text"] == "You said: What do you see?"
    assert looked["result"]["model"] == "eyes"  # the frame took the question to the image model
    assert asked["result"]["text"] == "You said: Is it red?"


async def test_a_daemon_without_a_microphone_opens_its_camera_for_a_look(
    make_daemon: Callable[..., Daemon],
) -> None:
    # `[audio] source = "none"`: no voice pipeline runs, so no camera is read all the time; a
    # `look` opens the camera for its one frame.
    extra = (
        'default_model = "echo"\n'
        f'[camera]\nsource = "{VIDEO / "red.avi"}"\nmax_side = 64\n'
        '[[models]]\nid = "eyes"\nsource = { path = "models.toml" }\n'
        'backend_preferences = ["recorder"]\ncapabilities = ["text", "image"]\n'
    )
    daemon = make_daemon('broker = "none"', extra=extra, audio="none")
    client = await SocketClient.connect(daemon.socket)
    looked = await client.call({"id": 1, "cmd": "look", "text": "Is it red?"})
    status = await client.call({"id": 2, "cmd": "status"})
    await client.close()
    assert daemon.stop() == 0
    assert looked["result"]["text"] == "You said: Is it red?"
    assert looked["result"]["model"] == "eyes"
    assert status["result"]["problems"] == {}  # the camera closed after the look, not lost


async def test_a_daemon_without_a_camera_answers_look_with_no_camera(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    client = await SocketClient.connect(daemon.socket)
    reply = await client.call({"id": 1, "cmd": "look"})
    await client.close()
    assert daemon.stop() == 0
    assert reply["error"]["code"] == "no_camera"


async def test_the_managers_operations_ask_what_the_socket_commands_ask(
    write_config: WriteConfig,
) -> None:
    # At temperature 0 the same prompt and image give the same answer: each operation is the
    # query its command sends.
    config, _ = write_config(CONFIG)
    manager = UnifiedModelManager(config)
    frame = png(64, 64, 0)
    try:
        described = await manager.process_image_with_description(frame, "Describe this image.")
        looked = await manager.process_camera_frame(frame)
        clip_text = await manager.process_video("What happens?", [(VIDEO / "red.avi").read_bytes()])
        asked = [
            await complete(manager, Query(text, images=images))
            for text, images in [
                ("Describe this image.", (frame,)),
                ("What do you see?", (frame,)),
            ]
        ]
        plain = await complete(manager, Query("What happens?"))
    finally:
        await manager.close()
    assert [described, looked] == asked
    assert clip_text != plain  # the clip's frames changed what the model read


async def complete(manager: UnifiedModelManager, query: Query) -> str:
    answer = manager.answer(query)
    async for _ in answer:
        pass
    return answer.text


def tektra(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **daemon.env, "PYTHONPATH": os.pathsep.join([str(daemon.site), str(ROOT)])}
    return subprocess.run(
        [TEKTRA, *args, "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


async def test_tektra_look_says_no_camera_in_our_words(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon('broker = "none"')
    done = await asyncio.to_thread(tektra, daemon, "look")
    assert daemon.stop() == 0
    assert done.returncode == 1
    assert done.stderr.startswith("error [no_camera]: no camera frame to look at")


async def test_tektra_ask_video_sends_the_clip_to_the_daemon(
    make_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    extra = (
        'default_model = "echo"\n'
        '[[models]]\nid = "eyes"\nsource = { path = "models.toml" }\n'
        'backend_preferences = ["recorder"]\ncapabilities = ["text", "image"]\n'
    )
    daemon = make_daemon('broker = "none"', extra=extra)
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video at all")
    video = str(VIDEO / "red.avi")
    done = await asyncio.to_thread(tektra, daemon, "ask", "What happens?", "--video", video)
    damaged = await asyncio.to_thread(tektra, daemon, "ask", "Hm?", "--video", str(junk))
    missing = await asyncio.to_thread(tektra, daemon, "ask", "Hm?", "--video", "/no/such.avi")
    assert daemon.stop() == 0
    assert (done.returncode, done.stdout) == (0, "You said: What happens?\n")
    # The daemon decoded what it was sent: the clip itself went over the socket.
    assert (damaged.returncode, damaged.stderr) == (
        1,
        "error [bad_media]: video could not be decoded (unknown or damaged container)\n",
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("error [bad_input]: cannot read the clip /no/such.avi")


def test_look_over_mqtt_is_forbidden_until_listed_and_then_takes_plain_text(
    commands: Commands,
) -> None:
    # Off by default: its answer says what the camera sees, and the house broker is shared.
    default = MqttSettings().commands
    refused = commands.read_message("look", b"", default)
    assert isinstance(refused, Outcome) and refused.code == "forbidden"
    allowed = [*default, "look"]
    pressed = commands.read_message("look", b"PRESS", allowed)  # a Home Assistant button
    asked = commands.read_message("look", b"Is the door open?", allowed)
    assert isinstance(pressed, Request) and pressed.args == LookArgs(text="What do you see?")
    assert isinstance(asked, Request) and asked.args == LookArgs(text="Is the door open?")
