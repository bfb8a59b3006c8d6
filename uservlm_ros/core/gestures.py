"""The gesture that goes with an answer, and how Pepper performs it.

A gesture tag (Response.gesture) is chosen from the answer's opening words, its last mark and its
sentiment. The bridge maps the tag to a Pepper animation path and wraps the text in
ALAnimatedSpeech's annotation (`^start(path) text ^wait(path)`) so speech and motion run together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from uservlm_ros.core.sentiment import NEGATIVE, POSITIVE, sentiment

HELLO = "hello"
YES = "yes"
NO = "no"
QUESTION = "question"
HAPPY = "happy"
SAD = "sad"
EXPLAIN = "explain"
NONE = ""

# Standard animations of Pepper's NAOqi 2.5+ library (overridable by the bridge's parameters).
PEPPER_ANIMATIONS: Mapping[str, str] = {
    HELLO: "animations/Stand/Gestures/Hey_1",
    YES: "animations/Stand/Gestures/Yes_1",
    NO: "animations/Stand/Gestures/No_1",
    QUESTION: "animations/Stand/Gestures/Thinking_1",
    HAPPY: "animations/Stand/Emotions/Positive/Happy_1",
    SAD: "animations/Stand/Emotions/Negative/Sad_1",
    EXPLAIN: "animations/Stand/Gestures/Explain_1",
}

_GREETING = re.compile(r"^(hello|hi|hey|good (morning|afternoon|evening)|welcome|nice to meet)\b")
_AFFIRMATIVE = re.compile(r"^(yes|yeah|sure|of course|absolutely|certainly|definitely)\b")
_NEGATIVE = re.compile(r"^(no|nope|not really|i'm afraid not|i don't think so)\b")
MIN_WORDS_TO_EXPLAIN = 6  # shorter answers go without a gesture rather than a long animation


def choose_gesture(text: str, text_sentiment: str | None = None) -> str:
    """The gesture tag for an answer ("" = none)."""
    opening = text.strip().lower().replace("’", "'")
    if not opening:
        return NONE
    if _GREETING.match(opening):
        return HELLO
    if _AFFIRMATIVE.match(opening):
        return YES
    if _NEGATIVE.match(opening):
        return NO
    if opening.endswith("?"):
        return QUESTION
    mood = text_sentiment if text_sentiment is not None else sentiment(text)
    if mood == POSITIVE:
        return HAPPY
    if mood == NEGATIVE:
        return SAD
    return EXPLAIN if len(opening.split()) >= MIN_WORDS_TO_EXPLAIN else NONE


def parse_animation_map(entries: Sequence[str]) -> dict[str, str]:
    """`["tag=animations/...", ...]` (a parameter) on top of the defaults; raises ValueError."""
    mapping = dict(PEPPER_ANIMATIONS)
    for entry in entries:
        tag, sep, path = entry.partition("=")
        if not sep or not tag.strip() or not path.strip():
            raise ValueError(f"{entry!r}: expected TAG=ANIMATION_PATH")
        mapping[tag.strip()] = path.strip()
    return mapping


def annotate(text: str, animation: str) -> str:
    """ALAnimatedSpeech text that plays `animation` while saying `text` ("" = speech only)."""
    clean = text.replace("^", " ").replace("\\", " ")  # never let the text inject annotations
    if not animation:
        return clean
    return f"^start({animation}) {clean} ^wait({animation})"
