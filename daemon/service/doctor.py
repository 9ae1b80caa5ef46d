"""`tektra doctor`: check what the daemon needs, one line per finding, and say how to fix each
problem.

Every check is read-only (it opens, queries and connects; it writes and starts nothing) and runs
off the event loop or bounded by a timeout, so one hanging device or server cannot hang the rest.
A check that takes longer than a second says what it is doing first, on stderr, so the findings on
stdout stay one clean line each. Exit status 1 when any finding is a problem.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from daemon.core.errors import ConfigIssue

Status = Literal["ok", "problem", "skip"]
PROGRESS_AFTER_S = 1.0
"""A check still running after this long announces itself."""
CHECK_TIMEOUT_S = 30.0
"""A check that takes longer is a problem in itself (a device or server that hangs)."""
MARKS: dict[Status, str] = {"ok": "ok", "problem": "problem", "skip": "-"}


@dataclass(frozen=True)
class Finding:
    """One line of the report."""

    status: Status
    """`ok`, `problem`, or `skip` (not in use here, so not checked)."""
    subject: str
    """What was checked: `audio input`, `model 'echo'`, `MQTT broker` …"""
    detail: str
    fix: str = ""
    """For a problem: the command (or the setting) that fixes it."""

    def line(self) -> str:
        text = f"{MARKS[self.status]:<8} {self.subject}: {self.detail}"
        return f"{text} — fix: {self.fix}" if self.fix else text


def ok(subject: str, detail: str) -> Finding:
    return Finding("ok", subject, detail)


def problem(subject: str, detail: str, fix: str) -> Finding:
    return Finding("problem", subject, detail, fix)


def skip(subject: str, detail: str) -> Finding:
    return Finding("skip", subject, detail)


CheckFn = Callable[[], Awaitable[list[Finding]]]


@dataclass(frozen=True)
class Check:
    doing: str
    """What it does, for the progress line (`checking <doing> …`)."""
    subject: str
    """Who the finding is about if the check itself times out."""
    run: CheckFn


async def examine(
    checks: list[Check],
    out: TextIO,
    progress: TextIO,
    *,
    progress_after_s: float = PROGRESS_AFTER_S,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> list[Finding]:
    """Run `checks` one after another, printing each finding as it is known."""
    findings: list[Finding] = []
    for check in checks:
        task = asyncio.ensure_future(check.run())
        done, _ = await asyncio.wait({task}, timeout=progress_after_s)
        if not done:
            print(f"checking {check.doing} …", file=progress, flush=True)
        try:
            found = await asyncio.wait_for(task, timeout_s - progress_after_s)
        except asyncio.TimeoutError:
            found = [
                problem(
                    check.subject,
                    f"no answer within {timeout_s:g} s while checking {check.doing}",
                    "find what hangs there (a device or server that does not answer)",
                )
            ]
        for finding in found:
            print(finding.line(), file=out, flush=True)
        findings += found
    return findings


def run(path: Path, sock: Path | None) -> int:
    """The `tektra doctor` command: `sock` is `--socket`, else the configuration's."""
    findings = asyncio.run(_examine_file(path, sock))
    problems = sum(f.status == "problem" for f in findings)
    if problems:
        print(f"{problems} problem(s) found", file=sys.stderr)
        return 1
    return 0


async def _examine_file(path: Path, sock: Path | None) -> list[Finding]:
    from daemon.core.config.load import inspect_file
    from daemon.frontends.socket.access import SYSTEM_SOCKET, socket_path
    from daemon.models.backends.registry import BackendRegistry
    from daemon.service.doctor_checks import all_checks
    from daemon.service.references import reference_issues

    checked = await asyncio.to_thread(inspect_file, path, BackendRegistry().names())
    issues = checked.issues if checked.config is None else reference_issues(checked.config)
    if checked.config is None or issues:
        findings = [_config_problem(path, issue) for issue in issues]
        findings.append(skip("other checks", "not run: they need a valid configuration"))
        for finding in findings:
            print(finding.line(), flush=True)
        return findings
    if sock is None:
        sock = socket_path(checked.config.daemon)
        if not sock.exists() and SYSTEM_SOCKET.exists():
            sock = SYSTEM_SOCKET  # as every other command: the system service's daemon
    return await examine(all_checks(checked.config, path, sock), sys.stdout, sys.stderr)


def _config_problem(path: Path, issue: ConfigIssue) -> Finding:
    where = f"{issue.path} in {path}" if issue.path else str(path)
    fix = f"correct {where} (`tektra validate` lists every error)"
    if issue.message.startswith("file not found"):
        fix = f"put the file there, or correct {where}"
    return problem("configuration", str(issue), fix)
