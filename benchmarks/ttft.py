"""Time to first token through the model manager: the system prompt cached versus cold.

Cold: each question comes with a system prompt the engine has not seen, so the whole prompt is
evaluated. Cached: the same system prompt as the previous turn, so only the new question is.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from benchmarks.common import Figure, Section, median
from daemon.core.config.load import load_config
from daemon.models.manager.manager import Query, UnifiedModelManager

QUESTIONS = [
    "What is the capital of France?",
    "Turn on the kitchen lights.",
    "How far away is the moon?",
    "What time is it in Tokyo?",
    "Set a timer for ten minutes.",
]
# A realistic assistant prompt (~130 tokens). The variant tag comes first so that a "cold"
# prompt shares no prefix with the one before it.
SYSTEM = " ".join(
    [
        "[{n}] You are Tektra, a voice assistant in a family home.",
        "You control lights, heating, the radio and timers, answer questions about the weather",
        "and general knowledge, and describe what the camera sees when asked.",
        "Answer in one or two short sentences, without lists or markdown,",
        "because your answer is spoken aloud.",
        "If you are not sure what was asked, ask one short question back.",
        "Never invent device states; say when you do not know.",
        "Use metric units and the 24-hour clock. Be warm and plain, like a helpful neighbour.",
    ]
)


async def first_chunk_s(manager: UnifiedModelManager, question: str, session: str) -> float:
    started = time.perf_counter()
    async for _ in manager.answer(Query(question, session=session, preset="fast")):
        return time.perf_counter() - started
    raise RuntimeError("no chunk")


async def measure(config_path: Path, rounds: int) -> Section:
    config = load_config(config_path)
    manager = UnifiedModelManager(config)
    await manager.load_model(config.default_model_id or "smollm2")
    manager.set_system_prompt(SYSTEM.format(n="warm-up"))
    await first_chunk_s(manager, QUESTIONS[0], "warm-up")  # first-call costs are not the prompt's
    cold: list[float] = []
    cached: list[float] = []
    try:
        for r in range(rounds):
            for i, question in enumerate(QUESTIONS):
                manager.set_system_prompt(SYSTEM.format(n=f"{r}-{i}"))  # never seen: cold
                cold.append(await first_chunk_s(manager, question, f"cold-{r}-{i}"))
                # Same system prompt again, another question, a fresh session: only the question
                # differs from what the engine evaluated last.
                cached.append(await first_chunk_s(manager, QUESTIONS[i - 1], f"warm-{r}-{i}"))
    finally:
        await manager.close()
    ratio = median(cached) / median(cold)
    return Section(
        "Time to first token: system prompt cached vs cold",
        [
            Figure(
                "TTFT, cold (median)",
                f"{median(cold) * 1000:.0f} ms",
                how=f"{len(cold)} questions, each with a system prompt never seen before",
            ),
            Figure(
                "TTFT, cached (median)",
                f"{median(cached) * 1000:.0f} ms",
                how="same system prompt as the turn before, another question",
            ),
            Figure(
                "cached / cold",
                f"{ratio:.2f}",
                "≤ 0.5",
                ratio <= 0.5,
                "llama.cpp reuses the KV cache of the shared prompt prefix",
            ),
        ],
    )


def run(config_path: Path, rounds: int = 3) -> Section:
    return asyncio.run(measure(config_path, rounds))
