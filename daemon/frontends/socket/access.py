"""Who may use the local socket: where it lives, the directory it needs, and the peer check.

A socket's file mode guards nothing if someone else owns, or may write in, its directory: they can
unlink the socket and bind their own, and every client then talks to theirs. So the directory must
be ours and closed to other users, and every peer is also checked by its uid (SO_PEERCRED), which
no file mode can widen by mistake.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from daemon.core.config.schema import DaemonSettings
from daemon.core.errors import TektraError

log = logging.getLogger("tektra.socket")

ADVICE = "set [daemon] socket to a path in a directory only this user can write"


SYSTEM_SOCKET = Path("/run/tektra/tektra.sock")
"""The system service's socket: the CLI's fallback when this user runs no daemon."""


class UnsafeSocketDir(TektraError):
    """The socket's directory is not ours alone, or there is no private place for it."""

    code = "unsafe_socket_dir"


def socket_path(settings: DaemonSettings) -> Path:
    """`[daemon].socket`, else systemd's `$RUNTIME_DIRECTORY/tektra.sock`, else
    `$XDG_RUNTIME_DIR/tektra/tektra.sock`, else `/run/tektra/tektra.sock` as root, else
    `~/.local/state/tektra/tektra.sock`. Never a shared place such as /tmp, where another user
    could create the directory first."""
    if settings.socket:
        return Path(settings.socket).expanduser()
    if os.environ.get("RUNTIME_DIRECTORY"):  # systemd's RuntimeDirectory= (the system unit)
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0]) / "tektra.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "tektra/tektra.sock"
    if os.geteuid() == 0:
        return Path("/run/tektra/tektra.sock")
    try:
        home = Path.home()
    except RuntimeError:  # no $HOME and no password entry
        home = Path("~")
    if not home.is_dir():
        raise UnsafeSocketDir(
            "no private place for the socket: $XDG_RUNTIME_DIR is not set and the home "
            f"directory {home} does not exist; {ADVICE}"
        )
    return home / ".local/state/tektra/tektra.sock"


def prepare_directory(path: Path, group_gid: int | None) -> None:
    """Create the socket's directory 0700 (0750 and `group_gid` with a socket group), or check
    that an existing one is ours and closed to others; refuse (UnsafeSocketDir) saying why."""
    directory = path.parent
    if not os.path.lexists(directory):
        try:
            directory.mkdir(parents=True, mode=0o700)
            if group_gid is not None:
                os.chown(directory, -1, group_gid)
                os.chmod(directory, 0o750)
        except OSError as exc:
            raise UnsafeSocketDir(
                f"cannot make the socket directory {directory}: {exc.strerror}; {ADVICE}"
            ) from exc
        return
    try:
        problems = _foreign_link(directory) or _problems(directory, group_gid)
    except OSError as exc:  # e.g. a link the kernel will not follow for us
        problems = [f"it cannot be examined ({exc.strerror})"]
    if problems:
        raise UnsafeSocketDir(
            f"the socket directory {directory} is not safe: {'; '.join(problems)}. "
            f"Remove it, or {ADVICE}"
        )


def _problems(directory: Path, group_gid: int | None) -> list[str]:
    """What makes an existing directory unfit to hold our socket (nothing: an empty list)."""
    info = directory.stat()
    problems = []
    me = os.geteuid()
    if info.st_uid != me:
        problems.append(f"it belongs to {_user(info.st_uid)}, not to {_user(me)}")
    # Group members may enter with a socket group, or when the group is our own (systemd's
    # RuntimeDirectoryMode=0750 with the service's Group=).
    group_may_enter = group_gid is not None or info.st_gid == os.getegid()
    allowed = 0o750 if group_may_enter else 0o700
    mode = stat.S_IMODE(info.st_mode)
    if mode & ~allowed & 0o777:
        problems.append(
            f"its mode {mode & 0o777:04o} lets other users in "
            "(it must be 0700, or 0750 with socket_group)"
        )
    problems += _open_ancestors(directory)
    if not problems and group_gid is not None and (info.st_gid != group_gid or not mode & 0o010):
        log.warning(
            "the socket group cannot reach the socket: its directory %s is not open to it "
            "(make it mode 0750 and of that group)",
            directory,
        )
    return problems


def check_before_connecting(path: Path) -> None:
    """A client's side of the same rule: never talk to a socket in a directory that others may
    write in, or that someone else made where anyone may create folders (whoever listens there
    may be an impostor). Raises UnsafeSocketDir saying why."""
    directory = path.parent
    problems = []
    try:
        info = directory.stat()
        planted = directory.resolve().parent.stat().st_mode & stat.S_IWOTH
        if info.st_uid not in (os.geteuid(), 0) and planted:
            owner = _user(info.st_uid)
            problems.append(f"it belongs to {owner} and lies in a folder anyone may write")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o022:
            problems.append(f"its mode {mode & 0o777:04o} lets other users write in it")
        problems += _foreign_link(directory) + _open_ancestors(directory)
    except OSError:
        return  # nothing there to talk to; connecting says so
    if problems:
        raise UnsafeSocketDir(
            f"will not talk to the daemon at {path}: its directory is not safe: "
            f"{'; '.join(problems)}. Remove it, or {ADVICE}"
        )


def _foreign_link(directory: Path) -> list[str]:
    """A symbolic link someone else made can be pointed elsewhere later, whatever it shows now."""
    link = directory.lstat()
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (os.geteuid(), 0):
        return [f"it is a link made by {_user(link.st_uid)}"]
    return []


def _open_ancestors(directory: Path) -> list[str]:
    """Folders above ours where anyone may rename or replace entries (no sticky bit)."""
    problems = []
    for folder in directory.resolve().parents:
        mode = folder.stat().st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            problems.append(f"anyone may replace it: {folder} is writable by all")
    return problems


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "no such user"


def group_id(name: str | None) -> int | None:
    if name is None:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError as exc:
        raise TektraError(f"[daemon] socket_group: no group named '{name}'") from exc


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of a connection, as the kernel saw it at connect time."""

    pid: int
    uid: int


def peer_of(sock: socket.socket) -> Peer | None:
    """The peer's credentials; None where the system has no SO_PEERCRED (then only the file
    modes guard the socket)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", raw)
    return Peer(pid, uid)


class PeerCheck:
    """Serves our own uid and root and, with a socket group, the users in that group."""

    def __init__(self, group: str | None) -> None:
        self.group = group
        self.gid = group_id(group)
        if getattr(socket, "SO_PEERCRED", None) is None:
            log.warning("this system cannot tell who connects; only the socket's mode guards it")

    async def refusal(self, peer: Peer | None) -> str | None:
        """None if `peer` may be served, else why not (for the log)."""
        if peer is None or peer.uid in (os.geteuid(), 0):
            return None
        # Group lookups may ask a directory service: off the loop.
        member = await asyncio.to_thread(self._is_member, peer.uid)
        if member:
            return None
        who = f"uid {peer.uid} ({await asyncio.to_thread(_name, peer.uid)})"
        if self.group is None:
            return f"pid {peer.pid}, {who}: not this daemon's user and no socket_group"
        return f"pid {peer.pid}, {who}: not this daemon's user nor in group '{self.group}'"

    def _is_member(self, uid: int) -> bool:
        if self.gid is None:
            return False
        try:
            user = pwd.getpwuid(uid)
        except KeyError:
            return False
        return self.gid in (user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid))
