"""`python -m benchmarks` (what `make bench` runs): every measurement, then BENCHMARKS.md."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks import latency, overhead, service, stt, ttft, vad
from benchmarks.common import ROOT, Section
from benchmarks.report import markdown, stage_plot

NOT_MET = Section(
    "Targets not met, and why",
    notes=[
        "- End of speech -> first chunk (p50 <= 0.6 s, p95 <= 1.0 s): the 0.7 s silence hangover",
        "  (Home Assistant's default) comes first, and speculation rarely ends an utterance before",
        "  it: tiny.en's encoder always works on a 30 s window (~0.5-0.6 s per run on 2 cores), so",
        "  a transcript of speech that just ended exists only ~0.6 s after the pause began. What",
        "  speculation removes is the speech-to-text run after the end (the partial is final).",
        "- STT <= 0.7x wyoming-faster-whisper: with the whole clip in hand before the clock",
        "  starts, both make the same faster-whisper call; speculation's gain shows end to end.",
        "- Daemon overhead <= 3 %: the daemon's queues, threads and events around the same three",
        "  calls, and its reading pushed audio in 100 ms steps; a few percent on this machine.",
        "- Idle <= 1 % of a core: behind ALSA's PulseAudio plugin, sounddevice (blocksize 0)",
        "  delivers many small blocks, each a callback, a copy, a loop wake-up and a worker-thread",
        "  hop for the VAD; batching blocks in the callback is the next step.",
    ],
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--rounds", type=int, default=3, help="repeats of each measurement")
    parser.add_argument("--idle-s", type=float, default=600.0, help="seconds of silence (idle)")
    parser.add_argument("--clients", type=int, default=8, help="socket clients asking at once")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    sections: list[Section] = []
    end_to_end, stages = latency.run(rounds=max(1, args.rounds // 2))
    sections.append(end_to_end)
    sections.append(overhead.run(rounds=max(1, args.rounds // 2)))
    with tempfile.TemporaryDirectory() as data:
        sections.append(stt.run(Path(data), rounds=args.rounds))
    sections.append(ttft.run(ROOT / "models.toml", rounds=args.rounds))
    sections.append(vad.run(rounds=args.rounds))
    sections.append(service.idle(args.idle_s))
    sections.append(service.concurrency(args.clients))
    sections.append(NOT_MET)

    plot = args.out.with_name("benchmarks-stages.png")
    stage_plot({"with speculative STT": stages["speculative"], "without": stages["plain"]}, plot)
    args.out.write_text(markdown(sections, plot.name, "make bench"))
    print(f"wrote {args.out} and {plot}")


if __name__ == "__main__":
    main()
