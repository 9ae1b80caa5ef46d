"""Real engines for the backend tests: llama.cpp's own OpenAI-compatible server and the Ollama
stand-in, each started on a free loopback port and stopped by the fixture that started it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
VLM = ROOT / "fixtures" / "models" / "tiny-gemma3-vlm.gguf"
VLM_MMPROJ = ROOT / "fixtures" / "models" / "tiny-gemma3-vlm-mmproj.gguf"
API_KEY = "tektra-test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers, even if with an error status
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"no answer from {url} in {timeout} s")


@dataclass
class Server:
    """A server process the test controls: it can be stopped and started again on its port."""

    argv: list[str]
    port: int
    probe: str
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, cwd=ROOT, stdout=subprocess.DEVNULL)
        wait_http(self.url + self.probe, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def requests(self, path: str) -> list[dict[str, object]]:
        """Bodies the Ollama stand-in received on `path`, oldest first."""
        if not self.log.exists():
            return []
        lines = [json.loads(x) for x in self.log.read_text().splitlines()]
        return [x["body"] for x in lines if x["path"] == path]


def ollama_standin(tmp: Path, smollm2: Path, *extra: str) -> Server:
    port = free_port()
    log = tmp / "ollama-requests.jsonl"
    argv = [
        sys.executable,
        "-m",
        "tests.engines.ollama_standin",
        "--port",
        str(port),
        "--gguf",
        str(smollm2),
        "--log",
        str(log),
        *extra,
    ]
    return Server(argv, port, "/api/version", log)


@pytest.fixture
def ollama(tmp_path: Path, smollm2_path: Path) -> Iterator[Server]:
    server = ollama_standin(
        tmp_path,
        smollm2_path,
        "--tag",
        "smollm2:135m",
        "--tag",
        "vlm:tiny",
        "--vision-tag",
        "vlm:tiny",
        "--pullable",
        "smollm2:pulled",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[Server]:
    """llama-cpp-python's real OpenAI-compatible server: SmolLM2 (also as `smollm2-tools`, which
    takes tools) and the tiny VLM, key required."""
    tmp = tmp_path_factory.mktemp("llama-server")
    port = free_port()
    config = {
        "host": "127.0.0.1",
        "port": port,
        "api_key": API_KEY,
        "models": [
            {
                "model": str(smollm2_path),
                "model_alias": "smollm2",
                "n_ctx": 2048,
                "n_threads": 1,
                "verbose": False,
            },
            {  # the same weights through llama-cpp-python's function-calling chat format
                "model": str(smollm2_path),
                "model_alias": "smollm2-tools",
                "n_ctx": 2048,
                "n_threads": 1,
                "chat_format": "chatml-function-calling",
                "verbose": False,
            },
            {
                "model": str(VLM),
                "model_alias": "tiny-vlm",
                "n_ctx": 256,
                "n_threads": 1,
                "chat_format": "mtmd",
                "clip_model_path": str(VLM_MMPROJ),
                "verbose": False,
            },
        ],
    }
    (tmp / "config.json").write_text(json.dumps(config))
    argv = [sys.executable, "-m", "llama_cpp.server", "--config_file", str(tmp / "config.json")]
    server = Server(argv, port, "/v1/models", tmp / "unused.log")
    server.start()
    yield server
    server.stop()
