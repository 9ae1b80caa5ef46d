"""mistral.rs in-process, through its `mistralrs` Python wheel.

A local GGUF loads offline (`Which.GGUF` with `token_source="none"`); with an `mmproj` and the
original model's config directory (`hf_config`) it loads as a vision model. The engine's API is
synchronous, so loading runs in a worker thread and streaming goes through
`daemon.models.backends.threaded`. Its CPU kernels use rayon's global pool, whose size is
fixed by `RAYON_NUM_THREADS` the first time mistral.rs runs: on a small CPU an uncapped pool
fights every other thread and answers slow to a crawl, so the cap is set before the first load.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from daemon.core.config.schema import MistralRsSettings
from daemon.core.devices import mistral_rs_build
from daemon.core.errors import BackendError, BackendLoadError
from daemon.core.user_templates import source_of
from daemon.models.backends.base import (
    GenerationRequest,
    GenerationStats,
    InProcessBackend,
    ModelSpec,
    ParamNames,
    openai_messages,
)
from daemon.models.backends.threaded import Emit, stream_from_thread
from daemon.models.gguf_header import estimate_mb
from daemon.models.templates import template

RAYON_THREADS = "RAYON_NUM_THREADS"


@dataclass
class _Loaded:
    runner: Any
    family: str
    """`auto` (the GGUF's own chat template) or the family whose prompt we render ourselves."""
    lock: threading.Lock
    device: str
    """Where it runs: `cpu`, `cuda` or `metal` (the build's)."""


class MistralRsBackend(InProcessBackend[_Loaded]):
    name: ClassVar[str] = "mistral_rs"
    library: ClassVar[str] = "mistralrs"
    capabilities: ClassVar[frozenset[str]] = frozenset({"text", "image"})
    settings_model: ClassVar[type[MistralRsSettings]] = MistralRsSettings
    param_names: ClassVar[ParamNames] = {
        "max_tokens": "max_tokens",
        "temperature": "temperature",
        "top_p": "top_p",
        "top_k": "top_k",
        "min_p": "min_p",
        "repeat_penalty": "repetition_penalty",
        "seed": None,
    }
    cannot: ClassVar[dict[str, str]] = {
        # Its only seed is the Runner's, and on a CPU it refuses even that ("cannot seed the
        # CPU rng"): answers at a temperature above 0 are not reproducible on mistral.rs.
        "seed": "mistral.rs takes no seed per request; answers above temperature 0 vary",
    }

    def __init__(self, settings: MistralRsSettings) -> None:
        super().__init__()
        self._settings = settings
        self._load_lock = asyncio.Lock()

    def threads(self) -> int:
        # One core is left to the event loop, audio capture and speech recognition.
        return self._settings.threads or max(1, (os.cpu_count() or 2) - 1)

    async def load(self, spec: ModelSpec) -> None:
        if spec.path is None or not spec.path.is_file():
            raise BackendLoadError(self.name, f"model '{spec.id}' has no local GGUF file")
        async with self._load_lock:
            if spec.id not in self._models:
                device = await asyncio.to_thread(self.device_of, spec)
                runner = await asyncio.to_thread(self._open, spec)
                # With a user's template mistral.rs writes the prompt from the messages itself.
                family = "auto" if spec.chat_template is not None else spec.template
                self._models[spec.id] = _Loaded(runner, family, threading.Lock(), device)

    def _open(self, spec: ModelSpec) -> Any:
        assert spec.path is not None
        os.environ.setdefault(RAYON_THREADS, str(self.threads()))
        from mistralrs import Runner, Which

        which = Which.GGUF(
            quantized_model_id=str(spec.path.parent),
            quantized_filename=spec.path.name,
            mmproj_filename=spec.mmproj.name if spec.mmproj is not None else None,
            tok_model_id=str(spec.hf_config) if spec.hf_config is not None else None,
        )
        with tempfile.TemporaryDirectory(prefix="tektra-template-") as scratch:
            try:
                # mistral.rs reads a user's template from a file (`jinja_explicit`), at load.
                jinja = self._template_file(spec, Path(scratch))
                # The stub types Which.GGUF as a nested class rather than a Which member.
                return Runner(
                    which=which,  # type: ignore[arg-type]
                    token_source="none",
                    max_seqs=4,
                    jinja_explicit=jinja,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise BackendLoadError(self.name, f"cannot load {spec.path}: {exc}") from exc

    def _template_file(self, spec: ModelSpec, scratch: Path) -> str | None:
        """The user's template as a file for mistral.rs, or None for the model's own."""
        if spec.chat_template is None:
            return None
        try:
            text = source_of(spec.chat_template)
        except OSError as exc:
            raise BackendLoadError(
                self.name, f"cannot read template '{spec.template}': {exc.strerror or exc}"
            ) from exc
        path = scratch / "template.jinja"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def device_of(self, spec: ModelSpec) -> str:
        """Where the model runs: fixed by the installed build of mistral.rs (its Python API has
        no device choice), so an explicit device the build does not run on is a load error."""
        loaded = self._models.get(spec.id)
        if loaded is not None:
            return loaded.device
        dist, gpu = mistral_rs_build()
        wanted = spec.device or self._settings.device
        if wanted == "cpu" and gpu is not None:
            raise BackendLoadError(
                self.name,
                f'device = "cpu", but the installed mistral.rs build ({dist}) runs on {gpu}; '
                "install the CPU build (mistralrs) or choose the llama_cpp backend",
            )
        return self.choose_device(wanted, gpu, f"mistral.rs ({dist})")

    def release(self, loaded: _Loaded) -> None:
        # Dropping the runner frees the model once no generation holds it.
        with loaded.lock:
            loaded.runner = None

    def estimate_memory_mb(self, spec: ModelSpec) -> int:
        return estimate_mb(spec.path, spec.context_length, runtime_mb=96)

    async def generate(
        self, model_id: str, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        loaded = self.loaded(model_id)

        sampling = self.engine_params(request.params)

        def work(emit: Emit, cancel: threading.Event) -> None:
            _generate(loaded, request, sampling, stats, emit, cancel)

        async for chunk in stream_from_thread(self.name, f"mistral_rs:{model_id}", work):
            yield chunk


def _generate(
    loaded: _Loaded,
    request: GenerationRequest,
    sampling: dict[str, Any],
    stats: GenerationStats,
    emit: Emit,
    cancel: threading.Event,
) -> None:
    from mistralrs import ChatCompletionRequest

    params = request.params
    stop = list(params.stop)
    messages: Any = openai_messages(request)
    if loaded.family != "auto" and not request.images:
        # A pretemplated prompt: mistral.rs takes a plain string as the whole prompt.
        chosen = template(loaded.family)
        messages = chosen.render(request.messages)
        stop += [s for s in chosen.stop if s not in stop]
    call = ChatCompletionRequest(
        model="default",
        messages=messages,
        stop_seqs=stop or None,
        stream=True,
        **sampling,
    )
    with loaded.lock:
        if loaded.runner is None:
            raise BackendError("mistral_rs", "the model was unloaded")
        for chunk in loaded.runner.send_chat_completion_request(call):
            if cancel.is_set():
                stats.finish_reason = "cancelled"
                break
            choice = chunk.choices[0]
            if choice.delta.content:
                emit(choice.delta.content)
            if choice.finish_reason:
                stats.finish_reason = choice.finish_reason
            if chunk.usage is not None:  # the last chunk: the engine's own token counts
                stats.prompt_tokens = chunk.usage.prompt_tokens
                stats.completion_tokens = chunk.usage.completion_tokens
