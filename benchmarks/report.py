"""BENCHMARKS.md and its per-stage plot, from the sections the benchmarks return."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from benchmarks.common import Section, machine


def markdown(sections: list[Section], plot: str | None, command: str) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {machine()}.",
        "",
        "Every figure is a median (or the stated percentile) over repeated runs, and every",
        "comparison was measured in the same run, side by side, so the machine's noise cancels.",
        "",
    ]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.figures:
            lines += ["| figure | value | target | met | how |", "|---|---|---|---|---|"]
        for f in section.figures:
            met = "" if f.met is None else ("yes" if f.met else "**no**")
            lines.append(f"| {f.name} | {f.value} | {f.target} | {met} | {f.how} |")
        lines.append("")
        lines += [f"{note}" for note in section.notes]
        if section.notes:
            lines.append("")
    if plot:
        lines += ["## Where the time goes", "", f"![per-stage breakdown]({plot})", ""]
    return "\n".join(lines)


def stage_plot(stages: dict[str, dict[str, float]], path: Path) -> None:
    """Stacked bars: for each configuration, the median milliseconds of each stage."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    names = list(stages)
    stage_names = list(dict.fromkeys(name for parts in stages.values() for name in parts))
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(names)))
    left = [0.0] * len(names)
    for stage in stage_names:
        widths = [stages[n].get(stage, 0.0) for n in names]  # a stage one pipeline lacks: 0
        ax.barh(names, widths, left=left, label=stage)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlabel("milliseconds from the end of speech (median)")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
