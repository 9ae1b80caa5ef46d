"""How source strings from models.toml name devices, and the reopen backoff (pure logic)."""

from __future__ import annotations

from pipelines.camera import parse_source
from pipelines.microphone import backoff_delays, parse_device
from pipelines.voice import VoicePipeline
from tests.pipelines.conftest import config


def test_microphone_sources_are_the_default_an_index_or_a_name() -> None:
    assert parse_device("auto") is None
    assert parse_device("2") == 2
    assert parse_device("USB Audio") == "USB Audio"


def test_camera_sources_are_a_device_index_a_path_or_a_url() -> None:
    assert parse_source("auto") == 0
    assert parse_source("1") == 1
    assert parse_source("/srv/cam.avi") == "/srv/cam.avi"
    assert parse_source("rtsp://10.0.0.2/stream") == "rtsp://10.0.0.2/stream"


def test_reopening_backs_off_by_doubling_up_to_ten_seconds() -> None:
    assert backoff_delays() == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]


async def test_the_camera_is_read_only_when_a_frame_could_be_attached() -> None:
    async def ignore(query: object) -> None:
        return None

    def build(attach: str, capable: bool) -> VoicePipeline:
        cfg = config(camera={"source": "auto", "attach": attach})
        return VoicePipeline.from_config(cfg, ignore, print, image_capable=capable)

    assert build("on_request", capable=True).camera is not None
    assert build("on_request", capable=False).camera is None
    assert build("never", capable=True).camera is None


def test_a_report_that_keeps_coming_back_is_logged_again_ever_more_rarely() -> None:
    from pipelines.microphone import RepeatedReport

    lost = RepeatedReport(first_s=60.0, max_s=3600.0)
    every_10_s = [t * 10.0 for t in range(0, 1000)]  # a reopen attempt every 10 s
    logged = [t for t in every_10_s if lost.should_log("cannot open", t)]
    # After 1 min, then 2, 4, 8 … and at most once an hour (the last gap).
    assert logged == [0.0, 60.0, 180.0, 420.0, 900.0, 1860.0, 3780.0, 7380.0]
    assert lost.should_log("something else", 10_000.0)  # a new reason: said at once
    assert not lost.should_log(None, 10_010.0)  # back: nothing to say about losing it
    assert lost.should_log("cannot open", 10_020.0)  # lost again later: said at once
