"""The `tektra` command.

`ask`, `models`, `status`, `events` and `listen` talk to the running daemon over its socket.
`ask` and `models` fall back to running in-process when no daemon is listening, so they work
without one; `validate`, `models pull` and `service install` are always local.

Exit codes: 0 done, 1 an error (its code and message on stderr), 2 a usage error, 3 `listen`
heard no speech in the file, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
import wave
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from daemon.core.config.load import (
    SYSTEM_CONFIG,
    ConfigNotFound,
    default_config_path,
    inspect_file,
    load_config,
)
from daemon.core.config.schema import TektraConfig
from daemon.core.errors import ConfigError, TektraError, print_error
from daemon.frontends.mqtt.credentials import load as load_credentials
from daemon.frontends.socket.access import SYSTEM_SOCKET
from daemon.frontends.socket.client import DaemonClient, DaemonError, DaemonUnreachable
from daemon.frontends.socket.server import socket_path
from daemon.models.backends.registry import BackendRegistry
from daemon.models.manager.manager import ModelInfo, Query, UnifiedModelManager

PUSH_SECONDS = 0.5  # audio per push_audio request: small lines, steady feed
HEARD_NOTHING = 3  # `listen`: the file held no speech (exit code)


class BadInput(TektraError):
    """A file named on the command line cannot be used."""

    code = "bad_input"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "satellite":  # another room's process: a models.toml is optional
        from daemon.frontends.satellites.start import start_satellite

        return start_satellite(args)
    try:
        path: Path = args.config or default_config_path()
    except ConfigNotFound as exc:
        if args.command != "service":
            print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
            return 1
        path = SYSTEM_CONFIG  # a unit may name the file before it is written
    try:
        if args.command == "validate":
            return _validate(path)
        if args.command == "mqtt":
            login = load_credentials().user  # the only action: `credentials`
            print(f"username={login.username}\npassword={login.password}")
            return 0
        if args.command == "service":
            from daemon.service.install import install

            return install(
                user=args.user,
                config=path.absolute(),
                root=args.root,
                dry_run=args.print,
                target=args.target,
                satellite=args.satellite,
            )
        if args.command == "doctor":  # it reports an invalid configuration as a finding
            from daemon.service.doctor import run as doctor

            return doctor(path, args.socket)
        config = load_config(path, BackendRegistry().names())
        sock = args.socket or socket_path(config.daemon)
        if args.socket is None and not sock.exists() and SYSTEM_SOCKET.exists():
            sock = SYSTEM_SOCKET  # no daemon of this user's, but the system service runs
        if args.command == "run":
            from daemon.service.references import reference_issues
            from daemon.service.runner import run

            if issues := reference_issues(config):
                raise ConfigError(issues)
            return run(config, path)
        if args.command == "ask":
            return _ask(config, path, sock, args)
        if args.command == "look":
            return _look(sock, args)
        if args.command == "models":
            return _models(config, path, sock, args)
        if args.command == "status":
            return _status(sock)
        if args.command == "entities":
            return _entities(sock, args.json)
        if args.command == "stats":
            return _stats(sock, args.json)
        if args.command == "events":
            return _events(sock)
        if args.command == "listen":
            return _listen(sock, args.wav, args.timeout)
        if args.command == "say":
            return _say(config, sock, args)
    except TektraError as exc:
        print_error(exc, path)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tektra", description="Local voice and vision assistant")
    parser.add_argument("--version", action="version", version=f"tektra {_version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        help="models.toml to use (default: $TEKTRA_CONFIG, "
        "./models.toml, ~/.config/tektra/models.toml, /etc/tektra/models.toml)",
    )
    common.add_argument(
        "--socket", type=Path, help="the daemon's socket (default: from [daemon] socket)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    ask = sub.add_parser("ask", parents=[common], help="ask a question; the answer streams out")
    ask.add_argument("text", help="the question")
    ask.add_argument("--model", help="model id (default: [daemon].default_model)")
    ask.add_argument("--preset", help="generation preset (fast, balanced, quality, creative, …)")
    ask.add_argument("--image", type=Path, help="an image (JPEG/PNG) to ask about")
    ask.add_argument(
        "--video", type=Path, help="a short clip to ask about (sampled to a few frames)"
    )
    ask.add_argument(
        "--session", help="continue the conversation of this name (default: a new one per run)"
    )
    models = sub.add_parser("models", parents=[common], help="list models, or pull one")
    models.add_argument("action", nargs="?", choices=["list", "pull"], default="list")
    models.add_argument("model_id", nargs="?", help="model to pull (an hf source)")
    look = sub.add_parser("look", parents=[common], help="ask the daemon what its camera sees now")
    look.add_argument("text", nargs="?", help='the question (default: "What do you see?")')
    look.add_argument("--model", help="model id (default: the first that takes images)")
    sub.add_parser("validate", parents=[common], help="check models.toml and list every error")
    sub.add_parser("status", parents=[common], help="the running daemon's state, as JSON")
    entities = sub.add_parser(
        "entities", parents=[common], help="the devices the daemon knows, and where from"
    )
    entities.add_argument("--json", action="store_true", help="print them as JSON")
    stats = sub.add_parser(
        "stats", parents=[common], help="compare the backends [[routing]] shares queries between"
    )
    stats.add_argument("--json", action="store_true", help="print the comparison as JSON")
    sub.add_parser("events", parents=[common], help="print every daemon event as a JSON line")
    listen = sub.add_parser(
        "listen", parents=[common], help="send a WAV file to the daemon's voice pipeline"
    )
    listen.add_argument("wav", type=Path, help="16-bit PCM WAV (any rate, mono or stereo)")
    listen.add_argument(
        "--timeout", type=float, default=120.0, help="seconds in all to wait for the answer"
    )
    sub.add_parser(
        "doctor", parents=[common], help="check devices, models, backends, broker, socket, unit"
    )
    mqtt = sub.add_parser("mqtt", parents=[common], help="the embedded MQTT broker")
    mqtt.add_argument("action", choices=["credentials"], help="print the login for MQTT clients")
    say = sub.add_parser("say", parents=[common], help="speak a text through the daemon")
    say.add_argument("text", help="what to say")
    say.add_argument("--to", type=Path, help="write a WAV file instead (no daemon needed)")
    satellite = sub.add_parser(
        "satellite", parents=[common], help="capture and speak for a hub, in another room"
    )
    satellite.add_argument("--hub", help="the hub's MQTT broker, mqtt[s]://host:port")
    satellite.add_argument("--id", help="this satellite's id (kitchen; default: [satellite] id)")
    satellite.add_argument("--room", help="the room it serves, its Home Assistant area")
    satellite.add_argument("--node", help="the hub's [daemon] node_id (default: tektra)")
    satellite.add_argument("--input", help="microphone: auto, name, index (default: auto)")
    satellite.add_argument("--output", help="speaker: auto, name, index (default: auto)")
    satellite.add_argument("--wake", help="wake word model (default: [audio.wake] model)")
    service = sub.add_parser("service", parents=[common], help="install the service unit")
    service.add_argument("action", choices=["install"])
    service.add_argument("--user", action="store_true", help="a user unit/agent, not a system one")
    service.add_argument("--print", action="store_true", help="print the file; write nothing")
    service.add_argument("--root", type=Path, help="write under this directory (packaging)")
    service.add_argument(
        "--target", choices=["systemd", "launchd"], help="service manager (default: this OS's)"
    )
    service.add_argument(
        "--satellite", action="store_true", help="a satellite's unit/agent, not the daemon's"
    )
    return parser


def _version() -> str:
    try:
        return version("tektra")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _validate(path: Path) -> int:
    config, issues, notes = inspect_file(path, BackendRegistry().names())
    if config is not None:
        from daemon.service.references import reference_issues

        issues = reference_issues(config)
    if issues:
        print(f"{path}: {len(issues)} error(s)")
        for issue in issues:
            print(f"  {issue}")
    else:
        print(f"{path}: OK")
    for note in notes:  # old spellings understood: each names today's spelling
        print(f"  note: {note}")
    return 1 if issues else 0


def _connect(sock: Path, timeout_s: float | None = None) -> DaemonClient | None:
    try:
        return DaemonClient(sock, timeout_s)
    except DaemonUnreachable:
        return None


def _ask(config: TektraConfig, path: Path, sock: Path, args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {"text": args.text, "model": args.model, "preset": args.preset}
    if args.session:
        fields["session"] = args.session
    image = _read_image(args.image) if args.image else None
    video = _read_file(args.video, "clip") if args.video else None
    client = _connect(sock)
    if client is None:  # no daemon: answer in-process, the same way the daemon would
        return asyncio.run(_ask_locally(config, path, args, image, video))
    command = "ask"
    if video is not None:  # `ask` takes one image; a clip goes as `multimodal`
        command = "multimodal"
        fields["video"] = base64.b64encode(video).decode()
        if image is not None:
            fields["images"] = [base64.b64encode(image).decode()]
    elif image is not None:
        fields["image"] = base64.b64encode(image).decode()
    with client:
        return _stream(client, command, fields)


def _look(sock: Path, args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {"model": args.model}
    if args.text:
        fields["text"] = args.text
    client = _connect(sock)
    if client is None:  # the camera is the daemon's: nothing to look through without it
        print(
            f"error [unreachable]: no daemon answers on {sock}: start it with `tektra run`",
            file=sys.stderr,
        )
        return 1
    with client:
        return _stream(client, "look", fields)


def _stream(client: DaemonClient, command: str, fields: dict[str, Any]) -> int:
    try:
        for piece in client.stream(command, **fields):
            if isinstance(piece, str):
                sys.stdout.write(piece)
                sys.stdout.flush()
    except DaemonError as exc:
        sys.stdout.flush()
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 1
    sys.stdout.write("\n")
    return 0


async def _ask_locally(
    config: TektraConfig,
    path: Path,
    args: argparse.Namespace,
    image: bytes | None,
    video: bytes | None = None,
) -> int:
    manager = UnifiedModelManager(config, config_path=path)
    try:
        images = (image,) if image is not None else ()
        clips = (video,) if video is not None else ()
        answer = manager.answer(
            Query(args.text, model=args.model, preset=args.preset, images=images, video=clips)
        )
        async for chunk in answer:
            sys.stdout.write(chunk)
            sys.stdout.flush()
        sys.stdout.write("\n")
    finally:
        await manager.close()
    return 0


def _models(config: TektraConfig, path: Path, sock: Path, args: argparse.Namespace) -> int:
    if args.action == "pull":
        from daemon.core import sources as model_sources

        if not args.model_id:
            print("usage: tektra models pull MODEL_ID", file=sys.stderr)
            return 2
        model = config.model(args.model_id)
        if model is None:
            print(f"error: no model with id '{args.model_id}'", file=sys.stderr)
            return 1
        print(model_sources.pull(model.id, model.source))
        return 0
    client = _connect(sock)
    if client is None:
        print(_table(asyncio.run(UnifiedModelManager(config, config_path=path).list_models())))
        return 0
    with client:
        listed = client.call("models")["models"]
    print(_table([ModelInfo(**{**m, "capabilities": tuple(m["capabilities"])}) for m in listed]))
    return 0


def _status(sock: Path) -> int:
    with DaemonClient(sock, timeout_s=30) as client:
        print(json.dumps(client.call("status"), indent=2))
    return 0


def _entities(sock: Path, as_json: bool) -> int:
    from daemon.home.listing import entities_table

    with DaemonClient(sock, timeout_s=30) as client:
        listed = client.call("entities")["entities"]
    print(json.dumps(listed, indent=2) if as_json else entities_table(listed))
    return 0


def _stats(sock: Path, as_json: bool) -> int:
    from daemon.models.manager.routing import stats_table

    with DaemonClient(sock, timeout_s=30) as client:
        rows = client.call("stats")["routing"]
    print(json.dumps(rows, indent=2) if as_json else stats_table(rows))
    return 0


def _events(sock: Path) -> int:
    with DaemonClient(sock) as client:
        request_id = client.send("subscribe")
        for reply in client.replies(request_id):
            if "event" in reply:
                print(json.dumps({"event": reply["event"], **reply["data"]}), flush=True)
    return 0


def _listen(sock: Path, wav: Path, timeout_s: float) -> int:
    """Push a WAV into the voice pipeline; print what it heard and the answer."""
    pcm, rate = _read_wav(wav)
    try:
        return _push_and_wait(sock, pcm, rate, timeout_s)
    except TimeoutError:
        print(f"error [timeout]: no answer within {timeout_s:g} s", file=sys.stderr)
        return 1


def _push_and_wait(sock: Path, pcm: bytes, rate: int, timeout_s: float) -> int:
    # One deadline for the whole run: a stream of unrelated events must not keep it waiting.
    deadline = time.monotonic() + timeout_s
    with DaemonClient(sock, timeout_s) as events, DaemonClient(sock, timeout_s) as pusher:
        subscription = events.send("subscribe")
        replies = events.replies(subscription)
        next(replies)  # subscribed: nothing said from now on is missed
        step = int(rate * PUSH_SECONDS) * 2
        for start in range(0, len(pcm), step):
            piece = base64.b64encode(pcm[start : start + step]).decode()
            last = start + step >= len(pcm)
            pusher.set_timeout(_time_left(deadline))
            pusher.call("push_audio", pcm=piece, sample_rate=rate, end=last)
        events.set_timeout(_time_left(deadline))
        return _print_voice_answer(replies, lambda: events.set_timeout(_time_left(deadline)))


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _print_voice_answer(replies: Any, next_read: Callable[[], None]) -> int:
    """Print the first transcript and its answer; `next_read()` bounds the wait for each line."""
    query_id = None
    utterances: int | None = None  # in the pushed audio, once it was segmented to its end
    wordless = 0
    for reply in replies:
        kind, data = reply.get("event"), reply.get("data", {})
        name, fields = data.get("name"), data.get("data", {})
        if kind == "transcript" and query_id is None:
            query_id = data["id"]
            print(f"heard: {data['text']}", flush=True)
        elif kind == "pipeline" and name == "PushedAudioEnded":
            utterances = fields["utterances"]
        elif kind == "pipeline" and name == "TranscriptIgnored" and fields["reason"] == "no_words":
            wordless += 1
        elif kind == "pipeline" and name == "TranscriptIgnored" and fields["reason"] == "no_wake":
            print("not transcribed: no wake word heard")
            return 1
        elif kind == "pipeline" and name == "TranscriptIgnored":
            print(f"heard (not a query: {fields['reason']}): {fields['text']}")
            return 1
        elif kind == "response" and data.get("id") == query_id:
            print(data["text"])
            return 0
        elif kind == "error" and (data.get("id") in (None, query_id)):
            print(f"error [{data['code']}]: {data['message']}", file=sys.stderr)
            return 1
        if query_id is None and utterances is not None and wordless >= utterances:
            print("heard nothing")
            return HEARD_NOTHING
        next_read()
    return 1


def _read_image(path: Path) -> bytes:
    return _read_file(path, "image")


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc


def _read_wav(path: Path) -> tuple[bytes, int]:
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise BadInput(f"{path}: only 16-bit PCM WAV files can be sent")
            frames = wav.readframes(wav.getnframes())
            channels, rate = wav.getnchannels(), wav.getframerate()
    except (OSError, wave.Error, EOFError) as exc:
        raise BadInput(f"{path}: cannot read it as a WAV file: {exc}") from exc
    if channels > 1:
        import numpy as np

        samples = np.frombuffer(frames, dtype="<i2").reshape(-1, channels)
        frames = samples.mean(axis=1).astype("<i2").tobytes()
    return frames, rate


def _say(config: TektraConfig, sock: Path, args: argparse.Namespace) -> int:
    if args.to is not None:
        from daemon.speech.offline import write_speech

        engine, seconds = asyncio.run(write_speech(config.tts, args.text, args.to))
        print(f"{args.to}: {seconds:g} s spoken by {engine}")
        return 0
    client = _connect(sock)
    if client is None:
        print("error [unreachable]: no daemon is running (use --to FILE.wav)", file=sys.stderr)
        return 1
    with client:
        said = client.call("say", text=args.text)
    if said.get("stopped"):
        print("stopped before the end (a `stop` came)")
        return 1
    print(f"said {said['sentences']} sentence(s) in {said['seconds']:g} s with {said['engine']}")
    return 0


def _table(models: list[ModelInfo]) -> str:
    rows = [("ID", "BACKEND", "DEVICE", "CAPABILITIES", "LOADED", "MEMORY", "STATUS")]
    for m in models:
        memory = f"{m.memory_mb} MB" if m.memory_mb is not None else "?"
        status = m.problem or "ready"
        rows.append(
            (
                m.id,
                m.backend or "-",
                m.device or "-",
                ",".join(m.capabilities),
                "yes" if m.loaded else "no",
                memory,
                status,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )


if __name__ == "__main__":
    sys.exit(main())
