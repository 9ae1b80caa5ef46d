"""An image through llama.cpp's real multimodal path (mtmd + clip) with the tiny Gemma3 fixture.

The fixture (fixtures/models/, made by make_tiny_vlm.py) has random weights: its words mean
nothing, so these tests assert on the path instead: the image is embedded as 16 tokens between
<start_of_image> and <end_of_image>, and what the image shows changes the model's output.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_cpp import Llama
from llama_cpp.llama_chat_format import MTMDChatHandler
from llama_cpp.llama_types import (
    ChatCompletionRequestMessageContentPart,
    ChatCompletionRequestUserMessage,
)

from daemon.models.media import data_uri
from tests.conftest import png

MODELS = Path(__file__).parents[2] / "fixtures" / "models"
TEXT_MODEL = MODELS / "tiny-gemma3-vlm.gguf"
MMPROJ = MODELS / "tiny-gemma3-vlm-mmproj.gguf"
SCRIPT = MODELS / "make_tiny_vlm.py"
IMAGE_EMBEDDINGS = 16  # (64 px / 8 px patches)^2 = 64 patches, average-pooled 2x2
IMAGE_MARKERS = 2  # <start_of_image> and <end_of_image>
QUESTION = "What is in this picture?"
BLACK, WHITE = 0, 255  # grey levels of the flat 64x64 test images


@pytest.fixture(scope="module")
def llm() -> Iterator[Llama]:
    model = Llama(
        model_path=str(TEXT_MODEL),
        chat_handler=MTMDChatHandler(clip_model_path=str(MMPROJ), use_gpu=False),
        n_ctx=256,
        n_threads=1,
        logits_all=True,  # needed for logprobs
        verbose=False,
    )
    yield model
    model.close()


def ask(llm: Llama, image: int | None) -> dict[str, Any]:
    """One greedy token for the question, with the image before it when there is one."""
    content: list[ChatCompletionRequestMessageContentPart] = [{"type": "text", "text": QUESTION}]
    if image is not None:
        content.insert(0, {"type": "image_url", "image_url": {"url": data_uri(png(64, 64, image))}})
    message: ChatCompletionRequestUserMessage = {"role": "user", "content": content}
    response = llm.create_chat_completion(
        messages=[message],
        temperature=0.0,
        max_tokens=1,
        logprobs=True,
        top_logprobs=5,
    )
    assert isinstance(response, dict)
    return dict(response)


def prompt_tokens(response: dict[str, Any]) -> int:
    return int(response["usage"]["prompt_tokens"])


def first_token_logprobs(response: dict[str, Any]) -> dict[str, float]:
    content = response["choices"][0]["logprobs"]["content"]
    assert content, "no token was generated"
    return {entry["token"]: float(entry["logprob"]) for entry in content[0]["top_logprobs"]}


def test_an_image_adds_its_embeddings_and_markers_to_the_prompt(llm: Llama) -> None:
    without = prompt_tokens(ask(llm, None))
    with_image = prompt_tokens(ask(llm, BLACK))
    assert without > 0
    assert with_image - without == IMAGE_EMBEDDINGS + IMAGE_MARKERS


def test_black_and_white_images_give_different_first_token_logprobs(llm: Llama) -> None:
    black = first_token_logprobs(ask(llm, BLACK))
    white = first_token_logprobs(ask(llm, WHITE))
    black_again = first_token_logprobs(ask(llm, BLACK))
    no_image = first_token_logprobs(ask(llm, None))

    assert len(black) == 5 and len(white) == 5
    assert black_again == pytest.approx(black, abs=1e-5)  # deterministic at temperature 0
    assert black != pytest.approx(white, abs=1e-3)  # the image reaches the output
    assert black != pytest.approx(no_image, abs=1e-3)


def test_the_script_regenerates_the_committed_files_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out-dir", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for committed in (TEXT_MODEL, MMPROJ):
        assert (tmp_path / committed.name).read_bytes() == committed.read_bytes()
