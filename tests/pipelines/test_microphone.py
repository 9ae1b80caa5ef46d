"""The real capture path: paplay → PulseAudio null sink → its monitor → sounddevice → pipeline.

The answer comes from the real model manager running SmolLM2 on llama.cpp; the camera frame
goes to an image-capable model (the recording test backend) only when the policy asks for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from daemon.core.config.schema import TektraConfig
from daemon.models.backends.registry import BackendRegistry
from daemon.models.manager.manager import Query, UnifiedModelManager
from pipelines.audio import RATE
from pipelines.events import DeviceState, FramesDropped
from pipelines.microphone import Microphone
from pipelines.voice import VoiceQuery
from tests.conftest import SMOLLM2_SOURCE
from tests.pipelines.conftest import (
    CameraServer,
    Pulse,
    Run,
    clip,
    colour_of,
    config,
    decode_jpeg,
    expected,
    run_pipeline,
    silence,
    wait_for,
    words,
    write_stream,
)
from tests.plugin_backend import RecordingBackend

pytestmark = pytest.mark.integration

WriteConfig = Callable[[str], tuple[TektraConfig, Path]]


def padded(tmp_path: Path, name: str) -> Path:
    return write_stream(tmp_path / f"{name}-padded.wav", silence(0.3), clip(name), silence(1.0))


async def test_speech_played_into_the_virtual_microphone_is_answered_by_smollm2(
    pulse: Pulse, write_config: WriteConfig, tmp_path: Path
) -> None:
    cfg, _ = write_config(
        '[audio]\nsource = "auto"\n[stt]\nthreads = 1\n'
        f'[[models]]\nid = "smollm2"\nsource = {SMOLLM2_SOURCE}\n'
        "[presets.balanced]\nmax_tokens = 24\ntemperature = 0.0\n"
    )
    manager = UnifiedModelManager(cfg)
    answers: list[str] = []

    async def answer(query: VoiceQuery) -> None:
        answers.append(await manager.process_multimodal(query.text, query.images, query.audio_wav))

    async def body(run: Run) -> None:
        await wait_for(lambda: "open" in run.device_states("microphone"), 30, "the microphone")
        player = pulse.play(padded(tmp_path, "kitchen_lights"))
        await asyncio.to_thread(player.wait, 30)
        await wait_for(lambda: len(answers) == 1, 120, "an answer")

    try:
        run = await run_pipeline(cfg, body, answer=answer)
    finally:
        await manager.close()
    assert run.transcripts == [words(expected("kitchen_lights"))]
    assert words(run.queries[0].text) == words(expected("kitchen_lights"))
    assert answers[0].strip() != ""
    assert run.of(FramesDropped) == []


@pytest.mark.parametrize("name", ["front_left", "front_right"])
async def test_a_short_first_word_before_a_pause_is_heard_through_the_virtual_microphone(
    pulse: Pulse, tmp_path: Path, name: str
) -> None:
    # "front", a pause shorter than the minimum silence, "left": one utterance, both words.
    cfg = config(audio={"source": "auto"}, stt={"threads": 1})
    wav = write_stream(tmp_path / f"{name}-padded.wav", silence(1.0), clip(name), silence(1.0))

    async def body(run: Run) -> None:
        await wait_for(lambda: "open" in run.device_states("microphone"), 30, "the microphone")
        player = pulse.play(wav)
        await asyncio.to_thread(player.wait, 30)
        await wait_for(lambda: len(run.transcripts) >= 1, 30, "a transcript")
        await wait_for(lambda: run.pipeline.drained, 30, "the pipeline to drain")

    run = await run_pipeline(cfg, body)
    assert run.transcripts == [words(expected(name))]
    assert run.of(FramesDropped) == []


async def test_a_lost_sound_server_is_reported_and_the_microphone_comes_back(
    pulse: Pulse, tmp_path: Path
) -> None:
    cfg = config(audio={"source": "pulse"})  # by name this time: ALSA's PulseAudio device

    async def body(run: Run) -> None:
        await wait_for(lambda: "open" in run.device_states("microphone"), 30, "the microphone")
        await asyncio.to_thread(pulse.stop)
        await wait_for(lambda: "lost" in run.device_states("microphone"), 30, "the loss")
        await asyncio.sleep(1.0)  # at least one failed reopen while the server is away
        await asyncio.to_thread(pulse.start)
        await wait_for(
            lambda: run.device_states("microphone")[-1] == "open", 60, "the microphone to reopen"
        )
        player = pulse.play(padded(tmp_path, "garage"))
        await asyncio.to_thread(player.wait, 30)
        await wait_for(lambda: len(run.queries) == 1, 60, "the utterance after reopening")

    run = await run_pipeline(cfg, body)
    states = run.device_states("microphone")
    assert states[:2] == ["open", "lost"] and "reopening" in states and states[-1] == "open"
    assert run.transcripts == [words(expected("garage"))]
    assert [e.kind for e in run.of(DeviceState)] == ["microphone"] * len(states)


async def test_asking_what_the_camera_sees_attaches_the_latest_frame_for_an_image_model(
    pulse: Pulse,
    camera_server: CameraServer,
    plugin: BackendRegistry,
    write_config: WriteConfig,
    tmp_path: Path,
) -> None:
    camera_server.start("red")
    cfg, _ = write_config(
        f'[audio]\nsource = "auto"\n[camera]\nsource = "{camera_server.url}"\n'
        'attach = "on_request"\nmax_side = 64\n'
        "[backends.recorder]\nenabled = true\n"
        f'[[models]]\nid = "smollm2"\nsource = {SMOLLM2_SOURCE}\n'
        '[[models]]\nid = "eyes"\nsource = { ollama = "eyes" }\n'
        'backend_preferences = ["recorder"]\ncapabilities = ["text", "image"]\n'
        "[presets.balanced]\nmax_tokens = 16\ntemperature = 0.0\n"
    )
    manager = UnifiedModelManager(cfg, registry=plugin)
    answered_by: list[str] = []

    async def answer(query: VoiceQuery) -> None:
        reply = manager.answer(Query(query.text, images=query.images, audio=query.audio_wav))
        async for _ in reply:
            pass
        answered_by.append(reply.model_id)

    def answered(count: int) -> bool:
        return len(answered_by) == count

    async def body(run: Run) -> None:
        await wait_for(lambda: "open" in run.device_states("microphone"), 30, "the microphone")
        await wait_for(lambda: "open" in run.device_states("camera"), 30, "the camera")
        for count, name in enumerate(["what_do_you_see", "kitchen_lights"], start=1):
            player = pulse.play(padded(tmp_path, name))
            await asyncio.to_thread(player.wait, 30)
            await wait_for(partial(answered, count), 120, f"the answer to {name}")

    try:
        run = await run_pipeline(cfg, body, image_capable=True, answer=answer)
        recorded = manager.backend("recorder")
    finally:
        await manager.close()
    assert run.transcripts == [
        words(expected("what_do_you_see")),
        words(expected("kitchen_lights")),
    ]
    looked, plain = run.queries
    assert len(looked.images) == 1 and plain.images == ()
    frame = decode_jpeg(looked.images[0])
    assert frame.shape == (48, 64, 3) and colour_of(frame) == "red"
    assert answered_by == ["eyes", "smollm2"]  # the frame took the query to the image model
    assert isinstance(recorded, RecordingBackend)
    (sent,) = recorded.generations()[0].images  # the manager may re-encode it: compare pixels
    assert colour_of(decode_jpeg(sent)) == "red"


async def test_while_the_vad_is_paused_quiet_blocks_come_three_at_a_time_and_a_loud_one_at_once(
    pulse: Pulse, tmp_path: Path
) -> None:
    chunks: list[np.ndarray] = []
    states: list[str] = []
    microphone = Microphone("auto", chunks.append, lambda e: states.append(e.state))
    microphone.quiet_below = 0.01  # what the VAD's gate says while it is closed
    rng = np.random.default_rng(0)
    tone = 0.3 * np.sin(np.arange(RATE) * 2 * np.pi * 440 / RATE).astype(np.float32)
    hiss = (1e-4 * rng.standard_normal(3 * RATE)).astype(np.float32)  # a quiet room
    wav = write_stream(tmp_path / "hiss-then-tone.wav", hiss, tone, silence(0.5))
    task = asyncio.create_task(microphone.run())
    try:
        await wait_for(lambda: "open" in states, 30, "the microphone")
        chunks.clear()
        player = pulse.play(wav)
        await asyncio.to_thread(player.wait, 30)
        await wait_for(lambda: any(np.abs(c).max() > 0.1 for c in chunks), 10, "the tone")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    block = RATE // 10
    loud = [i for i, c in enumerate(chunks) if np.abs(c).max() > 0.1]
    # Before the tone: three 100 ms blocks per hand-over.
    assert {len(c) for c in chunks[: loud[0]]} == {3 * block}
    # The first loud block did not wait for more: it ends its hand-over, with the quiet blocks
    # that came before it, and every loud block after it comes alone.
    first = chunks[loud[0]]
    assert len(first) in (block, 2 * block, 3 * block)
    assert np.abs(first[-block:]).max() > 0.1
    assert {len(chunks[i]) for i in loud[1:]} == {block}
