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


def stream(text: str, *, first_clause: bool = True) -> list[list[str]]:
    """What is ready after each character of `text` arrives, then at the end (as chunks)."""
    splitter = SentenceSplitter(first_clause=first_clause)
    return [list(splitter.feed(ch)) for ch in text] + [list(splitter.finish())]


def pieces(text: str, *, first_clause: bool = True) -> list[str]:
    return [piece for ready in stream(text, first_clause=first_clause) for piece in ready]


def test_an_answers_first_clause_is_ready_once_it_has_four_words() -> None:
    answer = "Sure, the kitchen lights are on, and the heating is at 21 degrees. Anything else?"
    assert pieces(answer) == [
        "Sure, the kitchen lights are on,",  # "Sure," alone is too short to say alone
        "and the heating is at 21 degrees.",
        "Anything else?",
    ]
    ready = stream(answer)
    # Ready when the space after its comma arrives: the model is still writing the sentence.
    assert ready[answer.index(" and")] == ["Sure, the kitchen lights are on,"]


def test_only_the_first_piece_is_cut_at_a_clause() -> None:
    answer = "It is late. The kitchen lights are on, the door is shut; all is well."
    assert pieces(answer) == [
        "It is late.",
        "The kitchen lights are on, the door is shut; all is well.",
    ]


def test_semicolons_colons_and_dashes_end_a_first_clause() -> None:
    assert pieces("Here is what I found: three recipes.") == [
        "Here is what I found:",
        "three recipes.",
    ]
    assert pieces("The door is locked; the alarm is set.") == [
        "The door is locked;",
        "the alarm is set.",
    ]
    assert pieces("The answer is simple - it is 42.") == ["The answer is simple -", "it is 42."]
    assert pieces("The answer is simple\u2014it is 42.") == [
        "The answer is simple\u2014",
        "it is 42.",
    ]


def test_a_first_clause_is_never_cut_inside_numbers_abbreviations_links_or_code() -> None:
    assert pieces("It costs 1,000 dollars at 10:30 today.") == [
        "It costs 1,000 dollars at 10:30 today."
    ]
    assert pieces("Take some fruit, e.g., apples and pears.") == [
        "Take some fruit, e.g., apples and pears."
    ]
    assert pieces("See [the list of all, the things](https://example.com/a, b) now.") == [
        "See the list of all, the things now."
    ]
    assert pieces("Run `ls -la, then more` to see.") == ["Run ls -la, then more to see."]


def test_a_first_clause_loses_and_doubles_nothing() -> None:
    answer = (
        "Well, **the weather** today is sunny, with a high of 3.5 degrees. "
        "Dr. Smith says: take a coat!\n- Milk, eggs and bread, please.\n"
    )
    whole = sentences(answer)
    cut = pieces(answer)
    assert cut == [
        "Well, the weather today is sunny,",
        "with a high of 3.5 degrees.",
        "Dr. Smith says: take a coat!",
        "Milk, eggs and bread, please.",
    ]
    assert " ".join(cut) == " ".join(whole)
    assert whole[0] == "Well, the weather today is sunny, with a high of 3.5 degrees."


def test_whole_texts_and_short_answers_keep_whole_sentences() -> None:
    assert pieces("You said: the lights are on.") == ["You said: the lights are on."]
    assert pieces("Yes, it is on") == ["Yes, it is on"]  # never ready early: three words
    text = "Sure, the kitchen lights are on, and the heating too."
    assert pieces(text, first_clause=False) == [text]
    assert sentences(text) == [text]
