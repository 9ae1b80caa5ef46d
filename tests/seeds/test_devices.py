"""Where llama.cpp and mistral.rs run a model: `device = "auto" | "cpu" | "cuda" | "metal"`.

This machine has no GPU and its engines are CPU builds: `auto` must run on the CPU, and an
explicit GPU must fail to load with a reason, never run on the CPU unasked."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.core.config.load import check_file, inspect_file
from daemon.core.config.schema import LlamaCppSettings, MistralRsSettings
from daemon.core.devices import DeviceUnavailable, attempts, choose, llama_cpp_gpu
from daemon.core.errors import BackendLoadError
from daemon.models.backends.base import (
    GenerationParams,
    GenerationRequest,
    GenerationStats,
    ModelSpec,
)
from daemon.models.backends.llama_cpp import LlamaCppBackend
from daemon.models.backends.mistral_rs import MistralRsBackend
from daemon.models.templates import Message
from tests.conftest import SMOLLM2_SOURCE

TEKTRA = str(Path(sys.executable).with_name("tektra"))
NO_CUDA_HERE = (
    'llama_cpp: device = "cuda" asks for an NVIDIA GPU (CUDA), but llama.cpp here finds no GPU '
    'it can use and runs on the CPU; write device = "auto" (a GPU when there is one) or "cpu"'
)

pytestmark = pytest.mark.skipif(llama_cpp_gpu() is not None, reason="this machine has a GPU")


def spec(path: Path, device: str | None = None) -> ModelSpec:
    return ModelSpec(
        id="smollm2",
        path=path,
        remote_name=None,
        template="auto",
        context_length=2048,
        capabilities=frozenset({"text"}),
        device=device,
    )


async def test_auto_runs_llama_cpp_on_the_cpu_of_a_machine_without_a_gpu(
    smollm2_path: Path,
) -> None:
    engine = LlamaCppBackend(LlamaCppSettings(n_threads=2))
    assert engine.device_of(spec(smollm2_path)) == "cpu"
    await engine.load(spec(smollm2_path))
    request = GenerationRequest(
        (Message("user", "Say hi."),), GenerationParams(max_tokens=4, temperature=0.0)
    )
    try:
        answer = "".join([c async for c in engine.generate("smollm2", request, GenerationStats())])
        assert answer
        assert engine.device_of(spec(smollm2_path)) == "cpu"
    finally:
        await engine.close()


async def test_explicit_cuda_without_one_is_a_load_error_not_a_cpu_run(smollm2_path: Path) -> None:
    engine = LlamaCppBackend(LlamaCppSettings(n_threads=2, device="cuda"))
    with pytest.raises(BackendLoadError) as raised:
        await engine.load(spec(smollm2_path))
    assert raised.value.message == NO_CUDA_HERE
    assert engine.loaded_ids() == []


async def test_a_models_device_overrides_its_backends(smollm2_path: Path) -> None:
    engine = LlamaCppBackend(LlamaCppSettings(n_threads=2, device="cuda"))
    try:
        await engine.load(spec(smollm2_path, device="cpu"))
        assert engine.device_of(spec(smollm2_path)) == "cpu"
    finally:
        await engine.close()
    engine = LlamaCppBackend(LlamaCppSettings(n_threads=2, device="cpu"))
    with pytest.raises(BackendLoadError, match=r'^llama_cpp: device = "cuda" asks for'):
        await engine.load(spec(smollm2_path, device="cuda"))


def test_mistral_rs_runs_where_its_build_does(smollm2_path: Path) -> None:
    assert MistralRsBackend(MistralRsSettings()).device_of(spec(smollm2_path)) == "cpu"
    assert MistralRsBackend(MistralRsSettings(device="cpu")).device_of(spec(smollm2_path)) == "cpu"
    with pytest.raises(BackendLoadError) as raised:
        MistralRsBackend(MistralRsSettings()).device_of(spec(smollm2_path, device="metal"))
    assert raised.value.message == (
        'mistral_rs: device = "metal" asks for an Apple Silicon GPU (Metal), but mistral.rs '
        "(mistralrs) here finds no GPU it can use and runs on the CPU; write "
        'device = "auto" (a GPU when there is one) or "cpu"'
    )


def test_auto_falls_back_to_the_cpu_only_when_a_gpu_load_fails() -> None:
    # The order of loads tried: a GPU that fails to take the model leaves it to the CPU, but
    # only under `auto`; an explicit GPU that fails is that failure.
    assert attempts("cuda", "auto") == ["cuda", "cpu"]
    assert attempts("metal", "auto") == ["metal", "cpu"]
    assert attempts("cuda", "cuda") == ["cuda"]
    assert attempts("cpu", "auto") == ["cpu"]
    assert choose("auto", "cuda", "llama.cpp") == "cuda"
    assert choose("auto", None, "llama.cpp") == "cpu"
    assert choose("cpu", "cuda", "llama.cpp") == "cpu"
    assert choose("metal", "metal", "llama.cpp") == "metal"
    with pytest.raises(DeviceUnavailable, match=r"but llama\.cpp here runs on cuda"):
        choose("metal", "cuda", "llama.cpp")


def test_tektra_models_shows_where_each_model_runs(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        f'[[models]]\nid = "smollm2"\nsource = {SMOLLM2_SOURCE}\n'
        f'[[models]]\nid = "on-gpu"\nsource = {SMOLLM2_SOURCE}\ndevice = "cuda"\n'
    )
    run = subprocess.run(
        [TEKTRA, "models", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)},  # no daemon there: in-process
        check=False,
    )
    assert run.returncode == 0, run.stderr
    header, first, second = run.stdout.splitlines()
    assert header.split()[:3] == ["ID", "BACKEND", "DEVICE"]
    assert first.split()[:3] == ["smollm2", "llama_cpp", "cpu"]
    assert second.split()[:3] == ["on-gpu", "llama_cpp", "-"]
    assert second.endswith(NO_CUDA_HERE)


@pytest.mark.skipif(platform.system() == "Darwin", reason="Metal may exist there")
def test_validate_notes_a_gpu_this_kind_of_machine_cannot_have(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        '[backends.llama_cpp]\ndevice = "metal"\n'
        f'[[models]]\nid = "smollm2"\nsource = {SMOLLM2_SOURCE}\ndevice = "cuda"\n'
    )
    loaded, issues, notes = inspect_file(config)
    assert issues == [] and loaded is not None
    assert [str(n) for n in notes] == [
        "backends.llama_cpp.device: 'metal' is an Apple Silicon GPU (Metal), which a "
        f"{platform.system()} {platform.machine()} machine does not have: models there will "
        'not load (device = "auto" uses the CPU here)'
    ]


def test_no_gpu_layers_with_a_gpu_device_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        "[backends.llama_cpp]\nn_gpu_layers = 0\n"
        f'[[models]]\nid = "smollm2"\nsource = {SMOLLM2_SOURCE}\n'
    )
    assert [str(i) for i in check_file(config)[1]] == [
        'backends.llama_cpp.n_gpu_layers: 0 offloads no layer to the GPU that device = "auto" '
        'allows; write device = "cpu" to run on the CPU'
    ]
