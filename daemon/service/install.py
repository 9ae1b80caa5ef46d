"""`tektra service install [--user]`: write the unit (or launchd agent) with this machine's paths.

The files under `systemd/` in the repository are these templates rendered for a checkout in
/opt/tektra (a test keeps them identical), so what a packager reads is what the command writes.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

SYSTEM_UNIT = """\
# Tektra as a system service: its own user (in the audio and video groups), started at boot.
# Create the user first:
#   useradd --system --home-dir /var/lib/tektra --shell /usr/sbin/nologin \\
#           --groups audio,video tektra
[Unit]
Description=Tektra voice and vision assistant
Documentation=file://{docs}
After=network-online.target sound.target
Wants=network-online.target

[Service]
# READY=1 comes as soon as the daemon serves; the default model loads after it (state `loading`),
# so a slow inference server never needs a longer TimeoutStartSec.
Type=notify
NotifyAccess=main
ExecStart={exec} run --config {config}
ExecReload=/bin/kill -HUP $MAINPID
User=tektra
Group=tektra
SupplementaryGroups=audio video
# /run/tektra holds the socket ($RUNTIME_DIRECTORY); models pulled from the hub go to the cache.
RuntimeDirectory=tektra
RuntimeDirectoryMode=0750
StateDirectory=tektra
CacheDirectory=tektra
ConfigurationDirectory=tektra
Environment=HOME=/var/lib/tektra HF_HOME=/var/cache/tektra/huggingface
# The loop feeds the watchdog itself: a stuck loop is restarted.
WatchdogSec=30
Restart=on-failure
RestartSec=2
# Answers get [daemon] shutdown_timeout_s (5 s), then are stopped; the daemon is gone within 8 s
# more. Keep this above their sum.
TimeoutStopSec=15
UMask=0077

# Hardening. Devices: only sound and cameras. MemoryDenyWriteExecute stays off because the audio
# callbacks (cffi) need writable+executable trampolines; PrivateUsers stays off because it would
# unmap the audio and video groups that open those devices.
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateMounts=yes
DevicePolicy=closed
DeviceAllow=char-alsa rw
DeviceAllow=char-video4linux rw
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
KeyringMode=private
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""

USER_UNIT = """\
# Tektra in a user session, for desktops where the audio server (PipeWire, PulseAudio) lives in
# the user's session. To keep it running after logout and start it at boot:
#   loginctl enable-linger $USER
[Unit]
Description=Tektra voice and vision assistant (user session)
Documentation=file://{docs}
After=pipewire.service pulseaudio.service

[Service]
# READY=1 comes as soon as the daemon serves; the default model loads after it (state `loading`),
# so a slow inference server never needs a longer TimeoutStartSec.
Type=notify
NotifyAccess=main
ExecStart={exec} run --config {config}
ExecReload=/bin/kill -HUP $MAINPID
WatchdogSec=30
Restart=on-failure
RestartSec=2
# Answers get [daemon] shutdown_timeout_s (5 s), then are stopped; the daemon is gone within 8 s
# more. Keep this above their sum.
TimeoutStopSec=15
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy=default.target
"""

LAUNCHD_LABEL = "com.tektra.daemon"


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


def render_system_unit(exec_path: str, config: Path, docs: Path) -> str:
    return SYSTEM_UNIT.format(exec=exec_path, config=config, docs=docs)


def render_user_unit(exec_path: str, config: Path, docs: Path) -> str:
    return USER_UNIT.format(exec=exec_path, config=config, docs=docs)


def render_plist(exec_path: str, config: Path, logs: Path) -> str:
    agent = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": [*exec_path.split(" "), "run", "--config", str(config)],
        "RunAtLoad": True,
        # Restart after a crash, not after a clean exit (launchctl bootout, SIGTERM).
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 10,
        "ProcessType": "Interactive",
        "StandardOutPath": str(logs / "tektra.log"),
        "StandardErrorPath": str(logs / "tektra.err.log"),
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
    }
    return plistlib.dumps(agent, sort_keys=False).decode()


def plan(
    *, user: bool, config: Path, target: str, exec_path: str | None = None, home: Path | None = None
) -> Rendered:
    """The file to write for this OS (`target` systemd or launchd) and what to run next."""
    exec_path = exec_path or tektra_executable()
    home = home or Path.home()
    docs = Path(__file__).resolve().parents[1] / "README.md"
    if target == "launchd":
        if user:
            path = home / f"Library/LaunchAgents/{LAUNCHD_LABEL}.plist"
            domain = "gui/$(id -u)"
        else:
            path = Path(f"/Library/LaunchDaemons/{LAUNCHD_LABEL}.plist")
            domain = "system"
        text = render_plist(exec_path, config, home / "Library/Logs" if user else Path("/var/log"))
        return Rendered(path, text, [f"launchctl bootstrap {domain} {path}"])
    if user:
        config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        path = config_home / "systemd/user/tektra.service"
        steps = [
            "systemctl --user daemon-reload",
            "systemctl --user enable --now tektra",
            "loginctl enable-linger $USER   # keep it running without a login session",
        ]
        return Rendered(path, render_user_unit(exec_path, config, docs), steps)
    path = Path("/etc/systemd/system/tektra.service")
    steps = [
        "useradd --system --home-dir /var/lib/tektra --shell /usr/sbin/nologin "
        "--groups audio,video tektra",
        "systemctl daemon-reload",
        "systemctl enable --now tektra",
    ]
    return Rendered(path, render_system_unit(exec_path, config, docs), steps)


def install(
    *,
    user: bool,
    config: Path,
    root: Path | None = None,
    dry_run: bool = False,
    target: str | None = None,
) -> int:
    """Write the unit for this machine (under `root` if given) and print the next commands."""
    target = target or ("launchd" if sys.platform == "darwin" else "systemd")
    rendered = plan(user=user, config=config.absolute(), target=target)
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
