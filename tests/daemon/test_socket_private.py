"""The local socket serves only its owner (and `socket_group`): the directory it lives in must be
ours, and every peer is checked with SO_PEERCRED, because file modes alone were the only guard.

Other users are played by real processes run as `nobody` / `daemon` through `setpriv`.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.core.config.schema import DaemonSettings
from daemon.core.errors import TektraError
from daemon.frontends.socket.server import socket_path
from tests.daemon.conftest import ROOT, TEKTRA, Daemon, SocketClient

NOBODY = pwd.getpwnam("nobody")
IS_ROOT = os.geteuid() == 0
AS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0, reason="playing another local user (setpriv) needs root"
)


def wait_exit(daemon: Daemon, timeout_s: float = 30.0) -> int:
    assert daemon.process is not None
    return daemon.process.wait(timeout=timeout_s)


def ask_status_as(user: str, group: str, sock: Path) -> list[dict[str, Any]]:
    """Send one `status` request from a process running as `user:group` (no other groups);
    every line the daemon sends back before it closes the connection."""
    result = subprocess.run(
        [
            "setpriv",
            f"--reuid={user}",
            f"--regid={group}",
            "--clear-groups",
            "socat",
            "-t",
            "5",
            "-",
            f"UNIX-CONNECT:{sock}",
        ],
        input=b'{"id": 1, "cmd": "status"}\n',
        capture_output=True,
        timeout=30,
        check=False,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def open_to_everyone(daemon: Daemon) -> None:
    """What the issue found: the file mode was the only guard. Open it, so only the peer check
    stands between another user and the daemon."""
    os.chmod(daemon.socket.parent, 0o711)
    os.chmod(daemon.socket, 0o666)


def runtime_dir_with_a_foreign_tektra(short_dir: Path) -> Path:
    """A shared runtime directory (1777) where another user pre-created `tektra/` with 0777."""
    shared = short_dir / "runtime"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    planted = shared / "tektra"
    planted.mkdir()
    os.chmod(planted, 0o777)
    if os.geteuid() == 0:
        os.chown(planted, NOBODY.pw_uid, NOBODY.pw_gid)
    return shared


async def test_a_socket_directory_another_user_planted_is_refused_with_the_reason(
    make_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    shared = runtime_dir_with_a_foreign_tektra(short_dir)
    daemon = make_daemon('broker = "none"', start=False)
    config = daemon.config.read_text().replace(f'socket = "{daemon.socket}"\n', "")
    daemon.config.write_text(config)
    daemon.env.update(XDG_RUNTIME_DIR=str(shared), RUNTIME_DIRECTORY="")
    daemon.start(wait=False)

    assert wait_exit(daemon) == 1
    planted = shared / "tektra"
    owner = "nobody (uid 65534)" if os.geteuid() == 0 else None
    me = f"{pwd.getpwuid(os.geteuid()).pw_name} (uid {os.geteuid()})"
    problems = [f"it belongs to {owner}, not to {me}"] if owner else []
    problems.append(
        "its mode 0777 lets other users in (it must be 0700, or 0750 with socket_group)"
    )
    assert (
        f"error [unsafe_socket_dir]: the socket directory {planted} is not safe: "
        f"{'; '.join(problems)}. Remove it, or set [daemon] socket to a path in a directory "
        "only this user can write" in daemon.log
    )
    assert "Traceback" not in daemon.log
    assert os.listdir(planted) == []  # nothing of ours was put where the other user can reach


async def test_a_socket_directory_of_ours_with_a_wide_mode_is_refused(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', start=False)
    os.chmod(daemon.socket.parent, 0o755)
    daemon.start(wait=False)

    assert wait_exit(daemon) == 1
    assert (
        f"the socket directory {daemon.socket.parent} is not safe: its mode 0755 lets other "
        "users in (it must be 0700, or 0750 with socket_group)" in daemon.log
    )


async def test_a_new_socket_directory_is_created_private(
    make_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    daemon = make_daemon('broker = "none"', start=False)
    sock = short_dir / "new" / "tektra.sock"
    daemon.config.write_text(daemon.config.read_text().replace(str(daemon.socket), str(sock)))
    daemon.socket = sock
    daemon.start()
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    assert daemon.stop() == 0


def test_without_a_runtime_directory_the_socket_goes_under_the_home_not_tmp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert socket_path(DaemonSettings()) == tmp_path / ".local/state/tektra/tektra.sock"
    monkeypatch.setenv("HOME", "/nonexistent")
    with pytest.raises(TektraError) as refused:
        socket_path(DaemonSettings())
    assert refused.value.message == (
        "no private place for the socket: $XDG_RUNTIME_DIR is not set and the home directory "
        "/nonexistent does not exist; set [daemon] socket to a path in a directory only this "
        "user can write"
    )


@AS_ROOT
async def test_another_user_is_refused_even_when_the_file_mode_lets_them_connect(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"')
    open_to_everyone(daemon)

    replies = ask_status_as("nobody", "nogroup", daemon.socket)

    assert replies == [
        {
            "id": None,
            "error": {
                "code": "forbidden",
                "message": "this daemon serves only its own user and its socket_group",
            },
        }
    ]
    # The refusal is logged before the connection is closed.
    refusal = [line for line in daemon.log.splitlines() if "refused a socket client" in line]
    assert len(refusal) == 1
    assert refusal[0].endswith("uid 65534 (nobody): not this daemon's user and no socket_group")
    owner = await SocketClient.connect(daemon.socket)
    status = await owner.call({"id": 2, "cmd": "status"})
    assert status["result"]["state"] == "idle"
    await owner.close()
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log


@AS_ROOT
async def test_with_a_socket_group_its_members_are_served_and_others_refused(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon('broker = "none"', extra='socket_group = "nogroup"\n')
    open_to_everyone(daemon)

    member = ask_status_as("nobody", "nogroup", daemon.socket)  # nogroup is nobody's own group
    # uid `daemon` runs with gid nogroup here, so the file mode lets it in, but nogroup is not
    # one of its groups: it is refused.
    outsider = ask_status_as("daemon", "nogroup", daemon.socket)

    assert [reply["result"]["state"] for reply in member] == ["idle"]
    assert outsider == [
        {
            "id": None,
            "error": {
                "code": "forbidden",
                "message": "this daemon serves only its own user and its socket_group",
            },
        }
    ]
    assert daemon.stop() == 0
    assert "uid 1 (daemon): not this daemon's user nor in group 'nogroup'" in daemon.log


async def test_the_cli_will_not_talk_to_a_socket_in_a_directory_another_user_planted(
    make_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    shared = runtime_dir_with_a_foreign_tektra(short_dir)
    fake = shared / "tektra" / "tektra.sock"
    heard: list[bytes] = []

    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.append(await reader.readline())
        writer.write(b'{"id": 1, "result": {"state": "all is well, trust me"}}\n')
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(impostor, str(fake))
    daemon = make_daemon('broker = "none"', start=False)
    config = daemon.config.read_text().replace(f'socket = "{daemon.socket}"\n', "")
    daemon.config.write_text(config)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(shared), "RUNTIME_DIRECTORY": ""}
    env["PYTHONPATH"] = os.pathsep.join([str(daemon.site), str(ROOT)])
    async with server:
        cli = await asyncio.create_subprocess_exec(
            TEKTRA, "status", "--config", str(daemon.config), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(cli.communicate(), 60)

    assert (cli.returncode, out, heard) == (1, b"", [])
    owner = "nobody (uid 65534) and lies in a folder anyone may write; " if IS_ROOT else ""
    assert err.decode() == (
        f"error [unsafe_socket_dir]: will not talk to the daemon at {fake}: its directory is "
        f"not safe: {'it belongs to ' if IS_ROOT else ''}{owner}its mode 0777 lets other "
        "users write in it. Remove it, or set [daemon] socket to a path in a directory only "
        "this user can write\n"
    )


@AS_ROOT
async def test_a_socket_directory_linked_by_another_user_is_refused(
    make_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    # A link another user made in a shared folder, pointing (for now) at a private folder of ours.
    shared = short_dir / "runtime"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    ours = short_dir / "ours"
    ours.mkdir(mode=0o700)
    link = shared / "tektra"
    link.symlink_to(ours)
    os.lchown(link, NOBODY.pw_uid, NOBODY.pw_gid)
    daemon = make_daemon('broker = "none"', start=False)
    daemon.config.write_text(daemon.config.read_text().replace(f'socket = "{daemon.socket}"\n', ""))
    daemon.env.update(XDG_RUNTIME_DIR=str(shared), RUNTIME_DIRECTORY="")
    daemon.start(wait=False)

    assert wait_exit(daemon) == 1
    assert (
        f"the socket directory {link} is not safe: it is a link made by nobody (uid 65534)"
        in daemon.log
    )
