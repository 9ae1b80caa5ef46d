"""The checks `tektra doctor` runs, each returning its findings (see daemon/service/doctor.py).

Each check reuses the daemon's own rule for what it checks (model_sources for weights, the
registry's health checks, socket_access for the socket directory, service_install for the unit
paths), so the doctor never disagrees with the daemon about what is wrong.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import aiomqtt

from daemon.core.broker import broker_address, password, tls_context
from daemon.core.config.schema import TektraConfig
from daemon.core.errors import TektraError
from daemon.core.events import new_request_id
from daemon.core.sources import hf_cached, source_kind
from daemon.core.sources import problem as source_problem
from daemon.frontends.mqtt.credentials import load as load_credentials
from daemon.frontends.socket.access import ADVICE, group_id, prepare_directory
from daemon.frontends.socket.client import DaemonClient, DaemonError, DaemonUnreachable
from daemon.service.doctor import Check, Finding, ok, problem, skip
from daemon.service.install import plan
from pipelines.microphone import in_daemon_thread

NO_AUDIO_FIX = 'set [audio] source = "none" in {} (audio then comes only from clients)'
BACKEND_FIXES = {
    "llama_cpp": "pip install llama-cpp-python, or [backends.llama_cpp] enabled = false",
    "mistral_rs": "pip install mistralrs, or [backends.mistral_rs] enabled = false",
    "ollama": "start it (`ollama serve`), or set [backends.ollama] host / enabled = false",
    "openai": "start the server at [backends.openai] base_url, or set enabled = false",
}
LOGIN_REFUSED = {4, 5, 134, 135}  # MQTT 3.1.1 and 5 codes for a bad or unauthorised login


def all_checks(config: TektraConfig, path: Path, sock: Path) -> list[Check]:
    daemon: dict[str, Any] = {}  # the running daemon's status, for the broker check
    return [
        Check("the daemon", "daemon", lambda: _daemon(sock, daemon)),
        Check("the socket directory", "socket", lambda: asyncio.to_thread(_socket, config, sock)),
        Check("audio devices", "audio", lambda: _audio(config, path)),
        Check("the camera", "camera", lambda: _camera(config)),
        Check("model files", "models", lambda: _models(config, path)),
        Check("backends", "backends", lambda: _backends(config)),
        Check("the MQTT broker", "MQTT broker", lambda: _broker(config, daemon)),
        Check("the service unit", "service unit", lambda: _unit(path)),
    ]


async def _daemon(sock: Path, found: dict[str, Any]) -> list[Finding]:
    def status() -> dict[str, Any]:
        with DaemonClient(sock, timeout_s=10) as client:
            return client.call("status")

    try:
        found.update(await in_daemon_thread(status, timeout=15))
    except DaemonUnreachable:
        why = f"not running (nothing listens on {sock})"
        return [problem("daemon", why, "tektra run, or start the service (systemctl start tektra)")]
    except DaemonError as exc:
        return [problem("daemon", f"answered `status` with: {exc.message}", "see its log")]
    except TektraError as exc:  # its socket's directory is unsafe: the socket check says more
        return [problem("daemon", exc.message, ADVICE)]
    except OSError as exc:  # TimeoutError included
        return [problem("daemon", f"did not answer `status`: {exc}", "see its log")]
    findings = [ok("daemon", f"running, socket {sock}, state {found.get('state')}")]
    for name, why in (found.get("problems") or {}).items():
        findings.append(problem(f"daemon ({name})", str(why), "see `tektra status` and its log"))
    return findings


def _socket(config: TektraConfig, sock: Path) -> list[Finding]:
    directory = sock.parent
    if not directory.exists():
        return [ok("socket", f"{directory} does not exist yet; the daemon makes it private")]
    try:
        prepare_directory(sock, group_id(config.daemon.socket_group))
    except TektraError as exc:
        ours = directory.stat().st_uid == os.geteuid()
        fix = f"chmod 700 {directory}" if ours and _open_mode(directory) else ADVICE
        return [problem("socket", exc.message, fix)]
    if sock.exists():
        mode = stat.S_IMODE(sock.stat().st_mode)
        allowed = 0o660 if config.daemon.socket_group else 0o600
        if mode & ~allowed:
            why = f"{sock} has mode {mode:04o}; others may connect"
            return [problem("socket", why, "restart the daemon (it makes the socket again)")]
    return [ok("socket", f"{directory} is private to this user")]


def _open_mode(directory: Path) -> bool:
    return bool(directory.stat().st_mode & 0o077)


async def _audio(config: TektraConfig, path: Path) -> list[Finding]:
    source = config.audio.source
    if source.startswith("file:"):
        wav = Path(source[len("file:") :])
        if await asyncio.to_thread(wav.is_file):
            return [ok("audio input", f"the file {wav}")]
        return [problem("audio input", f"no file {wav}", f"fix [audio] source in {path}")]
    try:
        inputs, output = await in_daemon_thread(_query_devices, source)
    except OSError as exc:  # no PortAudio library at all
        why = f"no sound system: {exc}"
        if source == "none":
            return [skip("audio devices", why)]
        fix = f"install PortAudio (libportaudio2), or {NO_AUDIO_FIX.format(path)}"
        return [problem("audio devices", why, fix)]
    findings: list[Finding] = []
    if source == "none":
        findings.append(skip("audio input", 'not used ([audio] source = "none")'))
    elif isinstance(inputs, str):
        findings.append(ok("audio input", inputs))
    elif inputs is None:
        why = "no input device found (a headless machine?)"
        findings.append(problem("audio input", why, NO_AUDIO_FIX.format(path)))
    else:
        findings.append(problem("audio input", inputs[0], f"set [audio] source in {path}"))
    speaks = config.tts.engine != "none" and config.tts.output != "none"
    if output:
        findings.append(ok("audio output", output))
    elif not speaks:
        findings.append(skip("audio output", 'not used ([tts] engine or output is "none")'))
    else:
        why = "no output device found: spoken replies cannot be heard"
        fix = f'set [tts] output = "none" in {path} (answers then come only as text)'
        findings.append(problem("audio output", why, fix))
    return findings


def _query_devices(source: str) -> tuple[str | tuple[str] | None, str | None]:
    """Blocking (PortAudio enumerates devices): the input `source` names, as a description (a
    string), None when the machine has no input at all, or (why,) when it is not usable; and the
    default output's name, if any."""
    import sounddevice as sd  # type: ignore[import-untyped]

    devices = list(sd.query_devices())
    has_input = any(d["max_input_channels"] > 0 for d in devices)
    try:
        output: str | None = str(sd.query_devices(kind="output")["name"])
    except (sd.PortAudioError, ValueError):
        output = None
    if source == "none" or not has_input:
        return None, output
    try:
        if source == "auto":
            return f'"{sd.query_devices(kind="input")["name"]}" (the default)', output
        chosen = sd.query_devices(int(source) if source.isdigit() else source, kind="input")
    except (sd.PortAudioError, ValueError) as exc:
        return (f"{source!r} is not a usable input: {exc}",), output
    if chosen["max_input_channels"] < 1:
        return (f'"{chosen["name"]}" has no input channels',), output
    return f'"{chosen["name"]}"', output


async def _camera(config: TektraConfig) -> list[Finding]:
    source = config.camera.source
    if source == "none":
        return [skip("camera", 'not configured ([camera] source = "none")')]
    try:
        frame = await in_daemon_thread(_grab_frame, source, timeout=20)
    except TimeoutError:
        frame = None
    if frame is None:
        why = f"{source!r} gave no frame"
        return [problem("camera", why, "check the device or URL in [camera] source")]
    return [ok("camera", f"{source!r}: {frame}")]


def _grab_frame(source: str) -> str | None:
    from pipelines.camera import CameraReader

    reader = CameraReader(source, lambda _: None)
    capture = reader._open()  # the reader's own way of opening, timeouts included
    try:
        read, frame = capture.read()
        return f"{frame.shape[1]}x{frame.shape[0]} frames" if read else None
    finally:
        capture.release()


async def _models(config: TektraConfig, path: Path) -> list[Finding]:
    findings = []
    for i, model in enumerate(config.models):
        subject = f"model '{model.id}'"
        kind = source_kind(model.source)
        if kind in ("ollama", "served"):
            findings.append(ok(subject, f"{kind} source: the server holds the weights"))
            continue
        found = source_problem(model.source)
        if found is not None:
            fix = f"put the file there, or fix models[{i}].source.{found[0]} in {path}"
            findings.append(problem(subject, found[1], fix))
        elif kind == "hf" and await asyncio.to_thread(hf_cached, model.source) is None:
            why = f"{model.source.hf} is not downloaded yet"
            findings.append(problem(subject, why, f"tektra models pull {model.id}"))
        else:
            findings.append(ok(subject, f"{kind} source found"))
    return findings or [problem("models", "no [[models]] configured", f"add one to {path}")]


async def _backends(config: TektraConfig) -> list[Finding]:
    from daemon.models.manager.manager import UnifiedModelManager

    manager = UnifiedModelManager(config)
    # The backends a query may reach: a model's preferences, else the default order.
    used = {n for m in config.models for n in m.backend_preferences or config.backends.default}
    findings = []
    try:
        for name in manager.registry.names():
            subject = f"backend {name}"
            if not config.backends.enabled(name):
                findings.append(skip(subject, "disabled"))
                continue
            if name not in used:
                findings.append(skip(subject, "no model uses it"))
                continue
            fix = BACKEND_FIXES.get(
                name, f"reinstall its plugin, or [backends.{name}] enabled = false"
            )
            try:
                healthy = await asyncio.wait_for(manager.backend(name).health(), 15)
            except asyncio.TimeoutError:
                findings.append(problem(subject, "its health check did not answer in 15 s", fix))
                continue
            except TektraError as exc:
                findings.append(problem(subject, exc.message, fix))
                continue
            findings.append(
                ok(subject, "healthy") if healthy else problem(subject, "not available", fix)
            )
    finally:
        await manager.close()
    return findings


async def _broker(config: TektraConfig, daemon: dict[str, Any]) -> list[Finding]:
    settings, subject = config.mqtt, "MQTT broker"
    if settings.broker == "none":
        return [skip(subject, 'not used ([mqtt] broker = "none")')]
    embedded = settings.broker == "embedded"
    try:
        address = broker_address(settings)
        if embedded:
            if not daemon:
                return [skip(subject, "embedded: it runs inside the daemon, which is not running")]
            user = (await asyncio.to_thread(load_credentials)).user
            login: tuple[str | None, str | None] = (user.username, user.password)
            tls = None
        else:
            login = (settings.username, password(settings))
            tls = tls_context(settings) if address.tls else None
    except TektraError as exc:
        return [problem(subject, exc.message, "restart the daemon" if embedded else "fix [mqtt]")]
    where = (
        f"{'the embedded broker' if embedded else 'the broker'} at {address.host}:{address.port}"
    )
    try:
        async with aiomqtt.Client(
            address.host,
            address.port,
            username=login[0],
            password=login[1],
            identifier=new_request_id("tektra-doctor"),  # never knocks the daemon's link off
            tls_context=tls,
            timeout=10,
        ):
            pass
    except aiomqtt.MqttCodeError as exc:
        code = getattr(exc.rc, "value", exc.rc)
        if code in LOGIN_REFUSED:
            who = f"the login '{login[0]}'" if login[0] else "a client without a login"
            fix = (
                "restart the daemon (its broker was started with other logins)"
                if embedded
                else "set the broker's password in [mqtt] password_env or password_file, and "
                "[mqtt] username"
            )
            return [problem(subject, f"{where} refused {who} (wrong username or password?)", fix)]
        return [problem(subject, f"{where} refused the connection: {exc}", "see the broker's log")]
    except (aiomqtt.MqttError, OSError) as exc:
        fix = "restart the daemon" if embedded else "start the broker, or fix [mqtt] broker"
        return [problem(subject, f"cannot connect to {where}: {exc}", fix)]
    return [ok(subject, f"{where} accepts the configured login")]


async def _unit(path: Path) -> list[Finding]:
    target = "launchd" if sys.platform == "darwin" else "systemd"
    installed = [
        (user, rendered.path)
        for user in (False, True)
        if (rendered := plan(user=user, config=path, target=target)).path.exists()
    ]
    if not installed:
        return [skip("service unit", "none installed (`tektra service install --user` adds one)")]
    findings = []
    for user, unit in installed:
        subject = f"{'user' if user else 'system'} unit {unit}"
        reinstall = f"tektra service install{' --user' if user else ''} --config {path}"
        verify = shutil.which("systemd-analyze") if target == "systemd" else None
        if verify is None:
            findings.append(ok(subject, "installed (no systemd-analyze here to verify it)"))
            continue
        # System mode for a user unit too: `--user` needs a running user manager, and the
        # checks that matter (syntax, executables) are the same.
        process = await asyncio.create_subprocess_exec(
            verify,
            "verify",
            str(unit),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        said = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
        if process.returncode != 0:
            why = "; ".join(said[-3:]) or f"exit status {process.returncode}"
            findings.append(problem(subject, f"systemd-analyze verify: {why}", reinstall))
        else:
            findings.append(ok(subject, "installed; systemd-analyze verify passes"))
    return findings
