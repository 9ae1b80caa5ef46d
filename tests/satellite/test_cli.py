"""`tektra satellite`'s mistakes, said in words before anything starts."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

from daemon.frontends.satellites import start
from daemon.frontends.satellites.station import SatelliteSettings
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


def test_a_satellite_with_no_id_anywhere_asks_for_one(tmp_path: Path) -> None:
    config = tmp_path / "satellite.toml"
    config.write_text('[mqtt]\nbroker = "mqtt://127.0.0.1:1"\n')
    done = satellite("--config", str(config))
    assert (done.returncode, done.stderr) == (
        1,
        "error [bad_option]: which satellite is this? give --id NAME, or [satellite] id in "
        "models.toml\n",
    )


def test_a_satellite_table_is_checked_like_the_rest_of_the_file(tmp_path: Path) -> None:
    config = tmp_path / "satellite.toml"
    config.write_text('[satellite]\nid = "the kitchen"\nroom = ""\nmic = "hdmi"\n')
    done = satellite("--config", str(config))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{config}: 3 error(s)",
        "  satellite.id: use letters, digits, - and _ (at most 64) (got 'the kitchen')",
        "  satellite.room: must not be empty",
        "  satellite.mic: unknown key",
    ]


def test_the_readmes_satellite_file_names_it_all_without_flags(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```toml\n[satellite]\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "satellite.toml"
    config.write_text("[satellite]\n" + block)
    flags = argparse.Namespace(
        config=config, id=None, room=None, node=None, hub=None, input=None, output=None, wake=None
    )
    settings, read = start._settings(flags, start._config(config))
    assert settings == SatelliteSettings("kitchen", "Kitchen", "tektra", "auto", "auto")
    assert read.mqtt.broker == "mqtt://hub.local:1883"
