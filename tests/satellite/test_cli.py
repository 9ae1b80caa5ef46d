"""`tektra satellite`'s mistakes, said in words before anything starts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.daemon.conftest import ROOT, TEKTRA


def satellite(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [TEKTRA, "satellite", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_a_satellite_id_must_be_safe_in_topics() -> None:
    done = satellite("--id", "the kitchen", "--hub", "mqtt://127.0.0.1:1883")
    assert (done.returncode, done.stderr) == (
        1,
        "error [bad_option]: --id 'the kitchen': use letters, digits, - and _ (at most 64)\n",
    )


def test_the_hub_is_an_mqtt_broker_url() -> None:
    done = satellite("--id", "kitchen", "--hub", "http://hub.local")
    assert (done.returncode, done.stderr) == (
        1,
        "error [bad_option]: --hub 'http://hub.local': give the hub's broker as mqtt://host:port\n",
    )


def test_only_the_satellites_tables_of_models_toml_are_read_and_checked(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    # No [[models]] (a satellite needs none) and a bad [backends] (the hub's business): fine;
    # a bad [mqtt] value is the satellite's own mistake.
    config.write_text("[mqtt]\nqos = 7\n[backends]\nnonsense = 1\n")
    done = satellite("--id", "kitchen", "--hub", "mqtt://127.0.0.1:1", "--config", str(config))
    assert (done.returncode, done.stderr) == (
        1,
        f"{config}: 1 error(s)\n  mqtt.qos: must be at most 2 (got 7)\n",
    )
