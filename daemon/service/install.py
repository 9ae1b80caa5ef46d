"""`tektra service install [--user] [--satellite]`: write the daemon's or a satellite's unit (or
launchd agent) with this machine's paths.

The files under `systemd/` in the repository are the templates of `units` rendered for a checkout
in /opt/tektra (a test keeps them identical), so what a packager reads is what the command writes.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from daemon.service.units import (
    DAEMON,
    SATELLITE,
    USERADD,
    render_plist,
    render_system_unit,
    render_user_unit,
)


@dataclass(frozen=True)
class Rendered:
    path: Path
    """Where the file goes (under `root` when one was given)."""
    text: str
    next_steps: list[str]


def tektra_executable() -> str:
    """The `tektra` script next to this interpreter (a venv's bin/), as an absolute path."""
    beside = Path(sys.executable).with_name("tektra")
    if beside.exists():
        return str(beside.absolute())
    found = shutil.which("tektra")
    return str(Path(found).absolute()) if found else f"{sys.executable} -m daemon.cli"


def plan(
    *,
    user: bool,
    config: Path,
    target: str,
    exec_path: str | None = None,
    home: Path | None = None,
    satellite: bool = False,
) -> Rendered:
    """The file to write for this OS (`target` systemd or launchd) and what to run next: the
    daemon's, or a satellite's with `satellite`."""
    service = SATELLITE if satellite else DAEMON
    exec_path = exec_path or tektra_executable()
    home = home or Path.home()
    docs = Path(__file__).resolve().parents[2] / "README.md"  # the repository's
    if target == "launchd":
        if user:
            path = home / f"Library/LaunchAgents/{service.label}.plist"
            domain = "gui/$(id -u)"
        else:
            path = Path(f"/Library/LaunchDaemons/{service.label}.plist")
            domain = "system"
        logs = home / "Library/Logs" if user else Path("/var/log")
        text = render_plist(exec_path, config, logs, service)
        return Rendered(path, text, [f"launchctl bootstrap {domain} {path}"])
    if user:
        config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        path = config_home / f"systemd/user/{service.name}.service"
        steps = [
            "systemctl --user daemon-reload",
            f"systemctl --user enable --now {service.name}",
            "loginctl enable-linger $USER   # keep it running without a login session",
        ]
        return Rendered(path, render_user_unit(exec_path, config, docs, service), steps)
    path = Path(f"/etc/systemd/system/{service.name}.service")
    # A satellite runs as the daemon's user: where the daemon runs too, that user is there.
    useradd = f"{USERADD}   # the daemon's user too: skip it if it exists" if satellite else USERADD
    steps = [useradd, "systemctl daemon-reload", f"systemctl enable --now {service.name}"]
    return Rendered(path, render_system_unit(exec_path, config, docs, service), steps)


def install(
    *,
    user: bool,
    config: Path,
    root: Path | None = None,
    dry_run: bool = False,
    target: str | None = None,
    satellite: bool = False,
) -> int:
    """Write the daemon's unit, or a satellite's with `satellite`, for this machine (under `root`
    if given) and print the next commands."""
    target = target or ("launchd" if sys.platform == "darwin" else "systemd")
    rendered = plan(user=user, config=config.absolute(), target=target, satellite=satellite)
    if dry_run:
        sys.stdout.write(rendered.text)
        return 0
    path = root / rendered.path.relative_to("/") if root is not None else rendered.path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered.text, encoding="utf-8")
    except OSError as exc:
        hint = "" if user else " (a system unit needs root: sudo, or --user)"
        print(f"error [permission]: cannot write {path}: {exc.strerror}{hint}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    if not user and target == "systemd" and rendered.text.count("/home/"):
        print("note: the unit runs with ProtectHome=yes; install Tektra outside /home (e.g. /opt)")
    print("next:")
    for step in rendered.next_steps:
        print(f"  {step}")
    return 0
