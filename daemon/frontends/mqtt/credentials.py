"""The embedded broker's two logins: one for the daemon's own link, one for the user.

Made at the first start with random passwords and kept in the state directory (0700), in a file
only its owner can read (0600): whoever can read it can command the daemon, so the file's mode is
the guard, exactly as for the socket. `tektra mqtt credentials` prints the user's login.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from daemon.core.errors import TektraError

FILE_NAME = "mqtt-credentials.json"
DAEMON_USER = "tektra-daemon"
USER = "tektra"


class CredentialsError(TektraError):
    code = "mqtt_credentials"


@dataclass(frozen=True)
class Login:
    username: str
    password: str


@dataclass(frozen=True)
class Credentials:
    daemon: Login
    """What the daemon's own MQTT link presents."""
    user: Login
    """What people and their tools (mosquitto_sub, Home Assistant, Node-RED) present."""

    def logins(self) -> dict[str, str]:
        return {
            self.daemon.username: self.daemon.password,
            self.user.username: self.user.password,
        }


def state_dir() -> Path:
    """systemd's `$STATE_DIRECTORY`, else `$XDG_STATE_HOME/tektra`, else `~/.local/state/tektra`."""
    systemd = os.environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])  # several directories are `:`-separated; ours is first
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / "tektra"


def load_or_create(directory: Path | None = None) -> Credentials:
    """The logins kept in `directory`, made (with random passwords) when there are none yet."""
    directory = directory or state_dir()
    _private_directory(directory)
    path = directory / FILE_NAME
    if not path.exists():
        _create(path)
    return load(directory)


def load(directory: Path | None = None) -> Credentials:
    """The logins kept in `directory`; an error saying how to make them when there are none."""
    path = (directory or state_dir()) / FILE_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise CredentialsError(
            f"no MQTT credentials in {path.parent} yet: `tektra run` makes them at its first start "
            "(for the system service, read them as its user with STATE_DIRECTORY=/var/lib/tektra)"
        ) from None
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror}") from exc
    with os.fdopen(fd, encoding="utf-8") as file:
        info = os.fstat(file.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise CredentialsError(
                f"{path} is not private (it must be ours and mode 0600): others may have read it; "
                "delete it and restart the daemon to get new passwords"
            )
        try:
            data = json.load(file)
            return Credentials(Login(**data["daemon"]), Login(**data["user"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CredentialsError(
                f"{path} is damaged; delete it and restart the daemon to get new passwords"
            ) from exc


def _private_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.geteuid():
        raise CredentialsError(
            f"{directory} belongs to another user; the daemon keeps secrets there"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        directory.chmod(0o700)  # ours, e.g. made by systemd's StateDirectory= with mode 0755


def _create(path: Path) -> None:
    data = {
        "daemon": {"username": DAEMON_USER, "password": secrets.token_urlsafe(24)},
        "user": {"username": USER, "password": secrets.token_urlsafe(24)},
    }
    # Written under a temporary name and linked into place: a reader never sees half a file, and
    # two daemons starting at once keep the first one's passwords (link fails if it exists).
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
