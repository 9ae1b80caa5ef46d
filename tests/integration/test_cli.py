"""The `tektra` command as a user runs it: a real process, real models, real exit codes."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import SMOLLM2_SOURCE

ROOT = Path(__file__).parents[2]
TEKTRA = str(Path(sys.executable).with_name("tektra"))
GREEDY = (
    '[daemon]\npreset = "exact"\n[presets.exact]\ntemperature = 0.0\nseed = 1\nmax_tokens = 48\n'
    f'[[models]]\nid = "smollm2"\nsource = {SMOLLM2_SOURCE}\ncontext_length = 2048\n'
)


# A runtime directory of our own: no daemon listens there, so `ask` and `models` run in-process
# (tests/daemon covers them talking to a daemon), and `run` binds its socket there.
RUNTIME_DIR = tempfile.mkdtemp(prefix="tektra-cli-")


def tektra(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**(env or os.environ), "XDG_RUNTIME_DIR": RUNTIME_DIR}
    return subprocess.run(
        [TEKTRA, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_ask_streams_a_real_answer_from_smollm2(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text(GREEDY)
    result = tektra(
        "ask", "What is the capital of France?", "--config", str(tmp_path / "models.toml")
    )
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_version_prints_the_installed_package_version() -> None:
    result = tektra("--version")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"tektra {version('tektra')}\n",
        "",
    )


def test_ask_about_a_missing_image_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text(GREEDY)
    missing = tmp_path / "MISSING.jpg"
    result = tektra(
        "ask", "what is this?", "--image", str(missing), "--config", str(tmp_path / "models.toml")
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert (
        result.stderr
        == f"error [bad_input]: cannot read the image {missing}: No such file or directory\n"
    )


def test_ask_with_an_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text(GREEDY)
    result = tektra("ask", "hi", "--model", "gpt-9", "--config", str(tmp_path / "models.toml"))
    assert result.returncode == 1
    assert result.stderr == "error [unknown_model]: no model with id 'gpt-9' (models: smollm2)\n"


def test_validate_lists_every_error_with_its_key_path_and_fails() -> None:
    broken = ROOT / "fixtures/configs/broken/several_errors.toml"
    result = tektra("validate", "--config", str(broken))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{broken}: 2 error(s)",
        "  backends.llama_cpp.n_threads: must be at least 1 (got 0)",
        "  models[0].template: no template 'vicuna' (built-in or in [templates]: 'auto', "
        "'gemma', 'llama3', 'mistral', 'chatml', 'qwen', 'phi')",
    ]


def test_validate_accepts_the_shipped_configuration() -> None:
    result = tektra("validate", "--config", str(ROOT / "models.toml"))
    assert (result.returncode, result.stdout) == (0, f"{ROOT / 'models.toml'}: OK\n")


def test_validate_reports_every_problem_of_one_table_in_one_pass(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        '[daemon]\nnode_id = "my tektra"\npreset = "turbo"\n'
        '[mqtt]\nbroker = "mqtt://tektra:s3cret@broker.lan:1883"\n'
        '[[models]]\nid = "m"\nsource = { ollama = "m:1" }\n'
    )
    result = tektra("validate", "--config", str(config))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{config}: 3 error(s)",
        "  daemon.node_id: 'my tektra' does not match the pattern ^[A-Za-z0-9_-]+$",
        "  daemon.preset: no preset 'turbo' (presets: balanced, creative, fast, quality)",
        "  mqtt.broker: credentials do not belong in the broker URL (they would end up in logs "
        "and in `tektra status`); write the URL without them and set [mqtt] username and "
        "password_env or password_file",
    ]
    assert "s3cret" not in result.stdout + result.stderr


def test_validate_names_an_unknown_mqtt_command_and_an_unknown_wake_word_model(
    tmp_path: Path,
) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        '[mqtt]\ncommands = ["ask", "staus", "launch_rockets"]\n'
        '[audio.wake]\nengine = "micro"\nmodel = "hey_tektra"\n'
        '[[models]]\nid = "m"\nsource = { ollama = "m:1" }\n'
    )
    result = tektra("validate", "--config", str(config))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        f"{config}: 3 error(s)",
        "  mqtt.commands[1]: no such command 'staus' (did you mean 'status'?)",
    ]
    # With nothing close, every command is listed.
    assert lines[2].startswith("  mqtt.commands[2]: no such command 'launch_rockets' (commands: ")
    assert "new_conversation" in lines[2]
    assert lines[3:] == [
        "  audio.wake.model: 'hey_tektra' is neither a shipped model (okay_nabu, hey_jarvis, "
        "hey_mycroft, alexa) nor a microWakeWord .json/.tflite file"
    ]
    # The daemon refuses the same file, with the same words, rather than warn at run time.
    refused = tektra("run", "--config", str(config))
    assert refused.returncode == 1
    assert "mqtt.commands[1]: no such command 'staus' (did you mean 'status'?)" in refused.stderr


def test_validate_accepts_the_seeds_models_toml_and_names_the_new_spelling() -> None:
    seed = ROOT / "fixtures/configs/seed_status_report.toml"
    result = tektra("validate", "--config", str(seed))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        f"{seed}: OK",
        "  note: backends.default[0]: 'enhanced_ollama' is the original Tektra's name; "
        "now 'ollama'",
        "  note: backends.enhanced_ollama: the original Tektra's spelling; now [backends.ollama] "
        'with host = "http://localhost:11434"',
        "  note: models[0].backend_preferences[0]: 'enhanced_ollama' is the original Tektra's "
        "name; now 'ollama'",
        "  note: models[0].multimodal: the original Tektra's spelling; capabilities already says "
        "which inputs the model takes, remove multimodal",
        "  note: models[0].source: not given; an Ollama model named by its id is the original "
        'Tektra\'s spelling; now source = { ollama = "gemma3n:e4b" }',
    ]


@pytest.mark.parametrize("command", ["run", "validate", "status"])
def test_without_a_config_file_every_place_looked_is_listed_in_order(
    command: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TEKTRA_CONFIG"}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_RUNTIME_DIR": RUNTIME_DIR}
    result = subprocess.run(
        [TEKTRA, command], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        "error [no_config]: no configuration file found; looked in, in order:",
        "  $TEKTRA_CONFIG (not set)",
        f"  {tmp_path / 'models.toml'}",
        f"  {tmp_path / 'xdg/tektra/models.toml'}",
        "  /etc/tektra/models.toml",
        "write one (see README: models.toml) or pass --config FILE",
    ]


def test_a_tektra_config_that_does_not_exist_is_the_only_place_looked(tmp_path: Path) -> None:
    env = {**os.environ, "TEKTRA_CONFIG": str(tmp_path / "absent.toml")}
    result = tektra("run", env=env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        "error [no_config]: no configuration file found; looked in, in order:",
        f"  $TEKTRA_CONFIG: {tmp_path / 'absent.toml'}",
        "write one (see README: models.toml) or pass --config FILE",
    ]


def test_models_shows_backend_capabilities_loaded_state_and_memory() -> None:
    result = tektra("models", "--config", str(ROOT / "models.toml"))
    assert result.returncode == 0
    header, row = result.stdout.splitlines()
    assert header.split() == [
        "ID", "BACKEND", "DEVICE", "CAPABILITIES", "LOADED", "MEMORY", "STATUS"
    ]  # fmt: skip
    cells = row.split()
    assert cells[:5] == ["smollm2", "llama_cpp", "cpu", "text", "no"]
    assert int(cells[5]) > 100 and cells[6:] == ["MB", "ready"]


def test_run_refuses_to_start_on_an_invalid_file() -> None:
    broken = ROOT / "fixtures/configs/broken/duplicate_model_id.toml"
    result = tektra("run", "--config", str(broken))
    assert result.returncode == 1
    assert "models[1].id: duplicate model id 'smollm2' (first used by models[0])" in result.stderr


def test_run_loads_the_default_model_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    # The default embedded broker, on a port of its own (1883 may be taken: that is fatal).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "models.toml").write_text(f"{GREEDY}[mqtt]\nembedded_port = {port}\n")
    with subprocess.Popen(
        [TEKTRA, "run", "--config", str(tmp_path / "models.toml")],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": RUNTIME_DIR, "XDG_STATE_HOME": str(tmp_path)},
    ) as daemon:
        assert daemon.stderr is not None
        lines = []
        try:
            # READY comes first; the default model loads while the daemon already serves.
            for line in daemon.stderr:
                lines.append(line)
                if "model smollm2 loaded" in line or "could not be loaded" in line:
                    break
            assert any("ready" in line for line in lines), lines
            assert any("model smollm2 loaded on llama_cpp" in line for line in lines), lines
        finally:
            daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0


class HubStandIn(BaseHTTPRequestHandler):
    """Serves one file the way the Hugging Face hub resolves repository files.

    A stand-in: the hub itself cannot be reached from this machine. It answers the HEAD and GET
    of `/<repo>/resolve/<revision>/<file>` with the headers huggingface_hub reads (commit, ETag,
    length), and 404 with the hub's error code for anything else.
    """

    data = b"GGUF" + bytes(range(256)) * 64

    def _answer(self) -> bool:
        if not self.path.endswith("/resolve/main/tiny.gguf"):
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        self.send_response(200)
        self.send_header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
        self.send_header("ETag", f'"{hashlib.sha256(self.data).hexdigest()}"')
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        return True

    def do_HEAD(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        if self._answer():
            self.wfile.write(self.data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HubStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_models_pull_downloads_an_hf_file_and_then_the_model_is_ready(
    hub: str, tmp_path: Path
) -> None:
    config = tmp_path / "models.toml"
    config.write_text('[[models]]\nid = "tiny"\nsource = { hf = "org/tiny", file = "tiny.gguf" }\n')
    env = {**os.environ, "HF_ENDPOINT": hub, "HF_HOME": str(tmp_path / "hf")}
    before = tektra("models", "--config", str(config), env=env)
    assert "model 'tiny' is not downloaded yet: run `tektra models pull tiny`" in before.stdout
    started = time.monotonic()
    pulled = tektra("models", "pull", "tiny", "--config", str(config), env=env)
    assert pulled.returncode == 0, pulled.stderr
    path = Path(pulled.stdout.strip())
    assert path.read_bytes() == HubStandIn.data
    assert time.monotonic() - started < 60
    after = tektra("models", "--config", str(config), env=env)
    assert after.stdout.splitlines()[1].endswith("ready")
