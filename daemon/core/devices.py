"""Where an in-process engine runs a model: the `device` of `[backends.llama_cpp]`,
`[backends.mistral_rs]` and `[[models]]`.

- `auto`: the engine's GPU when it has one, else the CPU; a model whose GPU load fails is loaded
  again on the CPU (llama.cpp), and the log says so.
- `cpu`: the CPU.
- `cuda` / `metal`: that GPU, or a load error that says why (the engine build has no such GPU, or
  the machine has none), never a quiet run on the CPU. The manager then tries the model's next
  backend. `tektra validate` notes a `metal` or `cuda` that cannot exist on this kind of machine.

A model's `device` overrides its backend's.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterable
from typing import Any

from daemon.core.errors import ConfigIssue

GPU_NAME = {"cuda": "an NVIDIA GPU (CUDA)", "metal": "an Apple Silicon GPU (Metal)"}


class DeviceUnavailable(Exception):
    """The device asked for explicitly is not there; the message says what is."""


def platform_gpu() -> str:
    """The GPU kind a machine like this one can have: Metal on Apple Silicon, CUDA elsewhere."""
    apple = platform.system() == "Darwin" and platform.machine() == "arm64"
    return "metal" if apple else "cuda"


def choose(wanted: str, gpu: str | None, engine: str) -> str:
    """Where a model runs: `wanted` (a `daemon.core.config.schema.Device`) given the GPU the engine
    can use here (None: none)."""
    if wanted == "cpu":
        return "cpu"
    if wanted == "auto":
        return gpu or "cpu"
    if gpu == wanted:
        return wanted
    has = f"runs on {gpu}" if gpu is not None else "finds no GPU it can use and runs on the CPU"
    raise DeviceUnavailable(
        f'device = "{wanted}" asks for {GPU_NAME[wanted]}, but {engine} here {has}; '
        'write device = "auto" (a GPU when there is one) or "cpu"'
    )


def attempts(device: str, wanted: str) -> list[str]:
    """Devices to try loading on, in order: an `auto` GPU load that fails falls back to the CPU."""
    return [device, "cpu"] if wanted == "auto" and device != "cpu" else [device]


@functools.cache
def llama_cpp_gpu() -> str | None:
    """The GPU llama.cpp can offload to here (its build supports one and finds a device)."""
    import llama_cpp

    return platform_gpu() if llama_cpp.llama_supports_gpu_offload() else None


@functools.cache
def mistral_rs_build() -> tuple[str, str | None]:
    """(distribution, GPU) of the installed mistral.rs: its device is fixed by its build
    (`mistralrs` runs on the CPU; `mistralrs-cuda` and `mistralrs-metal` on their GPU)."""
    from importlib.metadata import packages_distributions

    dist = (packages_distributions().get("mistralrs") or ["mistralrs"])[0]
    gpu = next((kind for kind in ("cuda", "metal") if dist.lower().endswith(f"-{kind}")), None)
    return dist, gpu


def config_notes(sections: dict[str, Any]) -> list[ConfigIssue]:
    """A `cuda` or `metal` that cannot exist on this kind of machine (a file may be written for
    another, so this is a note; loading a model there fails with the reason)."""
    here = platform_gpu()
    backends = sections.get("backends")
    found: list[tuple[str, str]] = []
    for name in ("llama_cpp", "mistral_rs"):
        table = getattr(backends, name, None)
        found.append((f"backends.{name}.device", getattr(table, "device", "auto")))
    models: Iterable[Any] = sections.get("models") or []
    found += [
        (f"models[{i}].device", getattr(m, "device", None) or "auto") for i, m in enumerate(models)
    ]
    machine = f"{platform.system()} {platform.machine()}"
    return [
        ConfigIssue(
            path,
            f"'{device}' is {GPU_NAME[device]}, which a {machine} machine does not have: models "
            'there will not load (device = "auto" uses the CPU here)',
        )
        for path, device in found
        if device in GPU_NAME and device != here
    ]
