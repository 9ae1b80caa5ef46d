"""What of a model's answer is read out, and when each sentence is ready to be spoken."""

from __future__ import annotations

from daemon.speech.text import SentenceSplitter, clean, sentences


def test_markdown_lists_and_emoji_are_not_read_literally() -> None:
    answer = (
        "## Shopping\n"
        "You need **three** things:\n"
        "1. Milk 🥛\n"
        "2. *Eggs*\n"
        "- `Bread`\n"
        "\n"
        "See [the list](https://example.com/list). Enjoy! 😀🎉"
    )
    assert sentences(answer) == [
        "Shopping",
        "You need three things:",
        "Milk",
        "Eggs",
        "Bread",
        "See the list.",
        "Enjoy!",
    ]


def test_code_blocks_and_table_rules_are_skipped() -> None:
    answer = "Run this:\n```sh\nls -la\n```\n| a | b |\n|---|---|\nThat lists files."
    assert sentences(answer) == ["Run this:", "a, b", "That lists files."]


def test_a_sentence_is_ready_as_soon_as_the_next_one_begins() -> None:
    splitter = SentenceSplitter()
    ready = [list(splitter.feed(chunk)) for chunk in ["The wea", "ther is nice. It", "'s sunny."]]
    assert ready == [[], ["The weather is nice."], []]
    assert list(splitter.finish()) == ["It's sunny."]


def test_numbers_and_abbreviations_do_not_end_a_sentence() -> None:
    assert sentences("It costs 3.50 dollars. Dr. Smith agrees.") == [
        "It costs 3.50 dollars.",
        "Dr. Smith agrees.",
    ]


def test_a_line_of_only_symbols_says_nothing() -> None:
    assert clean("👍 🎉") == ""
    assert sentences("---\n***\n") == []
