"""The service files Tektra installs: systemd units and launchd agents, for the daemon and for a
satellite.

The two processes share what is the same for both (the `tektra` user, the hardening, the launchd
agent's shape) and differ where they do: the daemon speaks the notify protocol, feeds a watchdog,
reloads on SIGHUP, serves a socket and opens cameras; a satellite does none of that.
"""

from __future__ import annotations

import plistlib
from dataclasses import dataclass
from pathlib import Path

USERADD = (
    "useradd --system --home-dir /var/lib/tektra --shell /usr/sbin/nologin "
    "--groups audio,video tektra"
)
"""The `tektra` user both system units run as."""

# The same command, wrapped for a unit's header comment.
_USERADD_COMMENT = "#   " + USERADD.replace(" --groups", " \\\n#           --groups")

HARDENING = """\
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateMounts=yes
DevicePolicy=closed
{device_allow}ProtectKernelTunables=yes
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
"""
"""A system unit's hardening; `device_allow` opens the only devices it may use."""

USER_HARDENING = """\
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
RestrictSUIDSGID=yes
LockPersonality=yes
"""
"""A user unit's: what a user manager can apply without breaking the session's audio server."""

DAEMON_SYSTEM_UNIT = """\
# Tektra as a system service: its own user (in the audio and video groups), started at boot.
# Create the user first:
{useradd}
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
{hardening}
[Install]
WantedBy=multi-user.target
"""

DAEMON_USER_UNIT = """\
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
{hardening}
[Install]
WantedBy=default.target
"""

SATELLITE_SYSTEM_UNIT = """\
# A Tektra satellite as a system service: the microphone and loudspeaker of another room, started
# at boot. It runs as the daemon's `tektra` user: a box with both needs one user, and a box with
# only a satellite (a Raspberry Pi) creates the same one; this unit opens sound devices only, so
# the video group gives it no camera. Create the user first, once per box:
{useradd}
[Unit]
Description=Tektra satellite (microphone and loudspeaker of another room)
Documentation=file://{docs}
After=network-online.target sound.target
Wants=network-online.target

[Service]
# No notify protocol and no watchdog: it is up once it runs. A hub that is away is retried by the
# satellite itself, which keeps listening meanwhile. It has no reload (SIGHUP would stop it).
Type=exec
ExecStart={exec} satellite --config {config}
User=tektra
Group=tektra
SupplementaryGroups=audio
# $STATE_DIRECTORY: on the hub's own machine the embedded broker's login is read from there.
StateDirectory=tektra
ConfigurationDirectory=tektra
Environment=HOME=/var/lib/tektra
Restart=on-failure
RestartSec=2
# On SIGTERM it publishes `offline` and exits within a few seconds.
TimeoutStopSec=15
UMask=0077

# Hardening, as the daemon's. Devices: only sound. MemoryDenyWriteExecute stays off because the
# audio callbacks (cffi) need writable+executable trampolines; PrivateUsers stays off because it
# would unmap the audio group that opens those devices.
{hardening}
[Install]
WantedBy=multi-user.target
"""

SATELLITE_USER_UNIT = """\
# A Tektra satellite in a user session, for boxes where the audio server (PipeWire, PulseAudio)
# lives in the user's session. To keep it running after logout and start it at boot:
#   loginctl enable-linger $USER
[Unit]
Description=Tektra satellite (user session)
Documentation=file://{docs}
After=pipewire.service pulseaudio.service

[Service]
# No notify protocol and no watchdog: it is up once it runs. It has no reload.
Type=exec
ExecStart={exec} satellite --config {config}
Restart=on-failure
RestartSec=2
# On SIGTERM it publishes `offline` and exits within a few seconds.
TimeoutStopSec=15
{hardening}
[Install]
WantedBy=default.target
"""


@dataclass(frozen=True)
class Service:
    """A process Tektra installs as a service."""

    name: str
    """The systemd unit's name without `.service`, as `systemctl enable` takes it."""
    command: str
    """The `tektra` sub-command it runs."""
    label: str
    """The launchd label, also the plist's file name."""
    devices: tuple[str, ...]
    """The device classes its system unit may open (`DeviceAllow=`)."""
    system_unit: str
    user_unit: str


DAEMON = Service(
    "tektra",
    "run",
    "com.tektra.daemon",
    ("char-alsa", "char-video4linux"),
    DAEMON_SYSTEM_UNIT,
    DAEMON_USER_UNIT,
)
SATELLITE = Service(
    "tektra-satellite",
    "satellite",
    "com.tektra.satellite",
    ("char-alsa",),
    SATELLITE_SYSTEM_UNIT,
    SATELLITE_USER_UNIT,
)


def render_system_unit(exec_path: str, config: Path, docs: Path, service: Service = DAEMON) -> str:
    allow = "".join(f"DeviceAllow={device} rw\n" for device in service.devices)
    return service.system_unit.format(
        exec=exec_path,
        config=config,
        docs=docs,
        useradd=_USERADD_COMMENT,
        hardening=HARDENING.format(device_allow=allow),
    )


def render_user_unit(exec_path: str, config: Path, docs: Path, service: Service = DAEMON) -> str:
    return service.user_unit.format(
        exec=exec_path, config=config, docs=docs, hardening=USER_HARDENING
    )


def render_plist(exec_path: str, config: Path, logs: Path, service: Service = DAEMON) -> str:
    agent = {
        "Label": service.label,
        "ProgramArguments": [*exec_path.split(" "), service.command, "--config", str(config)],
        "RunAtLoad": True,
        # Restart after a crash, not after a clean exit (launchctl bootout, SIGTERM).
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 10,
        "ProcessType": "Interactive",
        "StandardOutPath": str(logs / f"{service.name}.log"),
        "StandardErrorPath": str(logs / f"{service.name}.err.log"),
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
    }
    return plistlib.dumps(agent, sort_keys=False).decode()
