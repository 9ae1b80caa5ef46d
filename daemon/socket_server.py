"""The local Unix socket: JSON lines in, JSON lines out, many clients at once.

Each line is one request (`{"id": …, "cmd": …, …}`, see daemon.protocol); each runs in its own task,
so a long answer or a `subscribe` never holds up the next request on the same connection. Every
reply line carries the request's id. A bad line of any kind is answered with
`{"id", "error": {"code", "message"}}` and the connection stays open.
"""

from __future__ import annotations

import asyncio
import grp
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from daemon.commands import Commands
from daemon.config.schema import DaemonSettings
from daemon.errors import TektraError
from daemon.events import EventBus
from daemon.protocol import STREAMING, ProtocolError, Request, error_reply, parse_line

log = logging.getLogger("tektra.socket")


def socket_path(settings: DaemonSettings) -> Path:
    """`[daemon].socket`, else systemd's `$RUNTIME_DIRECTORY/tektra.sock`, else
    `$XDG_RUNTIME_DIR/tektra/tektra.sock`, else `/run/tektra/tektra.sock` as root, else a
    per-user directory under /tmp."""
    if settings.socket:
        return Path(settings.socket).expanduser()
    if os.environ.get("RUNTIME_DIRECTORY"):  # systemd's RuntimeDirectory= (the system unit)
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0]) / "tektra.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "tektra/tektra.sock"
    if os.geteuid() == 0:
        return Path("/run/tektra/tektra.sock")
    return Path(f"/tmp/tektra-{os.geteuid()}/tektra.sock")


class Connection:
    """One client: replies are written whole, one line at a time, whichever task sends them."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, ensure_ascii=False).encode() + b"\n"
        async with self._lock:
            self.writer.write(data)
            await self.writer.drain()


class SocketServer:
    def __init__(
        self, path: Path, settings: DaemonSettings, commands: Commands, bus: EventBus
    ) -> None:
        self.path = path
        self.settings = settings
        self.commands = commands
        self.bus = bus
        self.clients = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind the socket with its permissions; fails if another daemon is serving it."""
        self._prepare()
        self._server = await asyncio.start_unix_server(
            self._serve_client, path=str(self.path), limit=self.settings.max_request_bytes
        )
        self._set_permissions()
        log.info("listening on %s", self.path)

    async def run(self) -> None:
        """Serve until cancelled (binding first if `start` was not called); the socket file is
        removed on the way out."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            async with self._server:
                await self._server.serve_forever()
        finally:
            self._server = None
            self.path.unlink(missing_ok=True)

    def _prepare(self) -> None:
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(parents=True, mode=0o750 if self.settings.socket_group else 0o700)
        if self.path.exists() or self.path.is_symlink():
            if _is_live(self.path):
                raise TektraError(f"another daemon is serving {self.path}; stop it first")
            self.path.unlink()  # left behind by a daemon that was killed

    def _set_permissions(self) -> None:
        group = self.settings.socket_group
        if group is None:
            os.chmod(self.path, 0o600)
            return
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError as exc:
            raise TektraError(f"[daemon] socket_group: no group named '{group}'") from exc
        os.chown(self.path, -1, gid)
        os.chmod(self.path, 0o660)

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connection = Connection(writer)
        if self.clients >= self.settings.max_clients:
            message = f"too many clients (max_clients = {self.settings.max_clients})"
            await connection.send(error_reply(None, "too_many_clients", message))
            writer.close()
            return
        self.clients += 1
        session = self.commands.open_conversation()  # this connection's own conversation
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                line = await _read_line(reader, self.settings.max_request_bytes)
                if line is None:
                    break
                if isinstance(line, ProtocolError):
                    await connection.send(error_reply(None, line.code, line.message))
                    continue
                if not line.strip():
                    continue
                try:
                    request = parse_line(line)
                except ProtocolError as exc:
                    await connection.send(error_reply(exc.request_id, exc.code, exc.message))
                    continue
                task = asyncio.create_task(
                    self._handle(connection, request, session), name=f"socket {request.command}"
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            # End of input is often a half-close (`socat`, `nc -N`): the client still reads, so
            # its requests (a `subscribe` too) run on until done or until writing to it fails.
            await asyncio.gather(*tasks, return_exceptions=True)
        except (ConnectionError, BrokenPipeError):
            pass  # the client went away; its tasks are cancelled below
        finally:
            self.clients -= 1
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.commands.close_conversation(session)
            writer.close()

    async def _handle(self, connection: Connection, request: Request, session: str) -> None:
        try:
            if request.command == "subscribe":
                await self._subscribe(connection, request)
                return
            on_chunk = None
            if request.command in STREAMING:

                async def on_chunk(text: str) -> None:
                    await connection.send({"id": request.id, "chunk": text})

            result = await self.commands.execute(request, on_chunk, session=session)
            await connection.send({"id": request.id, "result": result})
        except TektraError as exc:
            await self._send_error(connection, request, exc.code, exc.message)
        except (ConnectionError, BrokenPipeError):
            return
        except Exception as exc:  # a bug in one command must not end the connection; report it
            log.exception("command %s failed", request.command)
            await self._send_error(connection, request, "internal", f"{type(exc).__name__}: {exc}")

    async def _send_error(
        self, connection: Connection, request: Request, code: str, message: str
    ) -> None:
        try:
            await connection.send(error_reply(request.id, code, message))
        except (ConnectionError, BrokenPipeError):
            return

    async def _subscribe(self, connection: Connection, request: Request) -> None:
        with self.bus.subscribe() as events:
            await connection.send({"id": request.id, "result": {"subscribed": True}})
            async for event in events:
                data = event.to_wire()
                # The event's own fields go under `data`: they may carry an `id` of their own.
                await connection.send({"id": request.id, "event": data.pop("event"), "data": data})


async def _read_line(reader: asyncio.StreamReader, limit: int) -> bytes | ProtocolError | None:
    """The next line; a ProtocolError for one over `limit` (skipped whole); None at the end."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial or None  # a last request without its newline still counts
    except asyncio.LimitOverrunError as exc:
        consumed = exc.consumed
    # Too long: drop the rest of this line, however long, without keeping it in memory.
    while True:
        try:
            await reader.readexactly(consumed)
            await reader.readuntil(b"\n")
            break
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as exc:
            consumed = exc.consumed
    return ProtocolError("too_large", f"request line over the {limit}-byte limit")


def _is_live(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
