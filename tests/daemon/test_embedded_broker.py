"""The daemon with its embedded broker, as a user meets it: README's commands answered while
someone watches, a login required (and printed by `tektra mqtt credentials`), a taken port
refused in words that name it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.daemon.conftest import ROOT, TEKTRA, Daemon, Mosquitto, free_port, mqtt_login
from tests.daemon.mqtt_clients import Login, mosquitto_pub

BASE = "tektra/testnode"


@contextmanager
def mosquitto_sub(port: int, login: Login | None, topic: str, out: Path) -> Iterator[Path]:
    """README's `mosquitto_sub -t 'tektra/#' -v &`, its output in `out`."""
    credentials = ["-u", login.username, "-P", login.password] if login else []
    command = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), *credentials, "-t", topic]
    with out.open("wb") as sink:
        process = subprocess.Popen([*command, "-v"], stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield out
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for_lines(out: Path, condition: Callable[[list[str]], bool], what: str) -> list[str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lines = out.read_text(errors="replace").splitlines()
        if condition(lines):
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within 20 s; mosquitto_sub printed:\n{out.read_text()}")


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within 30 s"
        time.sleep(0.05)


def replies(lines: list[str]) -> list[dict[str, object]]:
    prefix = f"{BASE}/reply "
    return [json.loads(line[len(prefix) :]) for line in lines if line.startswith(prefix)]


def credentials_cli(daemon: Daemon) -> subprocess.CompletedProcess[str]:
    """`tektra mqtt credentials`, with the daemon's environment."""
    env = {**os.environ, **daemon.env, "PYTHONPATH": os.pathsep.join([str(daemon.site), str(ROOT)])}
    return subprocess.run(
        [TEKTRA, "mqtt", "credentials"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def embedded_daemon(make_daemon: Callable[..., Daemon], extra: str = "") -> tuple[Daemon, int]:
    port = free_port()
    daemon = make_daemon(f'broker = "embedded"\nembedded_port = {port}\n{extra}')
    return daemon, port


@pytest.mark.parametrize("broker", ["embedded", "mosquitto"])
def test_readme_status_commands_are_all_answered_while_tektra_hash_is_watched(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto, tmp_path: Path, broker: str
) -> None:
    if broker == "embedded":
        daemon, port = embedded_daemon(make_daemon)
        login: Login | None = Login(*mqtt_login(daemon))
    else:
        daemon, port, login = make_daemon(f'broker = "{mosquitto.url}"'), mosquitto.port, None
    with mosquitto_sub(port, login, "tektra/#", tmp_path / "watch.txt") as out:
        wait_for_lines(out, lambda lines: f"{BASE}/status online" in lines, "the retained status")
        for n in range(1, 6):
            sent = mosquitto_pub(port, login, f"{BASE}/command/status", "-m", f'{{"id": {n}}}')
            assert sent.returncode == 0, sent.stderr
        lines = wait_for_lines(out, lambda lines: len(replies(lines)) >= 5, "5 replies")
    assert sorted(str(reply["id"]) for reply in replies(lines)) == ["1", "2", "3", "4", "5"]
    assert {reply["command"] for reply in replies(lines)} == {"status"}
    assert daemon.stop() == 0


def test_first_start_makes_private_logins_and_tektra_mqtt_credentials_prints_the_users(
    make_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    daemon, _ = embedded_daemon(make_daemon)
    state = tmp_path / "state" / "tektra"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "mqtt-credentials.json").stat().st_mode) == 0o600
    kept = json.loads((state / "mqtt-credentials.json").read_text())
    username, password = kept["user"]["username"], kept["user"]["password"]
    printed = credentials_cli(daemon)
    assert (printed.returncode, printed.stdout) == (
        0,
        f"username={username}\npassword={password}\n",
    )
    assert username == "tektra" and len(password) >= 24 and password != kept["daemon"]["password"]
    assert daemon.stop() == 0
    daemon.start(wait=False)  # a restart keeps the logins people have configured
    wait_until(lambda: daemon.log.count(" ready (config ") == 2, "the second start")
    assert mqtt_login(daemon) == (username, password)
    assert daemon.stop() == 0


@pytest.mark.parametrize(
    "login", [None, Login("tektra", "not-the-password"), Login("guest", "guest")], ids=str
)
def test_a_client_without_the_login_cannot_command_the_daemon(
    make_daemon: Callable[..., Daemon], tmp_path: Path, login: Login | None
) -> None:
    daemon, port = embedded_daemon(make_daemon)
    user = Login(*mqtt_login(daemon))
    with mosquitto_sub(port, user, "tektra/#", tmp_path / "watch.txt") as out:
        wait_for_lines(out, lambda lines: f"{BASE}/status online" in lines, "the retained status")
        refused = mosquitto_pub(port, login, f"{BASE}/command/status", "-m", '{"id": "x"}')
        assert refused.returncode != 0
        assert "not authorised" in refused.stderr
        sent = mosquitto_pub(port, user, f"{BASE}/command/status", "-m", '{"id": "ok"}')
        assert sent.returncode == 0, sent.stderr
        lines = wait_for_lines(out, lambda lines: len(replies(lines)) >= 1, "the reply")
    assert [reply["id"] for reply in replies(lines)] == ["ok"]
    assert f"refused: {'no login' if login is None else 'wrong login'}" in daemon.log
    assert daemon.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root")
def test_another_local_user_can_neither_read_the_login_nor_command_the_daemon(
    make_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    daemon, port = embedded_daemon(make_daemon)
    as_nobody = ["runuser", "-u", "nobody", "--"]
    kept = tmp_path / "state" / "tektra" / "mqtt-credentials.json"
    reading = subprocess.run([*as_nobody, "cat", str(kept)], capture_output=True, text=True)
    assert reading.returncode != 0 and "password" not in reading.stdout
    commanding = subprocess.run(
        [
            *as_nobody,
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            f"{BASE}/command/mute",
            "-m",
            "{}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert commanding.returncode != 0 and "not authorised" in commanding.stderr
    assert daemon.stop() == 0


def test_allow_anonymous_lets_clients_without_a_login_command_the_daemon(
    make_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    daemon, port = embedded_daemon(make_daemon, "allow_anonymous = true\n")
    with mosquitto_sub(port, None, "tektra/#", tmp_path / "watch.txt") as out:
        wait_for_lines(out, lambda lines: f"{BASE}/status online" in lines, "the retained status")
        sent = mosquitto_pub(port, None, f"{BASE}/command/status", "-m", '{"id": "anon"}')
        assert sent.returncode == 0, sent.stderr
        lines = wait_for_lines(out, lambda lines: len(replies(lines)) >= 1, "the reply")
    assert [reply["id"] for reply in replies(lines)] == ["anon"]
    assert daemon.stop() == 0


def test_an_embedded_port_already_in_use_is_an_error_naming_the_port(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto
) -> None:
    daemon = make_daemon(f'broker = "embedded"\nembedded_port = {mosquitto.port}', start=False)
    daemon.start(wait=False)
    assert daemon.process is not None
    assert daemon.process.wait(timeout=30) == 1
    assert (
        f"error [embedded_broker]: port {mosquitto.port} on 127.0.0.1 is already in use "
        "(another MQTT broker?), so the embedded broker cannot start: set [mqtt] embedded_port "
        'to a free port, or [mqtt] broker = "mqtt://HOST:PORT" to use that broker\n'
    ) in daemon.log
    assert "connected to the MQTT broker" not in daemon.log
    assert "Traceback" not in daemon.log


def test_the_embedded_broker_listens_on_bind_only(make_daemon: Callable[..., Daemon]) -> None:
    daemon, port = embedded_daemon(make_daemon, 'bind = "127.0.0.2"\n')
    login = Login(*mqtt_login(daemon))
    command = ["mosquitto_sub", "-p", str(port), "-u", login.username, "-P", login.password]
    command += ["-t", f"{BASE}/status", "-C", "1"]
    there = subprocess.run(
        [*command, "-h", "127.0.0.2"], capture_output=True, text=True, timeout=30
    )
    assert (there.returncode, there.stdout) == (0, "online\n")  # the daemon's link got there too
    elsewhere = subprocess.run(
        [*command, "-h", "127.0.0.1"], capture_output=True, text=True, timeout=30
    )
    assert elsewhere.returncode != 0 and "refused" in elsewhere.stderr.lower()
    assert daemon.stop() == 0
