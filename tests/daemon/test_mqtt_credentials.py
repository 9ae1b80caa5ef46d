"""Where the embedded broker's logins live, and that they stay private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from daemon.frontends.mqtt.credentials import CredentialsError, load, load_or_create, state_dir


def test_the_state_directory_is_systemds_else_xdgs_else_under_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert state_dir() == tmp_path / "home" / ".local" / "state" / "tektra"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "tektra"
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/tektra")
    assert state_dir() == Path("/var/lib/tektra")


def test_first_start_makes_two_random_logins_kept_0600_in_a_0700_directory(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "tektra"
    directory.mkdir(mode=0o755)  # as systemd's StateDirectory= makes it
    made = load_or_create(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "mqtt-credentials.json").stat().st_mode) == 0o600
    assert (made.daemon.username, made.user.username) == ("tektra-daemon", "tektra")
    assert made.daemon.password != made.user.password
    assert load_or_create(directory) == made == load(directory)
    assert load_or_create(tmp_path / "other").user.password != made.user.password


def test_logins_others_could_read_are_refused(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    (tmp_path / "mqtt-credentials.json").chmod(0o644)
    with pytest.raises(CredentialsError, match=r"is not private .* delete it and restart"):
        load_or_create(tmp_path)


def test_no_logins_yet_says_how_they_are_made(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="`tektra run` makes them at its first start"):
        load(tmp_path)
