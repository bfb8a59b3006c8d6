"""Sentence boundaries in streamed text: the robot starts speaking after the first sentence.

Generation streams text token by token; as soon as the first sentence is complete (its end mark
is followed by whitespace, so "3." in "3.5" is not mistaken for an end) it can be spoken while the
rest is generated. The bridge then speaks only the remainder of the final text.
"""

from __future__ import annotations

import re

# Abbreviations whose trailing period does not end a sentence.
ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "approx", "no"}
)
_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s)|\n")


def first_sentence(text: str, min_chars: int = 1) -> str | None:
    """The first complete sentence of `text` (stripped), or None while it is still incomplete.

    A sentence shorter than `min_chars` is merged with the next one, so an early "Oh." does not
    make the robot stop after one word.
    """
    for match in _END.finditer(text):
        candidate = text[: match.end()].strip()
        if not candidate:
            continue
        if match.group() != "\n" and _ends_with_abbreviation(candidate):
            continue
        if len(candidate) >= min_chars:
            return candidate
    return None


def _ends_with_abbreviation(sentence: str) -> bool:
    last_word = sentence.rstrip(".").rsplit(maxsplit=1)[-1].lower()
    return last_word in ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha())


def remainder(full_text: str, spoken: str) -> str | None:
    """What is left of `full_text` after the already spoken first sentence.

    None when `full_text` does not start with it (e.g. the final answer was replaced by a safe
    reply), so the caller knows the early sentence does not belong to this text.
    """
    full, early = full_text.strip(), spoken.strip()
    if not full.startswith(early):
        return None
    return full[len(early) :].strip()


class FirstSentenceDetector:
    """Feeds on the growing text of one answer; reports its first sentence exactly once."""

    def __init__(self, min_chars: int = 1) -> None:
        self.min_chars = min_chars
        self.sentence: str | None = None

    def feed(self, text_so_far: str) -> str | None:
        """The first sentence the first time it is complete, else None."""
        if self.sentence is not None:
            return None
        self.sentence = first_sentence(text_so_far, self.min_chars)
        return self.sentence
