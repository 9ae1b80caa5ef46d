"""`python -m benchmarks` (what `make bench` runs): every measurement, then BENCHMARKS.md."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks import latency, overhead, service, stt, ttft, vad
from benchmarks.common import ROOT, Section
from benchmarks.report import markdown, stage_plot


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

    plot = args.out.with_name("benchmarks-stages.png")
    stage_plot({"with speculative STT": stages["speculative"], "without": stages["plain"]}, plot)
    args.out.write_text(markdown(sections, plot.name, "make bench"))
    print(f"wrote {args.out} and {plot}")


if __name__ == "__main__":
    main()
