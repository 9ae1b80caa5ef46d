"""A daemon stopping mid-answer closes the HTTP stream of a remote engine and tells the asker.

The engines are real: llama.cpp's own OpenAI-compatible server and the Ollama stand-in (which
generates with llama.cpp too); the daemon is a real `tektra run`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from tests.daemon.conftest import (  # noqa: F401  (fixtures used by name)
    Daemon,
    SocketClient,
    make_daemon,
    plugin_site,
    short_dir,
)
from tests.engines.conftest import API_KEY, Server

BACKENDS = {
    "openai": (
        "llama_server",
        '[backends.openai]\nenabled = true\nbase_url = "{url}/v1"\napi_key_env = "TEKTRA_KEY"\n',
        '{ served = "smollm2" }',
    ),
    "ollama": (
        "ollama",
        '[backends.ollama]\nenabled = true\nhost = "{url}"\n',
        '{ ollama = "smollm2:135m" }',
    ),
}


@pytest.mark.integration
@pytest.mark.parametrize("backend", sorted(BACKENDS))
async def test_sigterm_mid_answer_closes_the_engines_stream_and_tells_the_asker(
    backend: str,
    make_daemon: Callable[..., Daemon],  # noqa: F811  (the fixture imported above)
    request: pytest.FixtureRequest,
) -> None:
    fixture, table, source = BACKENDS[backend]
    server: Server = request.getfixturevalue(fixture)
    daemon = make_daemon('broker = "none"', start=False)
    daemon.config.write_text(
        f'[daemon]\nsocket = "{daemon.socket}"\nnode_id = "testnode"\npreset = "long"\n'
        "shutdown_timeout_s = 0.2\n"
        '[audio]\nsource = "none"\n[mqtt]\nbroker = "none"\n'
        f'[backends]\ndefault = ["{backend}"]\n'
        + table.format(url=server.url)
        + "[presets.long]\nmax_tokens = 1500\ntemperature = 0.0\n"
        f'[[models]]\nid = "remote"\nsource = {source}\ncontext_length = 2048\n'
    )
    daemon.env["TEKTRA_KEY"] = API_KEY
    daemon.start()
    client = await SocketClient.connect(daemon.socket)
    # At temperature 0 SmolLM2 tells this story up to `max_tokens`: the answer outlasts the stop.
    question = "Write a very long story about a dragon, with many chapters."
    await client.send({"id": "r", "cmd": "ask", "text": question})
    first = await client.receive(timeout_s=120)
    assert "chunk" in first, first
    daemon.signal(signal.SIGTERM)
    replies = await client.until_done("r", timeout_s=30)
    assert replies[-1]["error"]["code"] == "shutting_down"
    await client.close()
    assert daemon.process.wait(timeout=15) == 0  # type: ignore[union-attr]
    assert "Traceback" not in daemon.log
