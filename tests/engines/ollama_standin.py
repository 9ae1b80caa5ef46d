"""A stand-in for an Ollama server, for tests only.

No Ollama server can be installed on this machine (it is in none of the reachable registries), so
the Ollama backend is tested against this process instead. It implements the part of Ollama's
documented HTTP API the backend uses — /api/version, /api/tags, /api/show, /api/pull (streamed),
/api/generate (load/unload), /api/chat (streamed NDJSON, with base64 `images`), and its
OpenAI-compatible /v1/models and /v1/chat/completions (with `usage` when asked) — and answers with
real text from SmolLM2 through llama-cpp. Tools: `/api/chat` takes `tools` as Ollama documents
them (400 for a malformed one); SmolLM2-135M cannot pick a tool reliably, so with
`--tool-call '{"name": ..., "arguments": {...}}'` the stand-in answers every request that offers
tools with that call, in Ollama's `message.tool_calls` shape, as Ollama passes on whatever call
the model wrote (a request without tools gets SmolLM2's text, as always). Malformed requests are
rejected as Ollama rejects them (400 with an `error`), unknown models with 404. Every request body
is appended to a JSON-lines log so tests can see what reached the server.

    python -m tests.engines.ollama_standin --port P --gguf FILE --log FILE \\
        [--tag smollm2:135m] [--pullable other:tag] [--vision-tag tag] [--fail-after N]
        [--tool-call JSON]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import uvicorn
from llama_cpp import Llama
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ROLES = {"system", "user", "assistant", "tool"}


class StandIn:
    def __init__(self, args: argparse.Namespace) -> None:
        self.llm = Llama(model_path=args.gguf, n_ctx=2048, n_threads=1, verbose=False)
        self.lock = threading.Lock()
        self.tags = set(args.tag)
        self.pullable = set(args.pullable)
        self.vision = set(args.vision_tag)
        self.fail_after = args.fail_after
        self.tool_call: dict[str, Any] | None = (
            json.loads(args.tool_call) if args.tool_call else None
        )
        self.log = Path(args.log)

    def record(self, path: str, body: object) -> None:
        with self.log.open("a") as f:
            f.write(json.dumps({"path": path, "body": body}) + "\n")

    async def body(self, request: Request) -> dict[str, Any] | JSONResponse:
        try:
            data = await request.json()
        except json.JSONDecodeError:
            return error(400, "invalid JSON body")
        if not isinstance(data, dict):
            return error(400, "request body must be a JSON object")
        self.record(request.url.path, data)
        return data

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": "0.12.6"})

    async def tags_list(self, request: Request) -> Response:
        return JSONResponse(
            {"models": [{"name": t, "model": t, "size": 1} for t in sorted(self.tags)]}
        )

    async def show(self, request: Request) -> Response:
        data = await self.body(request)
        if isinstance(data, JSONResponse):
            return data
        tag = data.get("model")
        if tag not in self.tags:
            return error(404, f"model '{tag}' not found")
        capabilities = ["completion"] + (["vision"] if tag in self.vision else [])
        return JSONResponse(
            {
                "modelfile": f"FROM {tag}",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": {"format": "gguf", "family": "llama", "parameter_size": "135M"},
                "model_info": {"general.architecture": "llama"},
                "capabilities": capabilities,
                "modified_at": now(),
            }
        )

    async def pull(self, request: Request) -> Response:
        data = await self.body(request)
        if isinstance(data, JSONResponse):
            return data
        tag = data.get("model")
        if tag not in self.pullable:
            return error(500, "pull model manifest: file does not exist")

        def progress() -> Iterator[bytes]:
            yield line({"status": "pulling manifest"})
            for done in (0, 50, 100):
                yield line(
                    {
                        "status": "pulling 1234abcd",
                        "digest": "sha256:1234",
                        "total": 100,
                        "completed": done,
                    }
                )
            self.tags.add(str(tag))
            yield line({"status": "success"})

        return StreamingResponse(progress(), media_type="application/x-ndjson")

    async def generate(self, request: Request) -> Response:
        data = await self.body(request)
        if isinstance(data, JSONResponse):
            return data
        tag = data.get("model")
        if tag not in self.tags:
            return error(404, f'model "{tag}" not found, try pulling it first')
        reason = "unload" if data.get("keep_alive") == 0 else "load"
        return JSONResponse(
            {"model": tag, "created_at": now(), "response": "", "done": True, "done_reason": reason}
        )

    async def chat(self, request: Request) -> Response:
        data = await self.body(request)
        if isinstance(data, JSONResponse):
            return data
        tag = data.get("model")
        if not tag:
            return error(400, "model is required")
        if tag not in self.tags:
            return error(404, f'model "{tag}" not found, try pulling it first')
        messages = data.get("messages")
        if not isinstance(messages, list):
            return error(400, "messages must be an array")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                role = message.get("role") if isinstance(message, dict) else message
                return error(400, f"invalid role: {role}")
            for image in message.get("images") or []:
                try:
                    base64.b64decode(image, validate=True)
                except (binascii.Error, TypeError):
                    return error(400, "illegal base64 data in images")
        options = data.get("options") or {}
        tools = data.get("tools") or []
        names = []
        for tool in tools if isinstance(tools, list) else [None]:
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                return error(400, "invalid tool: a tool needs a function with a name")
            names.append(function["name"])
        if self.tool_call is not None and names:
            return StreamingResponse(self.call(str(tag)), media_type="application/x-ndjson")
        turns = [{"role": m["role"], "content": m.get("content", "")} for m in messages]
        return StreamingResponse(
            self.answer(str(tag), turns, options), media_type="application/x-ndjson"
        )

    def answer(
        self, tag: str, turns: list[dict[str, str]], options: dict[str, Any]
    ) -> Iterator[bytes]:
        # A plain iterator: Starlette runs it on a worker thread, so the server stays responsive.
        with self.lock:
            stream: Any = self.llm.create_chat_completion(
                messages=turns,  # type: ignore[arg-type]
                max_tokens=int(options.get("num_predict", 64)),
                temperature=float(options.get("temperature", 0.0)),
                seed=options.get("seed"),
                stop=options.get("stop"),
                stream=True,
            )
            count = 0
            for chunk in stream:
                text = chunk["choices"][0]["delta"].get("content")
                if not text:
                    continue
                if self.fail_after is not None and count == self.fail_after:
                    raise ConnectionResetError("stand-in told to break off mid-answer")
                count += 1
                yield line(
                    {
                        "model": tag,
                        "created_at": now(),
                        "message": {"role": "assistant", "content": text},
                        "done": False,
                    }
                )
        yield line(
            {
                "model": tag,
                "created_at": now(),
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 10,
                "eval_count": count,
            }
        )

    def call(self, tag: str) -> Iterator[bytes]:
        """The scripted tool call, as Ollama streams one: a message with `tool_calls`, then
        the closing chunk."""
        assert self.tool_call is not None
        function = {"name": self.tool_call["name"], "arguments": self.tool_call["arguments"]}
        message = {"role": "assistant", "content": "", "tool_calls": [{"function": function}]}
        yield line({"model": tag, "created_at": now(), "message": message, "done": False})
        yield line(
            {
                "model": tag,
                "created_at": now(),
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 10,
                "eval_count": 1,
            }
        )

    async def v1_models(self, request: Request) -> Response:
        """Ollama's OpenAI-compatible model list."""
        data = [
            {"id": t, "object": "model", "created": 0, "owned_by": "library"} for t in self.tags
        ]
        return JSONResponse({"object": "list", "data": data})

    async def v1_chat(self, request: Request) -> Response:
        """Ollama's OpenAI-compatible chat completions, streamed as server-sent events; with
        `stream_options.include_usage` a last chunk carries the token counts, as Ollama sends."""
        data = await self.body(request)
        if isinstance(data, JSONResponse):
            return data
        tag = data.get("model")
        if tag not in self.tags:
            return error(404, f'model "{tag}" not found, try pulling it first')
        usage_wanted = bool((data.get("stream_options") or {}).get("include_usage"))
        with self.lock:
            done: Any = self.llm.create_chat_completion(
                messages=data["messages"],
                max_tokens=int(data.get("max_tokens", 64)),
                temperature=float(data.get("temperature", 0.0)),
                seed=data.get("seed"),
                stop=data.get("stop"),
            )
        choice = done["choices"][0]
        # Chunks of whole words, not tokens: what a client counts must come from `usage`.
        words = choice["message"]["content"].split(" ")
        pieces = [w if i == 0 else f" {w}" for i, w in enumerate(words)]

        def chunk(delta: dict[str, str], finish: str | None) -> bytes:
            body = {
                "id": "chatcmpl-standin",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": tag,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(body)}\n\n".encode()

        def events() -> Iterator[bytes]:
            for piece in pieces:
                yield chunk({"role": "assistant", "content": piece}, None)
            yield chunk({}, choice["finish_reason"])
            if usage_wanted:
                last = json.loads(chunk({}, None)[len("data: ") :])
                last.update(choices=[], usage=done["usage"])
                yield f"data: {json.dumps(last)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


def line(obj: object) -> bytes:
    return (json.dumps(obj) + "\n").encode()


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--tag", action="append", default=[])
    parser.add_argument("--pullable", action="append", default=[])
    parser.add_argument("--vision-tag", action="append", default=[])
    parser.add_argument("--fail-after", type=int, default=None)
    parser.add_argument("--tool-call", default=None)
    args = parser.parse_args()
    server = StandIn(args)
    app = Starlette(
        routes=[
            Route("/api/version", server.version),
            Route("/api/tags", server.tags_list),
            Route("/api/show", server.show, methods=["POST"]),
            Route("/api/pull", server.pull, methods=["POST"]),
            Route("/api/generate", server.generate, methods=["POST"]),
            Route("/api/chat", server.chat, methods=["POST"]),
            Route("/v1/models", server.v1_models),
            Route("/v1/chat/completions", server.v1_chat, methods=["POST"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
