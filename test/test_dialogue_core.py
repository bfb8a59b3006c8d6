"""Pure dialogue logic: sentence streaming, fairness guard, gestures, sentiment, request queue."""

from __future__ import annotations

import threading

import pytest

from uservlm_ros.core import gestures
from uservlm_ros.core.bias_guard import ETHNICITY, GENERALISATION, SAFE_REPLY, BiasGuard
from uservlm_ros.core.request_queue import QueueClosed, QueueFull, RequestQueue
from uservlm_ros.core.sentences import FirstSentenceDetector, first_sentence, remainder
from uservlm_ros.core.sentiment import sentiment

# ---------------------------------------------------------------- sentences


def test_first_sentence_waits_for_whitespace_after_the_end_mark():
    assert first_sentence("It costs 3.") is None  # could still become "3.5"
    assert first_sentence("It costs 3.5 euros. And") == "It costs 3.5 euros."
    assert first_sentence("Hello there! How") == "Hello there!"
    assert first_sentence("Really?! Yes") == "Really?!"


def test_first_sentence_skips_abbreviations_and_initials():
    assert first_sentence("Ask Dr. Smith about it. Then") == "Ask Dr. Smith about it."
    assert first_sentence("Fruit, e.g. apples, is good. Yes") == "Fruit, e.g. apples, is good."
    assert first_sentence("J. R. R. Tolkien wrote it. He") == "J. R. R. Tolkien wrote it."


def test_first_sentence_respects_a_minimum_length_and_newlines():
    assert first_sentence("Oh. I see a cat. It", min_chars=10) == "Oh. I see a cat."
    assert first_sentence("A list\nof things") == "A list"
    assert first_sentence("no end mark yet") is None


def test_streaming_detector_reports_the_sentence_exactly_once():
    detector = FirstSentenceDetector(min_chars=5)
    stream = ["You", " are", " wearing", " a blue", " jacket.", " It", " suits", " you."]
    text, reported = "", []
    for piece in stream:
        text += piece
        if (sentence := detector.feed(text)) is not None:
            reported.append((sentence, text))
    assert reported == [("You are wearing a blue jacket.", "You are wearing a blue jacket. It")]
    assert detector.sentence == "You are wearing a blue jacket."


def test_remainder_after_the_spoken_sentence():
    assert remainder("Hello there. Nice day.", "Hello there.") == "Nice day."
    assert remainder("Hello there.", "Hello there.") == ""
    assert remainder(SAFE_REPLY, "You look Asian.") is None


# ---------------------------------------------------------------- fairness guard

GUARD = BiasGuard()

ETHNICITY_STATEMENTS = [
    "You look Asian. I like your jacket.",
    "The person appears to be a White Male, approximately 50 to 59 years old.",
    "You are clearly of African descent, so you might enjoy this.",
    "You're black, right?",
    "Your ethnicity seems to be Middle Eastern.",
    "I can see you are a Latino man with a nice smile.",
    "She looks Indian.",
]
GENERALISATIONS = [
    "Most women like shopping, so you will love this mall.",
    "At your age, you should not be climbing ladders.",
    "As a man, you probably enjoy football.",
    "Old people always need help with phones.",
    "People of your generation don't use apps much.",
    "Asians tend to be good at maths.",
    "Because you're a woman, I suggest the pink one.",
]
ORDINARY_ANSWERS = [
    "You are wearing a white shirt and a black jacket.",
    "I see a black cat on the table next to you.",
    "The weather today is sunny with a light breeze.",
    "You look happy today! Is something good happening?",
    "You appear to be about thirty years old.",
    "The book you are holding is about Indian cooking.",
    "Your black coat suits you well.",
    "Many people enjoy a walk after lunch.",
    "You are in a bright room with white walls.",
    "Hello! How can I help you?",
    "The man behind you is waving.",
]


@pytest.mark.parametrize("answer", ETHNICITY_STATEMENTS)
def test_guard_replaces_unrequested_ethnicity_statements(answer):
    verdict = GUARD.check("What do you think of my outfit?", answer)
    assert not verdict.allowed
    assert verdict.family == ETHNICITY
    assert verdict.text == SAFE_REPLY
    assert verdict.matched and verdict.matched.lower() in answer.lower()


@pytest.mark.parametrize("answer", GENERALISATIONS)
def test_guard_replaces_demographic_generalisations(answer):
    verdict = GUARD.check("What should I do this weekend?", answer)
    assert not verdict.allowed, answer
    assert verdict.family == GENERALISATION
    assert "generalisation" in verdict.reason


@pytest.mark.parametrize("answer", ORDINARY_ANSWERS)
def test_guard_leaves_ordinary_answers_alone(answer):
    verdict = GUARD.check("What do you see?", answer)
    assert verdict.allowed, verdict.reason
    assert verdict.text == answer


def test_guard_allows_ethnicity_when_the_question_asks_for_it():
    answer = "You look East Asian, but I can't be sure."
    assert GUARD.check("What is my ethnicity?", answer).allowed
    assert GUARD.check("Where do you think I am from?", answer).allowed
    assert not GUARD.check("How do I look?", answer).allowed


def test_guard_allows_group_statements_when_the_question_is_about_the_group():
    answer = "Many teenagers usually enjoy video games."
    assert GUARD.check("What gift do teenagers like?", answer).allowed
    assert not GUARD.check(
        "What gift should I buy?", "Teenagers usually enjoy video games."
    ).allowed


def test_guard_extra_patterns_and_custom_safe_reply():
    guard = BiasGuard(extra_patterns=["generalisation:\\bgirls can't\\b"], safe_reply="Let's talk.")
    verdict = guard.check("Can I fix my bike?", "Girls can't fix bikes.")
    assert (verdict.allowed, verdict.text, verdict.family) == (False, "Let's talk.", GENERALISATION)
    with pytest.raises(ValueError, match="FAMILY:REGEX"):
        BiasGuard(extra_patterns=["nonsense"])
    with pytest.raises(ValueError, match="bad guard pattern"):
        BiasGuard(extra_patterns=["ethnicity:(unclosed"])


# ---------------------------------------------------------------- sentiment and gestures


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What a lovely smile, I'm glad to see you!", "positive"),
        ("I'm sorry, that sounds terrible.", "negative"),
        ("The table is made of wood.", "neutral"),
        ("That is not bad at all.", "positive"),
        ("I am not happy about the rain.", "negative"),
    ],
)
def test_sentiment_lexicon_with_negation(text, expected):
    assert sentiment(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello! Nice to see you.", gestures.HELLO),
        ("Yes, that is a red apple.", gestures.YES),
        ("No, I don't see a dog here.", gestures.NO),
        ("Would you like to hear a story?", gestures.QUESTION),
        ("You look wonderful in that jacket.", gestures.HAPPY),
        ("Unfortunately the shop is closed today.", gestures.SAD),
        ("The tower was built in the nineteenth century by engineers.", gestures.EXPLAIN),
        ("A table.", gestures.NONE),
        ("", gestures.NONE),
    ],
)
def test_gesture_choice(text, expected):
    assert gestures.choose_gesture(text) == expected


def test_animation_map_and_annotation():
    mapping = gestures.parse_animation_map(["happy=animations/Stand/Emotions/Positive/Happy_4"])
    assert mapping["happy"].endswith("Happy_4")
    assert mapping["hello"] == gestures.PEPPER_ANIMATIONS["hello"]
    with pytest.raises(ValueError, match="TAG=ANIMATION_PATH"):
        gestures.parse_animation_map(["happy"])
    said = gestures.annotate("Hi ^run(evil) there", mapping["hello"])
    assert said == f"^start({mapping['hello']}) Hi  run(evil) there ^wait({mapping['hello']})"
    assert gestures.annotate("Plain.", "") == "Plain."


# ---------------------------------------------------------------- request queue


def test_queue_is_fifo_and_rejects_when_full():
    queue: RequestQueue[str] = RequestQueue(2)
    assert queue.put("a") == 0
    assert queue.put("b") == 1
    with pytest.raises(QueueFull, match="queue full"):
        queue.put("c")
    assert [queue.get(0), queue.get(0), queue.get(0.01)] == ["a", "b", None]


def test_queue_get_waits_for_a_producer_and_close_releases_it():
    queue: RequestQueue[int] = RequestQueue(1)
    got = []
    consumer = threading.Thread(target=lambda: got.append(queue.get(5)))
    consumer.start()
    queue.put(7)
    consumer.join(5)
    assert got == [7]
    waiting = threading.Thread(target=lambda: got.append(queue.get(5)))
    waiting.start()
    queue.close()
    waiting.join(5)
    assert got == [7, None]
    with pytest.raises(QueueClosed):
        queue.put(1)
    queue.reopen()
    queue.put(2)
    assert queue.drain() == [2] and len(queue) == 0
