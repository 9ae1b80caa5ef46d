"""A small blocking client of the daemon's socket, for the CLI.

One JSON line per request; the replies for that request's id come back as lines too: `chunk`s,
then one `result` or `error` (or, after `subscribe`, one line per event).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daemon.core.errors import TektraError
from daemon.core.events import new_request_id
from daemon.frontends.socket.access import check_before_connecting


class DaemonUnreachable(TektraError):
    """No daemon listens on the socket."""

    code = "no_daemon"


class DaemonError(TektraError):
    """The daemon answered a request with an error; `code` is the daemon's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class DaemonClient:
    def __init__(self, path: Path, timeout_s: float | None = None) -> None:
        self.path = path
        check_before_connecting(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        try:
            self._sock.connect(str(path))
        except OSError as exc:
            self._sock.close()
            raise DaemonUnreachable(
                f"no daemon is listening on {path} ({exc.strerror}); start one with `tektra run`"
            ) from exc
        self._file = self._sock.makefile("rb")

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def set_timeout(self, timeout_s: float | None) -> None:
        """Bound the wait for the next reply line (a caller keeps an overall deadline this way)."""
        self._sock.settimeout(timeout_s)

    def send(self, cmd: str, **fields: Any) -> str:
        # Unique, not 1, 2, …: the id also names the answer on the bus and on MQTT.
        request_id = new_request_id("cli")
        line = json.dumps({"id": request_id, "cmd": cmd, **fields}) + "\n"
        self._sock.sendall(line.encode())
        return request_id

    def replies(self, request_id: str) -> Iterator[dict[str, Any]]:
        """Reply lines for `request_id` as they arrive; an `error` reply raises DaemonError."""
        for raw in self._file:
            reply = json.loads(raw)
            error = reply.get("error")
            if reply.get("id") is None and error is not None:
                # About the connection itself (refused, idle, line_timeout): it ends here.
                raise DaemonError(error["code"], error["message"])
            if reply.get("id") != request_id:
                continue
            if error is not None:
                raise DaemonError(error["code"], error["message"])
            yield reply
        raise DaemonUnreachable(f"the daemon closed the connection on {self.path}")

    def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Run a command and return its `result`."""
        request_id = self.send(cmd, **fields)
        for reply in self.replies(request_id):
            if "result" in reply:
                result: dict[str, Any] = reply["result"]
                return result
        raise AssertionError("unreachable: replies() ends with a result, an error or a raise")

    def stream(self, cmd: str, **fields: Any) -> Iterator[str | dict[str, Any]]:
        """Chunks of a streaming command (strings), then its `result` (a dict)."""
        request_id = self.send(cmd, **fields)
        for reply in self.replies(request_id):
            if "chunk" in reply:
                yield str(reply["chunk"])
            elif "result" in reply:
                yield reply["result"]
                return
