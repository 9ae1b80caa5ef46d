"""An image through mistral.rs's real multimodal path with the tiny Gemma3 fixture, offline.

mistral.rs loads the GGUF pair (fixtures/models/, made by make_tiny_vlm.py) as a Gemma3
vision-language model; `tok_model_id` points it at tiny-gemma3-vlm-hf/ (made by
make_tiny_vlm_hf.py), which holds the original-model files it reads besides the weights:
config.json, preprocessor_config.json, processor_config.json and chat_template.jinja. Nothing is
fetched (`token_source="none"`, HF_HUB_OFFLINE=1). The weights are random, so the words mean
nothing: the tests assert on the path instead. The image is expanded to its 16 soft tokens in the
prompt, and what it shows changes the output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mistralrs import ChatCompletionRequest, ChatCompletionResponse, Runner, Which

from daemon.models.media import data_uri
from tests.conftest import png

MODELS = Path(__file__).parents[2] / "fixtures" / "models"
TEXT_MODEL = MODELS / "tiny-gemma3-vlm.gguf"
MMPROJ = MODELS / "tiny-gemma3-vlm-mmproj.gguf"
HF_DIR = MODELS / "tiny-gemma3-vlm-hf"
SCRIPT = MODELS / "make_tiny_vlm_hf.py"
HF_FILES = (
    "config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "chat_template.jinja",
)

IMAGE_EMBEDDINGS = 16  # (64 px / 8 px patches)^2 = 64 patches, average-pooled 2x2
IMAGE_MARKERS = 2  # <start_of_image> and <end_of_image>
QUESTION = "What is in this picture?"
BLACK, WHITE = 0, 255  # grey levels of the flat 64x64 test images
MAX_TOKENS = 4


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")  # any hub access would fail rather than download
        if "RAYON_NUM_THREADS" not in os.environ:
            env.setenv(
                "RAYON_NUM_THREADS", "1"
            )  # the model is tiny; more threads only add overhead
        which = Which.GGUF(
            quantized_model_id=str(MODELS),
            quantized_filename=TEXT_MODEL.name,
            tok_model_id=str(HF_DIR),
            mmproj_filename=MMPROJ.name,
        )
        # The stub types Which.GGUF as a nested class rather than a Which member.
        model = Runner(which=which, token_source="none")  # type: ignore[arg-type]
        yield model
        del model


def ask(runner: Runner, image: int | None) -> ChatCompletionResponse:
    """A few greedy tokens for the question, with the image before it when there is one."""
    content: list[dict[str, str | dict[str, str]]] = [{"type": "text", "text": QUESTION}]
    if image is not None:
        content.insert(0, {"type": "image_url", "image_url": {"url": data_uri(png(64, 64, image))}})
    messages: list[dict[str, list[dict[str, str | dict[str, str]]]]] = [
        {"role": "user", "content": content}  # type: ignore[dict-item]
    ]
    response = runner.send_chat_completion_request(
        ChatCompletionRequest(
            model="tiny-gemma3-vlm",
            messages=messages,
            temperature=0.0,
            max_tokens=MAX_TOKENS,
            logprobs=True,
            top_logprobs=5,
        )
    )
    assert isinstance(response, ChatCompletionResponse)
    return response


def text(response: ChatCompletionResponse) -> str:
    content = response.choices[0].message.content
    assert content, "no text was generated"
    return content


def first_token_logprobs(response: ChatCompletionResponse) -> dict[int, float]:
    logprobs = response.choices[0].logprobs
    assert logprobs is not None and logprobs.content, "no log-probabilities came back"
    return {entry.token: entry.logprob for entry in logprobs.content[0].top_logprobs}


def expanded_prompt_tokens(runner: Runner) -> int:
    """The prompt length mistral.rs's Gemma3 processor builds for the question after one image.

    The chat template renders the image as one `<start_of_image>`. The processor detokenizes the
    tokenized prompt, replaces that marker with "\\n\\n<start_of_image>", 16 x
    "<image_soft_token>", "<end_of_image>\\n\\n", and tokenizes the result again (the round trip
    through the GGUF's SentencePiece tokenizer adds a few '▁' tokens of its own).
    """
    rendered = (
        f"<bos><start_of_turn>user\n<start_of_image>{QUESTION}<end_of_turn>\n<start_of_turn>model\n"
    )
    expansion = (
        "\n\n<start_of_image>" + "<image_soft_token>" * IMAGE_EMBEDDINGS + "<end_of_image>\n\n"
    )
    decoded = runner.detokenize_text(runner.tokenize_text(rendered, False, None), False)
    assert decoded.count("<start_of_image>") == 1
    return len(runner.tokenize_text(decoded.replace("<start_of_image>", expansion), False, None))


def test_an_image_adds_its_soft_tokens_and_markers_to_the_prompt(runner: Runner) -> None:
    without = ask(runner, None).usage.prompt_tokens
    with_image = ask(runner, BLACK).usage.prompt_tokens
    assert without > 0
    assert with_image - without >= IMAGE_EMBEDDINGS + IMAGE_MARKERS
    # Exactly the 16 soft tokens the vision tower fills (mistral.rs's default would be 256).
    assert with_image == expanded_prompt_tokens(runner)


def test_black_and_white_images_give_different_outputs(runner: Runner) -> None:
    black = ask(runner, BLACK)
    white = ask(runner, WHITE)
    black_again = ask(runner, BLACK)
    no_image = ask(runner, None)

    assert len(first_token_logprobs(black)) == 5 and len(first_token_logprobs(white)) == 5
    # Deterministic at temperature 0.
    assert text(black_again) == text(black)
    assert first_token_logprobs(black_again) == pytest.approx(first_token_logprobs(black), abs=1e-5)
    # The image reaches the output.
    assert text(black) != text(white)
    assert first_token_logprobs(black) != pytest.approx(first_token_logprobs(white), abs=1e-3)
    assert first_token_logprobs(black) != pytest.approx(first_token_logprobs(no_image), abs=1e-3)


def test_the_script_regenerates_the_committed_files_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out-dir", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert sorted(p.name for p in HF_DIR.iterdir()) == sorted(HF_FILES)
    for name in HF_FILES:
        assert (tmp_path / name).read_bytes() == (HF_DIR / name).read_bytes()
