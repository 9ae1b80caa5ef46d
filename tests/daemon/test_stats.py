"""`tektra stats` against a running daemon: the `stats` socket command's comparison of the
backends `[[routing]]` shares a model between, as a table and as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from collections.abc import Callable

from tests.daemon.conftest import ROOT, TEKTRA, Daemon, SocketClient

# The test plugin twice: `recorder` answers, `flaky` refuses every load (a real exception).
ROUTED = (
    "[backends.flaky]\nfail_load = true\n"
    '[[routing]]\nmodel = "echo"\nbackends = { recorder = 0.5, flaky = 0.5 }\n'
)


def tektra(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(daemon.site), str(ROOT)])}
    return subprocess.run(
        [TEKTRA, *args, "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


async def test_tektra_stats_compares_the_routed_backends_and_counts_the_failing_one(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', extra=ROUTED, delay_s=0.01)
    client = await SocketClient.connect(daemon.socket)
    texts = []
    for i in range(4):
        reply = await client.call({"id": f"q{i}", "cmd": "ask", "text": f"question {i}"})
        texts.append((reply["result"]["text"], reply["result"]["backend"]))
    stats = await client.call({"id": "s", "cmd": "stats"})
    await client.close()
    # Every other query is routed to `flaky`, fails, and is answered by `recorder` after all.
    assert texts == [(f"You said: question {i}", "recorder") for i in range(4)]
    rows = stats["result"]["routing"]
    assert [(r["model"], r["backend"], r["share"], r["answers"], r["failures"]) for r in rows] == [
        ("echo", "recorder", 0.5, 4, 0),
        ("echo", "flaky", 0.5, 0, 2),
    ]
    assert rows[0]["first_token_ms_p50"] > 0 and rows[0]["tokens_per_s"] > 0
    assert (rows[1]["first_token_ms_p50"], rows[1]["tokens_per_s"]) == (None, None)

    as_json = await asyncio.to_thread(tektra, daemon, "stats", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == rows
    table = await asyncio.to_thread(tektra, daemon, "stats")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert re.split(" {2,}", lines[0]) == [
        "MODEL",
        "BACKEND",
        "SHARE",
        "ANSWERS",
        "FAILURES",
        "FIRST TOKEN P50",
        "FIRST TOKEN MEAN",
        "TOK/S",
    ]
    assert [line.split()[:5] for line in lines[1:]] == [
        ["echo", "recorder", "0.5", "4", "0"],
        ["echo", "flaky", "0.5", "0", "2"],
    ]
    assert lines[2].split()[5:] == ["-", "-", "-"]
    assert daemon.stop() == 0
