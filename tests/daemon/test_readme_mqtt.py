"""README's MQTT example, run exactly as written (credentials step included) against a daemon with
the embedded broker and node id `tektra`.

The only things added are where a person would look before typing on: mosquitto's own options
files name the test's port, and the script waits for the watcher's first line (the retained
`status`) before publishing, as a person sees it before typing the next command.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.daemon.conftest import ROOT, Daemon, free_port

SECTION = re.compile(r"^## MQTT\n(.*?)^## ", re.DOTALL | re.MULTILINE)
BLOCK = re.compile(r"^```[a-z]*\n(.*?)^```\n", re.DOTALL | re.MULTILINE)
# What depends on the model answering (README shows smollm2; the test daemon echoes).
MODEL_DEPENDENT = (
    "tektra/tektra/response ",
    "tektra/tektra/response/chunk ",
    "tektra/tektra/model ",
)


@dataclass
class Step:
    command: str
    shown: list[str] = field(default_factory=list)
    """What README shows the command printing (or the watcher printing because of it)."""


def readme_example() -> list[Step]:
    """The MQTT section's example: each `$ ` command and the lines README shows after it."""
    section = SECTION.search((ROOT / "README.md").read_text())
    assert section is not None
    block = next(b for b in BLOCK.findall(section.group(1)) if "mosquitto_sub" in b)
    steps: list[Step] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append(Step(line[2:]))
        elif line != "…":
            steps[-1].shown.append(line)
    return steps


def matches(shown: str, printed: str) -> bool:
    """A printed line is the one README shows; where README elides (`…`) or shows what the model
    said, the start of the line is what must match."""
    for prefix in MODEL_DEPENDENT:
        if shown.startswith(prefix):
            return printed.startswith(prefix)
    if "…" in shown:
        return printed.startswith(shown.split("…")[0])
    return printed == shown


def in_order(shown: list[str], printed: list[str]) -> bool:
    position = 0
    for line in shown:
        while position < len(printed) and not matches(line, printed[position]):
            position += 1
        if position == len(printed):
            return False
        position += 1
    return True


def test_readme_mqtt_example_runs_as_written_and_prints_what_readme_shows(
    make_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    steps = readme_example()
    assert steps[0].command == ".venv/bin/tektra mqtt credentials"
    port = free_port()
    daemon = make_daemon(f'broker = "embedded"\nembedded_port = {port}', start=False)
    daemon.config.write_text(
        daemon.config.read_text().replace('node_id = "testnode"', 'node_id = "tektra"')
    )
    daemon.start()
    options = tmp_path / "mosquitto-options"
    options.mkdir()
    for client in ("mosquitto_sub", "mosquitto_pub"):
        (options / client).write_text(f"-h 127.0.0.1\n-p {port}\n")
    env = {
        **os.environ,
        **daemon.env,
        "XDG_CONFIG_HOME": str(options),  # mosquitto's options files: the test's port
        "PYTHONPATH": os.pathsep.join([str(daemon.site), str(ROOT)]),
    }
    out = tmp_path / "terminal.txt"
    with out.open("w") as terminal:
        shell = subprocess.Popen(
            ["bash"], stdin=subprocess.PIPE, stdout=terminal, stderr=terminal, text=True,
            cwd=ROOT, env=env,
        )  # fmt: skip
    assert shell.stdin is not None
    try:
        for step in steps:
            before = len(out.read_text().splitlines())
            shell.stdin.write(step.command + "\n")
            if step.command.endswith("&"):
                shell.stdin.write("watcher=$!\n")
            shell.stdin.flush()
            # Retained messages come in the broker's order; everything else in README's.
            ordered = not step.command.startswith("mosquitto_sub")
            deadline = time.monotonic() + 30
            while True:
                printed = out.read_text().splitlines()[before:]
                if ordered and in_order(step.shown, printed):
                    break
                if not ordered and all(in_order([line], printed) for line in step.shown):
                    break
                assert time.monotonic() < deadline, (
                    f"after `{step.command}` README shows:\n"
                    + "\n".join(step.shown)
                    + "\nbut the terminal shows:\n"
                    + "\n".join(printed)
                )
                time.sleep(0.05)
    finally:
        shell.stdin.write('kill "$watcher"; exit\n')
        shell.stdin.close()
        shell.wait(timeout=30)
    printed = out.read_text().splitlines()
    assert printed[1].startswith("password=") and len(printed[1]) > 30
    assert daemon.stop() == 0
