"""`tektra doctor` as a user runs it: a real process against a real daemon, broker and sound
server, one line per finding, exit status 1 on any problem."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.service.doctor import Check, Finding, examine, ok
from tests.daemon.conftest import (
    ROOT,
    TEKTRA,
    Daemon,
    Mosquitto,
    echo_config,
    free_port,
    wait_for_port,
)
from tests.pipelines.conftest import Pulse


def doctor(config: Path, site: Path, tmp_path: Path, **env: str) -> tuple[int, dict[str, str]]:
    """Run `tektra doctor`; its exit status and its findings by subject (the whole line each)."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        # The test's own state (broker logins), unit directory and sound server (none, unless
        # the test gives one): nothing of the machine's leaks in.
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_RUNTIME_DIR": str(tmp_path / "no-sound-server"),
        **env,
    }
    environment.pop("PULSE_SERVER", None)
    done = subprocess.run(
        [TEKTRA, "doctor", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=180,
        env=environment,
    )
    findings = {}
    for line in done.stdout.splitlines():
        subject = line[9:].split(":", 1)[0]
        assert subject not in findings, f"two findings about {subject}:\n{done.stdout}"
        findings[subject] = line
    return done.returncode, findings


def write(
    tmp_path: Path,
    short_dir: Path,
    mqtt: str,
    *,
    extra: str = "",
    audio: str = "none",
    tts: str = 'engine = "none"',
):
    config = tmp_path / "models.toml"
    text = echo_config(short_dir / "tektra.sock", mqtt, extra=extra, audio=audio, tts=tts)
    config.write_text(text)
    return config


def test_a_healthy_setup_passes_every_check_with_one_line_each(
    make_daemon: Callable[..., Daemon], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    daemon = make_daemon(f'broker = "{mosquitto.url}"')
    code, found = doctor(daemon.config, daemon.site, tmp_path)
    assert code == 0, "\n".join(found.values())
    assert found["daemon"] == f"ok       daemon: running, socket {daemon.socket}, state idle"
    assert found["socket"] == f"ok       socket: {daemon.socket.parent} is private to this user"
    assert found["audio input"] == '-        audio input: not used ([audio] source = "none")'
    assert found["camera"] == '-        camera: not configured ([camera] source = "none")'
    assert found["model 'echo'"] == "ok       model 'echo': path source found"
    assert found["model 'parrot'"] == "ok       model 'parrot': path source found"
    assert found["backend recorder"] == "ok       backend recorder: healthy"
    assert found["backend llama_cpp"] == "-        backend llama_cpp: no model uses it"
    assert found["MQTT broker"] == (
        f"ok       MQTT broker: the broker at 127.0.0.1:{mosquitto.port} accepts the configured "
        "login"
    )
    assert found["service unit"] == (
        "-        service unit: none installed (`tektra service install --user` adds one)"
    )
    assert daemon.stop() == 0


def test_a_missing_model_file_is_named_with_its_key_and_the_fix(
    tmp_path: Path, short_dir: Path, plugin_site: Path
) -> None:
    config = write(tmp_path, short_dir, 'broker = "none"')
    config.write_text(
        config.read_text().replace('path = "models.toml"', 'path = "/no/ghost.gguf"', 1)
    )
    code, found = doctor(config, plugin_site, tmp_path)
    assert code == 1
    assert found["configuration"] == (
        "problem  configuration: models[0].source.path: file not found: /no/ghost.gguf — fix: "
        f"put the file there, or correct models[0].source.path in {config}"
    )
    assert (
        found["other checks"] == "-        other checks: not run: they need a valid configuration"
    )


def test_an_unreachable_broker_is_a_problem(
    tmp_path: Path, short_dir: Path, plugin_site: Path
) -> None:
    port = free_port()  # nothing listens there
    config = write(tmp_path, short_dir, f'broker = "mqtt://127.0.0.1:{port}"')
    code, found = doctor(config, plugin_site, tmp_path)
    assert code == 1
    assert found["MQTT broker"] == (
        f"problem  MQTT broker: cannot connect to the broker at 127.0.0.1:{port}: [Errno 111] "
        "Connection refused — fix: start the broker, or fix [mqtt] broker"
    )
    assert found["daemon"] == (
        f"problem  daemon: not running (nothing listens on {short_dir / 'tektra.sock'}) — fix: "
        "tektra run, or start the service (systemctl start tektra)"
    )


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[int]:
    """A mosquitto that wants the login tester / right-password."""
    workdir = tmp_path / "password-broker"
    workdir.mkdir()
    passwords = workdir / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "tester", "right-password"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous false", f"password_file {passwords}"]
    if os.geteuid() == 0:
        lines.append("user root")
    (workdir / "mosquitto.conf").write_text("\n".join(lines) + "\n")
    with (workdir / "mosquitto.log").open("ab") as log:
        process = subprocess.Popen(
            ["mosquitto", "-c", str(workdir / "mosquitto.conf")], stdout=log, stderr=log
        )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("right-password", "ok       MQTT broker: the broker at 127.0.0.1:{port} accepts the "
         "configured login"),
        ("wrong-password", "problem  MQTT broker: the broker at 127.0.0.1:{port} refused the "
         "login 'tester' (wrong username or password?) — fix: set the broker's password in "
         "[mqtt] password_env or password_file, and [mqtt] username"),
    ],
)  # fmt: skip
def test_the_broker_is_tried_with_the_configured_login(
    tmp_path: Path,
    short_dir: Path,
    plugin_site: Path,
    password_broker: int,
    secret: str,
    expected: str,
) -> None:
    mqtt = (
        f'broker = "mqtt://127.0.0.1:{password_broker}"\nusername = "tester"\n'
        'password_env = "TEKTRA_TEST_MQTT_PASSWORD"'
    )
    config = write(tmp_path, short_dir, mqtt)
    _, found = doctor(config, plugin_site, tmp_path, TEKTRA_TEST_MQTT_PASSWORD=secret)
    assert found["MQTT broker"] == expected.format(port=password_broker)


def test_an_unsafe_socket_directory_is_named_with_the_command_that_fixes_it(
    tmp_path: Path, short_dir: Path, plugin_site: Path
) -> None:
    open_dir = short_dir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    config = tmp_path / "models.toml"
    config.write_text(echo_config(open_dir / "tektra.sock", 'broker = "none"'))
    code, found = doctor(config, plugin_site, tmp_path)
    assert code == 1
    assert found["socket"] == (
        f"problem  socket: the socket directory {open_dir} is not safe: its mode 0777 lets other "
        "users in (it must be 0700, or 0750 with socket_group). Remove it, or set [daemon] socket "
        f"to a path in a directory only this user can write — fix: chmod 700 {open_dir}"
    )


@pytest.mark.integration
def test_the_microphone_is_found_on_a_sound_server_and_missing_on_a_headless_machine(
    tmp_path: Path, short_dir: Path, plugin_site: Path, pulse: Pulse
) -> None:
    config = write(tmp_path, short_dir, 'broker = "none"', audio="auto")
    sound = {"XDG_RUNTIME_DIR": pulse.env["XDG_RUNTIME_DIR"], "HOME": pulse.env["HOME"]}
    _, with_pulse = doctor(config, plugin_site, tmp_path, **sound)
    assert with_pulse["audio input"].startswith("ok       audio input: "), with_pulse
    assert with_pulse["audio output"].startswith("ok       audio output: "), with_pulse

    _, headless = doctor(config, plugin_site, tmp_path)
    assert headless["audio input"] == (
        "problem  audio input: no input device found (a headless machine?) — fix: set [audio] "
        f'source = "none" in {config} (audio then comes only from clients)'
    )
    assert headless["audio output"] == (
        '-        audio output: not used ([tts] engine or output is "none")'
    )
    # A daemon that is to speak needs a device to speak through.
    speaking = write(tmp_path, short_dir, 'broker = "none"', audio="auto", tts='engine = "espeak"')
    _, mute = doctor(speaking, plugin_site, tmp_path)
    assert mute["audio output"] == (
        "problem  audio output: no output device found: spoken replies cannot be heard — fix: "
        f'set [tts] output = "none" in {speaking} (answers then come only as text)'
    )


def test_an_installed_unit_is_verified_and_a_broken_one_names_the_reinstall(
    tmp_path: Path, short_dir: Path, plugin_site: Path
) -> None:
    config = write(tmp_path, short_dir, 'broker = "none"')
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg-config")}
    subprocess.run(
        [TEKTRA, "service", "install", "--user", "--config", str(config)],
        check=True,
        capture_output=True,
        env=env,
    )
    unit = tmp_path / "xdg-config/systemd/user/tektra.service"
    subject = f"user unit {unit}"
    _, found = doctor(config, plugin_site, tmp_path)
    assert found[subject] == f"ok       {subject}: installed; systemd-analyze verify passes"

    text = unit.read_text()
    unit.write_text(text.replace("ExecStart=", "ExecStart=/no/such/tektra ", 1))
    code, found = doctor(config, plugin_site, tmp_path)
    assert code == 1
    assert found[subject].startswith(f"problem  {subject}: systemd-analyze verify: ")
    assert "/no/such/tektra" in found[subject]
    assert found[subject].endswith(f"— fix: tektra service install --user --config {config}")


async def test_a_check_slower_than_a_second_says_what_it_is_checking_first() -> None:
    async def slow() -> list[Finding]:
        await asyncio.sleep(0.3)
        return [ok("slow thing", "fine")]

    async def quick() -> list[Finding]:
        return [ok("quick thing", "fine")]

    out, progress = io.StringIO(), io.StringIO()
    checks = [Check("the quick thing", "quick thing", quick), Check("the slow thing", "s", slow)]
    await examine(checks, out, progress, progress_after_s=0.05)
    assert progress.getvalue() == "checking the slow thing …\n"
    assert out.getvalue() == "ok       quick thing: fine\nok       slow thing: fine\n"


async def test_a_check_that_hangs_is_a_problem_and_the_others_still_run() -> None:
    async def hangs() -> list[Finding]:
        await asyncio.Event().wait()
        return []

    async def quick() -> list[Finding]:
        return [ok("quick thing", "fine")]

    out = io.StringIO()
    checks = [Check("the camera", "camera", hangs), Check("the quick thing", "quick thing", quick)]
    found = await examine(checks, out, io.StringIO(), progress_after_s=0.05, timeout_s=0.2)
    assert [f.status for f in found] == ["problem", "ok"]
    assert found[0].line() == (
        "problem  camera: no answer within 0.2 s while checking the camera — fix: find what hangs "
        "there (a device or server that does not answer)"
    )


def test_the_embedded_broker_is_tried_with_the_users_login_while_the_daemon_runs_it(
    make_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    port = free_port()
    daemon = make_daemon(f'broker = "embedded"\nembedded_port = {port}')
    code, found = doctor(daemon.config, daemon.site, tmp_path)
    assert found["MQTT broker"] == (
        f"ok       MQTT broker: the embedded broker at 127.0.0.1:{port} accepts the configured "
        "login"
    )
    assert code == 0, "\n".join(found.values())
    assert daemon.stop() == 0

    _, found = doctor(daemon.config, daemon.site, tmp_path)
    assert found["MQTT broker"] == (
        "-        MQTT broker: embedded: it runs inside the daemon, which is not running"
    )


def test_a_configured_camera_is_read_once_and_one_that_gives_nothing_is_a_problem(
    tmp_path: Path, short_dir: Path, plugin_site: Path
) -> None:
    working = ROOT / "fixtures/video/red.avi"
    extra = f'[camera]\nsource = "{working}"\n'
    config = write(tmp_path, short_dir, 'broker = "none"', extra="")
    config.write_text(config.read_text() + extra)
    _, found = doctor(config, plugin_site, tmp_path)
    assert found["camera"].startswith(f"ok       camera: '{working}': ")
    assert found["camera"].endswith(" frames")

    config.write_text(config.read_text().replace(str(working), "/no/camera.avi"))
    code, found = doctor(config, plugin_site, tmp_path)
    assert code == 1
    assert found["camera"] == (
        "problem  camera: '/no/camera.avi' gave no frame — fix: check the device or URL in "
        "[camera] source"
    )
