"""llama.cpp in-process, through llama-cpp-python.

Loading and generation run on worker threads (`daemon.models.backends.threaded`), so the loop never
waits on the engine. Each model has one lock held by the thread that uses it (llama.cpp contexts are
not thread-safe), taken on the worker thread rather than the loop. A model with an `mmproj` goes
through llama.cpp's multimodal chat handler (mtmd), which embeds images given as data URIs. A turn
with tools goes through llama-cpp-python's `chatml-function-calling` format (see `_tool_turn`).

Consecutive prompts that share a prefix (the system prompt, the earlier turns) reuse the KV cache
of that prefix: llama-cpp-python compares the new prompt with the tokens it evaluated last and
only evaluates the rest, which `GenerationStats.prompt_eval_tokens` reports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from daemon.core.config.schema import LlamaCppSettings
from daemon.core.devices import attempts, llama_cpp_gpu
from daemon.core.errors import BackendError, BackendLoadError
from daemon.core.user_templates import source_of
from daemon.models.backends.base import (
    GenerationRequest,
    GenerationStats,
    InProcessBackend,
    ModelSpec,
    ParamNames,
    ToolCall,
    openai_messages,
    tool_arguments,
)
from daemon.models.backends.threaded import Emit, stream_from_thread
from daemon.models.gguf_header import estimate_mb
from daemon.models.templates import Message, guess_family, template

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)

Formatter = Callable[[Sequence[Message]], tuple[str, tuple[str, ...], bool]]
"""messages -> (prompt text, stop sequences, whether the tokenizer should add BOS)."""


@dataclass
class _Loaded:
    llm: Llama
    format: Formatter
    lock: threading.Lock
    multimodal: bool = False
    """Loaded with an mmproj: prompts go through llama.cpp's multimodal chat handler."""
    device: str = "cpu"
    """Where it runs: `cpu`, `cuda` or `metal`."""


class LlamaCppBackend(InProcessBackend[_Loaded]):
    name: ClassVar[str] = "llama_cpp"
    library: ClassVar[str] = "llama_cpp"
    capabilities: ClassVar[frozenset[str]] = frozenset({"text", "image", "tools"})
    settings_model: ClassVar[type[LlamaCppSettings]] = LlamaCppSettings
    param_names: ClassVar[ParamNames] = {
        "max_tokens": "max_tokens",
        "temperature": "temperature",
        "top_p": "top_p",
        "top_k": "top_k",
        "min_p": "min_p",
        "repeat_penalty": "repeat_penalty",
        "seed": "seed",
    }

    def __init__(self, settings: LlamaCppSettings) -> None:
        super().__init__()
        self._settings = settings
        self._load_locks: dict[str, asyncio.Lock] = {}

    async def load(self, spec: ModelSpec) -> None:
        if spec.path is None:
            raise BackendLoadError(self.name, f"model '{spec.id}' has no local GGUF file")
        lock = self._load_locks.setdefault(spec.id, asyncio.Lock())
        async with lock:  # two requests never load the same model twice
            if spec.id not in self._models:
                self._models[spec.id] = await asyncio.to_thread(self._open, spec)

    def _open(self, spec: ModelSpec) -> _Loaded:
        assert spec.path is not None
        try:
            user_template = source_of(spec.chat_template) if spec.chat_template else None
        except OSError as exc:
            raise BackendLoadError(
                self.name, f"cannot read template '{spec.template}': {exc.strerror or exc}"
            ) from exc
        if user_template is not None and spec.mmproj is not None:
            # llama.cpp's multimodal handler writes its own prompt; never drop the user's quietly.
            raise BackendLoadError(
                self.name, f"template '{spec.template}' cannot be used with an mmproj model"
            )
        llm, handler, device = self._load_on_device(spec)
        if user_template is not None:
            form = _jinja_formatter(llm, user_template)
        else:
            form = _formatter(llm, spec.template)
        return _Loaded(llm, form, threading.Lock(), handler is not None, device)

    def _load_on_device(self, spec: ModelSpec) -> tuple[Llama, Any, str]:
        """The model loaded where its `device` says, with the device it ended up on."""
        device = self.device_of(spec)
        tries = attempts(device, spec.device or self._settings.device)
        for n, attempt in enumerate(tries, start=1):
            try:
                llm, handler = self._llama(spec, attempt)
            except (ValueError, RuntimeError, OSError) as exc:
                if n == len(tries):
                    raise BackendLoadError(self.name, f"cannot load {spec.path}: {exc}") from exc
                # device = "auto": a GPU that fails to take the model leaves the CPU to it.
                log.warning(
                    "%s: loading on %s failed (%s); loading on the CPU", spec.id, attempt, exc
                )
                continue
            return llm, handler, attempt
        raise AssertionError("attempts() is never empty")

    def _llama(self, spec: ModelSpec, device: str) -> tuple[Llama, Any]:
        from llama_cpp import Llama

        on_gpu = device != "cpu"
        handler = None
        if spec.mmproj is not None:
            from llama_cpp.llama_chat_format import MTMDChatHandler

            handler = MTMDChatHandler(
                clip_model_path=str(spec.mmproj), verbose=False, use_gpu=on_gpu
            )
        llm = Llama(
            model_path=str(spec.path),
            n_ctx=spec.context_length,
            n_threads=self._settings.n_threads or os.cpu_count() or 1,
            n_batch=self._settings.n_batch,
            n_gpu_layers=self._settings.n_gpu_layers if on_gpu else 0,
            chat_handler=handler,
            verbose=False,
        )
        return llm, handler

    def device_of(self, spec: ModelSpec) -> str:
        """Where the model runs once loaded (or would run); BackendLoadError when its explicit
        device is not here."""
        loaded = self._models.get(spec.id)
        if loaded is not None:
            return loaded.device
        return self.choose_device(
            spec.device or self._settings.device, llama_cpp_gpu(), "llama.cpp"
        )

    def release(self, loaded: _Loaded) -> None:
        with loaded.lock:
            loaded.llm.close()

    def estimate_memory_mb(self, spec: ModelSpec) -> int:
        # Compute buffers and the runtime come on top of weights and KV cache (measured ~60 MB).
        return estimate_mb(spec.path, spec.context_length, runtime_mb=64)

    def count_tokens(self, model_id: str, text: str) -> int | None:
        return len(self.tokenize(model_id, text)) if model_id in self._models else None

    def tokenize(self, model_id: str, text: str, special: bool = True) -> list[int]:
        """Tokens of `text` with the loaded model's vocabulary (special tokens parsed)."""
        llm = self._models[model_id].llm
        tokens: list[int] = llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        return tokens

    async def generate(
        self, model_id: str, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        loaded = self.loaded(model_id)
        if request.images and not loaded.multimodal:
            raise BackendError(self.name, f"model '{model_id}' has no mmproj to read images with")

        sampling = self.engine_params(request.params)

        def work(emit: Emit, cancel: threading.Event) -> None:
            _generate(loaded, request, sampling, stats, emit, cancel)

        async for chunk in stream_from_thread(self.name, f"llama_cpp:{model_id}", work):
            yield chunk


def _generate(
    loaded: _Loaded,
    request: GenerationRequest,
    engine_params: dict[str, Any],
    stats: GenerationStats,
    emit: Emit,
    cancel: threading.Event,
) -> None:
    import jinja2
    import llama_cpp

    params = request.params
    with loaded.lock:
        if cancel.is_set():
            stats.finish_reason = "cancelled"
            return
        llm = loaded.llm
        sampling: dict[str, Any] = {**engine_params, "stream": True}
        llama_cpp.llama_perf_context_reset(llm.ctx)
        # Checked by llama.cpp while it computes, so a long prompt being read stops too (the
        # check between chunks below comes only once the first token is out).
        abort = llama_cpp.ggml_abort_callback(lambda _: cancel.is_set())
        llama_cpp.llama_set_abort_callback(llm.ctx, abort, None)
        if request.tools and not request.images:
            stream: Any = _tool_turn(llm, request, engine_params, stats)
        elif loaded.multimodal:
            # The multimodal chat handler writes the prompt itself and embeds the images.
            stream = llm.create_chat_completion(
                messages=openai_messages(request), stop=list(params.stop) or None, **sampling
            )
        else:
            try:
                prompt, stops, add_bos = loaded.format(request.messages)
            except (jinja2.TemplateError, ValueError, TypeError) as exc:
                # A Jinja template's own raise_exception(), or one that fails on these turns.
                raise BackendError("llama_cpp", f"the chat template failed: {exc}") from exc
            # The whole prompt, so a user writing a template can see what it renders.
            log.debug("prompt: %r", prompt)
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)
            stats.prompt_tokens = len(tokens)
            stop = list(dict.fromkeys(stops + params.stop))
            stream = llm.create_completion(tokens, stop=stop, **sampling)
        try:
            for chunk in stream:
                if cancel.is_set():
                    stats.finish_reason = "cancelled"
                    break
                choice = chunk["choices"][0]
                text = choice["delta"].get("content") if "delta" in choice else choice["text"]
                if text:
                    emit(text)
                if choice["finish_reason"]:
                    stats.finish_reason = choice["finish_reason"]
        except RuntimeError:  # "llama_decode returned 2": the abort callback said stop
            if not cancel.is_set():
                raise
            stats.finish_reason = "cancelled"
        finally:
            stream.close()
            llama_cpp.llama_set_abort_callback(llm.ctx, llama_cpp.ggml_abort_callback(), None)
        perf = llama_cpp.llama_perf_context(llm.ctx)
        stats.prompt_eval_tokens = perf.n_p_eval
        # Each sampled token is evaluated when the next one is sampled, so the last is never
        # evaluated: an end-of-generation token (finish `stop`) is not part of the answer, but
        # the last token of an answer cut at max_tokens (or cancelled) is.
        cut = stats.finish_reason in ("length", "cancelled")
        stats.completion_tokens = perf.n_eval + (1 if cut else 0)
        if loaded.multimodal:
            stats.prompt_tokens = llm.n_tokens - perf.n_eval
        stats.timings_ms.update(prompt_eval=perf.t_p_eval_ms, generation=perf.t_eval_ms)


def _tool_turn(
    llm: Llama, request: GenerationRequest, engine_params: dict[str, Any], stats: GenerationStats
) -> Iterator[dict[str, Any]]:
    """One turn of a model given tools, through llama-cpp-python's `chatml-function-calling`
    format (a ChatML prompt that lists the tools; a grammar keeps each call's arguments to its
    schema), as one chunk shaped like a streamed one. Its calls go to `stats.tool_calls`."""
    from llama_cpp.llama_chat_format import chatml_function_calling

    choice: Any = "auto"
    if request.tool_choice is not None:
        choice = {"type": "function", "function": {"name": request.tool_choice}}
    done: Any = chatml_function_calling(
        llama=llm,
        messages=openai_messages(request),
        tools=[t.openai() for t in request.tools],
        tool_choice=choice,
        stop=list(request.params.stop),
        **engine_params,
    )
    first = done["choices"][0]
    message = first["message"]
    for call in message.get("tool_calls") or []:
        function = call["function"]
        stats.tool_calls.append(ToolCall(function["name"], tool_arguments(function["arguments"])))
    stats.prompt_tokens = done["usage"]["prompt_tokens"]
    content = message.get("content") or ""
    yield {"choices": [{"delta": {"content": content}, "finish_reason": first["finish_reason"]}]}


def _formatter(llm: Llama, family: str) -> Formatter:
    """How this model's prompts are written: our family template, else the GGUF's own."""
    meta: dict[str, str] = llm.metadata
    embedded = meta.get("tokenizer.chat_template")
    if family == "auto" and embedded:
        return _jinja_formatter(llm, embedded)
    if family == "auto":
        family = guess_family(meta.get("general.architecture", ""), meta.get("general.name", ""))
    chosen = template(family)

    def render(messages: Sequence[Message]) -> tuple[str, tuple[str, ...], bool]:
        prompt = chosen.render(messages)
        return prompt, chosen.stop, not (chosen.bos and prompt.startswith(chosen.bos))

    return render


def _jinja_formatter(llm: Llama, source: str) -> Formatter:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    eos = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
    jinja = Jinja2ChatFormatter(source, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id])

    def render(messages: Sequence[Message]) -> tuple[str, tuple[str, ...], bool]:
        turns: list[Any] = [{"role": m.role, "content": m.content} for m in messages]
        result = jinja(messages=turns)
        extra = (
            result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        )
        stops = tuple(dict.fromkeys(s for s in [eos, *extra] if s))
        return result.prompt, stops, not result.added_special

    return render
