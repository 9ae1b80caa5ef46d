"""A stand-in for Anthropic's Messages API, for tests only.

No Anthropic server exists here (it is a remote service, and this machine reaches nothing but the
package registries), so the anthropic backend is tested against this process instead. It speaks
the part of the documented API the backend uses: `GET /v1/models`, `GET /v1/models/{id}`, and
`POST /v1/messages` with `"stream": true`, answered as the documented server-sent events
(`message_start` with the input token count, `content_block_start`, `ping`,
`content_block_delta` with `text_delta`s, `content_block_stop`, `message_delta` with the stop
reason and output token count, `message_stop`). Requests are checked as the API checks them:
the key (`x-api-key`, or `Authorization: Bearer`, which the official client sends since its
2.x versions) and the `anthropic-version` header (401 / 400), a known model (404), `max_tokens`,
turns that start with the user and alternate, content blocks of type `text` or `image` with a
base64 source of a supported media type; errors come in the API's
`{"type": "error", "error": {"type": …, "message": …}}` shape. The text is real: SmolLM2 answers
through llama-cpp (it reads no images; they are checked and recorded). Every request is appended
with its headers to a JSON-lines log, so tests can see what reached the server.

    python -m tests.engines.anthropic_standin --port P --gguf FILE --log FILE --key KEY \\
        [--model claude-standin]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from llama_cpp import Llama
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MEDIA_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
CREATED = "2026-01-01T00:00:00Z"


class StandIn:
    def __init__(self, args: argparse.Namespace) -> None:
        self.llm = Llama(model_path=args.gguf, n_ctx=2048, n_threads=1, verbose=False)
        self.lock = threading.Lock()
        self.models = set(args.model)
        self.key = args.key
        self.log = Path(args.log)

    def record(self, request: Request, body: object) -> None:
        wanted = ("x-api-key", "authorization", "anthropic-version")
        headers = {k: v for k, v in request.headers.items() if k in wanted}
        with self.log.open("a") as f:
            f.write(json.dumps({"path": request.url.path, "headers": headers, "body": body}) + "\n")

    def refused(self, request: Request) -> JSONResponse | None:
        keys = {request.headers.get("x-api-key"), request.headers.get("authorization")}
        if not keys & {self.key, f"Bearer {self.key}"}:
            return error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return error(400, "invalid_request_error", "anthropic-version header is required")
        return None

    def model_info(self, model: str) -> dict[str, str]:
        return {"type": "model", "id": model, "display_name": model, "created_at": CREATED}

    async def models_list(self, request: Request) -> Response:
        self.record(request, None)
        refused = self.refused(request)
        if refused is not None:
            return refused
        data = [self.model_info(m) for m in sorted(self.models)]
        return JSONResponse(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    async def model_get(self, request: Request) -> Response:
        self.record(request, None)
        refused = self.refused(request)
        if refused is not None:
            return refused
        model = request.path_params["model"]
        if model not in self.models:
            return error(404, "not_found_error", f"model: {model}")
        return JSONResponse(self.model_info(model))

    async def messages(self, request: Request) -> Response:
        try:
            data = await request.json()
        except json.JSONDecodeError:
            return error(400, "invalid_request_error", "invalid JSON body")
        self.record(request, data)
        refused = self.refused(request)
        if refused is not None:
            return refused
        problem = check(data)
        if problem is not None:
            return error(400, "invalid_request_error", problem)
        if data["model"] not in self.models:
            return error(404, "not_found_error", f"model: {data['model']}")
        if data.get("stream") is not True:
            return error(400, "invalid_request_error", "this stand-in only streams")
        turns = [{"role": "system", "content": system_text(data.get("system"))}] + [
            {"role": m["role"], "content": text_of(m["content"])} for m in data["messages"]
        ]
        return StreamingResponse(self.answer(data, turns), media_type="text/event-stream")

    def answer(self, data: dict[str, Any], turns: list[dict[str, str]]) -> Iterator[bytes]:
        # A plain iterator: Starlette runs it on a worker thread, so the server stays responsive.
        model = data["model"]
        with self.lock:
            done: Any = self.llm.create_chat_completion(
                messages=turns,  # type: ignore[arg-type]
                max_tokens=int(data["max_tokens"]),
                temperature=float(data.get("temperature", 0.0)),
                stop=data.get("stop_sequences"),
            )
        text = done["choices"][0]["message"]["content"]
        words = text.split(" ")
        usage = done["usage"]
        yield event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_standin",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": 1},
                },
            },
        )
        yield event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        yield event("ping", {"type": "ping"})
        for i, word in enumerate(words):
            piece = word if i == 0 else f" {word}"
            yield event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        yield event("content_block_stop", {"type": "content_block_stop", "index": 0})
        finish = done["choices"][0]["finish_reason"]
        yield event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": "max_tokens" if finish == "length" else "end_turn",
                    "stop_sequence": None,
                },
                "usage": {"output_tokens": usage["completion_tokens"]},
            },
        )
        yield event("message_stop", {"type": "message_stop"})


def check(data: object) -> str | None:
    """What the Messages API would refuse in this body, in its words; None when it is valid."""
    if not isinstance(data, dict):
        return "request body must be a JSON object"
    if not isinstance(data.get("model"), str):
        return "model: Field required"
    if not isinstance(data.get("max_tokens"), int) or data["max_tokens"] < 1:
        return "max_tokens: Field required (an integer of at least 1)"
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if message["role"] != ("user" if i % 2 == 0 else "assistant"):
            return f"messages.{i}: roles must alternate between user and assistant, from user"
        content = message.get("content")
        if isinstance(content, list):
            for j, block in enumerate(content):
                problem = check_block(block)
                if problem is not None:
                    return f"messages.{i}.content.{j}: {problem}"
        elif not isinstance(content, str):
            return f"messages.{i}.content: a string or a list of content blocks"
    system = data.get("system")
    if system is not None and not isinstance(system, (str, list)):
        return "system: a string or a list of text blocks"
    for key, low, high in (("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0)):
        value = data.get(key)
        if value is not None and not (isinstance(value, (int, float)) and low <= value <= high):
            return f"{key}: must be between {low} and {high}"
    return None


def check_block(block: object) -> str | None:
    if not isinstance(block, dict):
        return "a content block must be an object"
    if block.get("type") == "text":
        return None if isinstance(block.get("text"), str) else "text: Field required"
    if block.get("type") != "image":
        return f"unsupported content block type {block.get('type')!r}"
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        return "image.source: a base64 source is required"
    if source.get("media_type") not in MEDIA_TYPES:
        return f"image.source.media_type: one of {', '.join(sorted(MEDIA_TYPES))}"
    try:
        base64.b64decode(str(source.get("data")), validate=True)
    except binascii.Error:
        return "image.source.data: invalid base64 data"
    return None


def text_of(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(b["text"] for b in content if b["type"] == "text")


def system_text(system: object) -> str:
    if isinstance(system, list):
        return "".join(b.get("text", "") for b in system if isinstance(b, dict))
    return str(system or "")


def event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def error(status: int, kind: str, message: str) -> JSONResponse:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=status)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", action="append", default=[])
    args = parser.parse_args()
    server = StandIn(args)
    app = Starlette(
        routes=[
            Route("/v1/models", server.models_list),
            Route("/v1/models/{model:path}", server.model_get),
            Route("/v1/messages", server.messages, methods=["POST"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
