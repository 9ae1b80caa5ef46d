"""The local Unix socket: JSON lines in, JSON lines out, many clients at once.

Each line is one request (`{"id": …, "cmd": …, …}`, see daemon.protocol); each runs in its own task,
so a long answer or a `subscribe` never holds up the next request on the same connection. Every
reply line carries the request's id. A bad line of any kind is answered with
`{"id", "error": {"code", "message"}}` and the connection stays open.

Only our own user, root and `socket_group` are served (daemon.socket_access); no client can hold
the others up (daemon.socket_connection); at shutdown every request still open gets a last line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Any

from daemon.assistant.commands import Commands
from daemon.assistant.protocol import ProtocolError, Request, error_reply
from daemon.core.config.schema import DaemonSettings
from daemon.core.errors import TektraError
from daemon.core.events import EventBus
from daemon.core.supervisor import cancel_and_wait
from daemon.frontends.socket.access import (
    Peer,
    PeerCheck,
    group_id,
    peer_of,
    prepare_directory,
    socket_path,
)
from daemon.frontends.socket.connection import ClientConnection

__all__ = ["SocketServer", "socket_path"]

log = logging.getLogger("tektra.socket")


STOPPING = "the daemon is stopping; this request was not finished"
FAREWELL_S = 0.5
"""At shutdown, how long clients get to read their last lines before their connections go."""


class SocketServer:
    def __init__(
        self, path: Path, settings: DaemonSettings, commands: Commands, bus: EventBus
    ) -> None:
        self.path = path
        self.settings = settings
        self.commands = commands
        self.bus = bus
        self.dropped_slow = 0
        """Clients disconnected because they stopped reading their replies."""
        self._server: asyncio.Server | None = None
        self._peers = PeerCheck(settings.socket_group)
        # Each connection runs in a task of ours (not one asyncio's server makes), so shutdown
        # can end them in order, and none is left for asyncio.run to cancel.
        self._sessions: dict[asyncio.Task[None], _Session] = {}

    @property
    def clients(self) -> int:
        """Clients being served now (the ones refused are not counted)."""
        return sum(1 for session in self._sessions.values() if session.served)

    def status(self) -> dict[str, Any]:
        return {"path": str(self.path), "clients": self.clients, "dropped_slow": self.dropped_slow}

    async def start(self) -> None:
        """Bind the socket with its permissions; fails if another daemon is serving it, or if
        its directory is not ours alone."""
        self._prepare()
        try:
            self._server = await asyncio.start_unix_server(self._accept, path=str(self.path))
        except OSError as exc:
            raise TektraError(f"cannot listen on {self.path}: {exc.strerror or exc}") from exc
        try:
            self._set_permissions()
        except OSError as exc:
            self._server.close()
            raise TektraError(f"cannot set the mode of {self.path}: {exc.strerror}") from exc
        log.info("listening on %s", self.path)

    async def run(self) -> None:
        """Serve until cancelled (binding first if `start` was not called); on the way out every
        client is told, and the socket file is removed."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            # The server already accepts. Not serve_forever(): from Python 3.12 its cancellation
            # waits for every connection to close, before the farewell below could close them.
            await asyncio.get_running_loop().create_future()
        finally:
            self._server.close()
            self._server = None
            self.path.unlink(missing_ok=True)
            await self._farewell()

    def _prepare(self) -> None:
        prepare_directory(self.path, self._peers.gid)
        if self.path.exists() or self.path.is_symlink():
            if _is_live(self.path):
                raise TektraError(f"another daemon is serving {self.path}; stop it first")
            self.path.unlink()  # left behind by a daemon that was killed

    def _set_permissions(self) -> None:
        gid = group_id(self.settings.socket_group)
        if gid is None:
            os.chmod(self.path, 0o600)
            return
        os.chown(self.path, -1, gid)
        os.chmod(self.path, 0o660)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_of(writer.get_extra_info("socket"))
        name = f"pid {peer.pid}" if peer is not None else "(unknown pid)"

        def dropped() -> None:
            self.dropped_slow += 1

        connection = ClientConnection(reader, writer, self.settings, name, dropped)
        session = _Session(connection)
        task = asyncio.create_task(self._serve(session, peer), name=f"socket client {name}")
        self._sessions[task] = session
        task.add_done_callback(self._sessions.pop)

    async def _serve(self, session: _Session, peer: Peer | None) -> None:
        connection = session.connection
        refusal = await self._peers.refusal(peer)
        if refusal is not None:
            log.warning("refused a socket client: %s", refusal)
            message = "this daemon serves only its own user and its socket_group"
            await connection.turn_away("forbidden", message)
            return
        if self.clients >= self.settings.max_clients:
            message = f"too many clients (max_clients = {self.settings.max_clients})"
            await connection.turn_away("too_many_clients", message)
            return
        session.served = True
        tasks = session.tasks
        conversation = self.commands.open_conversation()  # this connection's own conversation
        try:
            while True:
                line = await connection.next_line(lambda: bool(tasks))
                if line is None or connection.closed:  # closed: dropped, or the daemon stops
                    break
                if isinstance(line, ProtocolError):
                    connection.send(error_reply(None, line.code, line.message))
                    continue
                if not line.strip():
                    continue
                request = self.commands.read_line(line)
                if not isinstance(request, Request):
                    connection.send(request.socket_line())
                    continue
                task = asyncio.create_task(
                    self._handle(connection, request, conversation),
                    name=f"socket {request.command}",
                )
                tasks[task] = request
                task.add_done_callback(session.finished)
            # End of input is often a half-close (`socat`, `nc -N`): the client still reads, so
            # its requests (a `subscribe` too) run on until done or until it is gone.
            if tasks and not connection.closed:
                gone = asyncio.create_task(_closed(connection))
                try:
                    while tasks and not gone.done():
                        await asyncio.wait([gone, *tasks], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    gone.cancel()
        finally:
            session.served = False
            await cancel_and_wait(*tasks)
            self.commands.close_conversation(conversation)
            connection.close()

    async def _handle(
        self, connection: ClientConnection, request: Request, conversation: str
    ) -> None:
        if request.command == "subscribe":
            await self._subscribe(connection, request)
            return
        on_chunk = on_line = None
        if self.commands.streaming(request):

            def on_chunk(text: str) -> None:
                connection.send({"id": request.id, "chunk": text})

            def on_line(fields: dict[str, Any]) -> None:
                connection.send({"id": request.id, **fields})

        # run_request never raises (but for cancellation): every failure is an Outcome.
        outcome = await self.commands.run_request(
            request, on_chunk, session=conversation, on_line=on_line
        )
        connection.send(outcome.socket_line())

    async def _subscribe(self, connection: ClientConnection, request: Request) -> None:
        with self.bus.subscribe() as events:
            connection.send({"id": request.id, "result": {"subscribed": True}})
            async for event in events:
                data = event.to_wire()
                # The event's own fields go under `data`: they may carry an `id` of their own.
                connection.send({"id": request.id, "event": data.pop("event"), "data": data})

    async def _farewell(self) -> None:
        """Every request still open (subscriptions too) gets a `shutting_down` error line; then
        the connections close once read, or after FAREWELL_S."""
        for session in self._sessions.values():
            for task, request in session.tasks.items():
                if not task.done():
                    session.connection.send(error_reply(request.id, "shutting_down", STOPPING))
                task.cancel()
            session.connection.close()
        sessions = list(self._sessions)
        if not sessions:
            return
        _, late = await asyncio.wait(sessions, timeout=FAREWELL_S)
        for task in late:
            self._sessions[task].connection.abort()
        if late:
            await asyncio.wait(late, timeout=FAREWELL_S)


class _Session:
    """One connection and the requests it has in flight."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.tasks: dict[asyncio.Task[None], Request] = {}
        self.served = False

    def finished(self, task: asyncio.Task[None]) -> None:
        del self.tasks[task]
        self.connection.last_active = asyncio.get_running_loop().time()


async def _closed(connection: ClientConnection) -> None:
    """Returns once the client is gone (its connection lost, with or without an error)."""
    with contextlib.suppress(OSError):
        await connection.writer.wait_closed()


def _is_live(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
