"""`tektra service install [--satellite]`: the files it writes pass systemd's own checks, with no
warning."""

from __future__ import annotations

import os
import plistlib
import re
import subprocess
from pathlib import Path

from daemon.service.units import SATELLITE, render_plist, render_system_unit, render_user_unit
from tests.daemon.conftest import ROOT, TEKTRA


def tektra(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TEKTRA, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_the_system_unit_verifies_cleanly_and_rates_well(tmp_path: Path) -> None:
    config = ROOT / "models.toml"
    result = tektra("service", "install", "--root", str(tmp_path), "--config", str(config))
    unit = tmp_path / "etc/systemd/system/tektra.service"
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"wrote {unit}",
        "next:",
        "  useradd --system --home-dir /var/lib/tektra --shell /usr/sbin/nologin "
        "--groups audio,video tektra",
        "  systemctl daemon-reload",
        "  systemctl enable --now tektra",
    ]
    text = unit.read_text()
    assert f"ExecStart={TEKTRA} run --config {config}\n" in text
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "User=tektra"):
        assert f"\n{line}\n" in text
    assert "\nSupplementaryGroups=audio video\n" in text
    assert f"\nDocumentation=file://{ROOT / 'README.md'}\n" in text
    assert_verifies_and_rates_well(unit)


def assert_verifies_and_rates_well(unit: Path) -> None:
    """`systemd-analyze verify` says nothing; `security` rates the exposure 2.0 or less, OK/SAFE."""
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", "")

    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    exposure = re.search(
        rf"Overall exposure level for {re.escape(unit.name)}: ([\d.]+) (\w+)", security.stdout
    )
    assert exposure is not None, security.stdout
    assert float(exposure.group(1)) <= 2.0 and exposure.group(2) in ("OK", "SAFE")


def test_the_satellite_system_unit_runs_it_without_notify_and_rates_well(tmp_path: Path) -> None:
    config = Path("/etc/tektra/satellite.toml")
    result = tektra(
        "service", "install", "--satellite", "--root", str(tmp_path), "--config", str(config)
    )
    unit = tmp_path / "etc/systemd/system/tektra-satellite.service"
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"wrote {unit}",
        "next:",
        "  useradd --system --home-dir /var/lib/tektra --shell /usr/sbin/nologin "
        "--groups audio,video tektra   # the daemon's user too: skip it if it exists",
        "  systemctl daemon-reload",
        "  systemctl enable --now tektra-satellite",
    ]
    text = unit.read_text()
    assert f"\nExecStart={TEKTRA} satellite --config {config}\n" in text
    for line in ("Type=exec", "Restart=on-failure", "TimeoutStopSec=15", "User=tektra"):
        assert f"\n{line}\n" in text
    # Sound only: no camera, and none of the daemon's notify, watchdog, reload or socket.
    assert "\nSupplementaryGroups=audio\n" in text
    assert re.findall(r"^DeviceAllow=.*$", text, re.MULTILINE) == ["DeviceAllow=char-alsa rw"]
    for absent in ("Type=notify", "NotifyAccess", "WatchdogSec", "ExecReload", "RuntimeDirectory"):
        assert absent not in text
    assert_verifies_and_rates_well(unit)


def test_the_user_unit_verifies_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    result = tektra("service", "install", "--user", "--config", str(ROOT / "models.toml"), env=env)
    unit = home / ".config/systemd/user/tektra.service"
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"wrote {unit}"
    assert "  loginctl enable-linger $USER   # keep it running without a login session" in (
        result.stdout.splitlines()
    )
    assert "loginctl enable-linger" in unit.read_text()
    verify = subprocess.run(
        ["systemd-analyze", "--user", "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        env={**env, "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", "")


def test_the_satellite_user_unit_verifies_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    config = ROOT / "models.toml"
    result = tektra("service", "install", "--satellite", "--user", "--config", str(config), env=env)
    unit = home / ".config/systemd/user/tektra-satellite.service"
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"wrote {unit}",
        "next:",
        "  systemctl --user daemon-reload",
        "  systemctl --user enable --now tektra-satellite",
        "  loginctl enable-linger $USER   # keep it running without a login session",
    ]
    text = unit.read_text()
    assert f"\nExecStart={TEKTRA} satellite --config {config}\n" in text
    assert "\nType=exec\n" in text and "WatchdogSec" not in text
    verify = subprocess.run(
        ["systemd-analyze", "--user", "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        env={**env, "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", "")


def test_the_launchd_agent_parses_and_has_what_launchd_needs(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    config = ROOT / "models.toml"
    result = tektra(
        "service", "install", "--user", "--target", "launchd", "--config", str(config), env=env
    )
    path = tmp_path / "Library/LaunchAgents/com.tektra.daemon.plist"
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"  launchctl bootstrap gui/$(id -u) {path}"
    agent = plistlib.loads(path.read_bytes())
    assert agent["Label"] == "com.tektra.daemon"
    assert agent["ProgramArguments"] == [TEKTRA, "run", "--config", str(config)]
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["RunAtLoad"] is True and agent["ThrottleInterval"] == 10
    assert agent["StandardErrorPath"] == str(tmp_path / "Library/Logs/tektra.err.log")


def test_the_satellite_launchd_agent_runs_the_satellite(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    config = ROOT / "models.toml"
    flags = ("--satellite", "--user", "--target", "launchd")
    result = tektra("service", "install", *flags, "--config", str(config), env=env)
    path = tmp_path / "Library/LaunchAgents/com.tektra.satellite.plist"
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"  launchctl bootstrap gui/$(id -u) {path}"
    agent = plistlib.loads(path.read_bytes())
    assert agent["Label"] == "com.tektra.satellite"
    assert agent["ProgramArguments"] == [TEKTRA, "satellite", "--config", str(config)]
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["StandardErrorPath"] == str(tmp_path / "Library/Logs/tektra-satellite.err.log")


def test_print_shows_the_satellite_unit_and_writes_nothing(tmp_path: Path) -> None:
    config = Path("/etc/tektra/satellite.toml")
    flags = ("--satellite", "--print", "--root", str(tmp_path))
    result = tektra("service", "install", *flags, "--config", str(config))
    assert result.returncode == 0, result.stderr
    docs = ROOT / "README.md"
    assert result.stdout == render_system_unit(TEKTRA, config, docs, SATELLITE)
    assert list(tmp_path.iterdir()) == []


def test_a_system_unit_where_it_cannot_be_written_says_why() -> None:
    result = tektra("service", "install", "--root", "/proc/none", "--config", "models.toml")
    assert result.returncode == 1
    assert result.stderr.startswith("error [permission]: cannot write /proc/none/etc/systemd")


def test_the_shipped_files_are_the_templates_rendered_for_opt_tektra() -> None:
    exe, docs = "/opt/tektra/.venv/bin/tektra", Path("/opt/tektra/README.md")
    shipped = ROOT / "systemd"
    assert (shipped / "tektra.service").read_text() == render_system_unit(
        exe, Path("/etc/tektra/models.toml"), docs
    )
    assert (shipped / "tektra-user.service").read_text() == render_user_unit(
        exe, Path("%h/.config/tektra/models.toml"), docs
    )
    assert (shipped / "com.tektra.daemon.plist").read_text() == render_plist(
        exe, Path("/usr/local/etc/tektra/models.toml"), Path("/usr/local/var/log")
    )
    assert (shipped / "tektra-satellite.service").read_text() == render_system_unit(
        exe, Path("/etc/tektra/satellite.toml"), docs, SATELLITE
    )
    assert (shipped / "tektra-satellite-user.service").read_text() == render_user_unit(
        exe, Path("%h/.config/tektra/satellite.toml"), docs, SATELLITE
    )
    assert (shipped / "com.tektra.satellite.plist").read_text() == render_plist(
        exe, Path("/usr/local/etc/tektra/satellite.toml"), Path("/usr/local/var/log"), SATELLITE
    )
