"""Sentiment of an answer from a small word lexicon with negation: positive, neutral, negative.

Good enough to pick the robot's gesture and tone; it is not a model and says so in its name.
"""

from __future__ import annotations

import re

POSITIVE = "positive"
NEUTRAL = "neutral"
NEGATIVE = "negative"

# fmt: off
POSITIVE_WORDS = frozenset({
    "good", "great", "nice", "lovely", "happy", "glad", "wonderful", "beautiful", "excellent",
    "amazing", "awesome", "fantastic", "love", "like", "enjoy", "fun", "pleasure", "welcome",
    "smile", "smiling", "cheerful", "delighted", "pleased", "congratulations", "well", "best",
    "cool", "kind", "friendly", "fine", "perfect", "brilliant", "thanks", "thank", "yes", "sure",
    "bright", "wow", "interesting", "exciting", "comfortable", "healthy", "safe",
})
NEGATIVE_WORDS = frozenset({
    "bad", "sad", "sorry", "unfortunately", "terrible", "awful", "horrible", "hate", "angry",
    "upset", "worried", "afraid", "scared", "sick", "ill", "tired", "pain", "hurt", "wrong",
    "problem", "poor", "dangerous", "difficult", "cannot", "can't", "unable", "fail", "failed",
    "lost", "lonely", "boring", "ugly", "worse", "worst", "disappointed", "annoying",
})
# fmt: on
NEGATORS = frozenset({"not", "no", "never", "don't", "doesn't", "isn't", "aren't", "wasn't"})
NEGATION_SPAN = 3  # a negator flips a sentiment word at most this many words later
_WORD = re.compile(r"[a-z']+")


def sentiment_score(text: str) -> int:
    """Positive minus negative word count; a negator flips a sentiment word shortly after it."""
    score, words_since_negator = 0, NEGATION_SPAN + 1
    for word in _WORD.findall(text.lower().replace("’", "'")):
        if word in NEGATORS:
            words_since_negator = 0
            continue
        words_since_negator += 1
        polarity = (word in POSITIVE_WORDS) - (word in NEGATIVE_WORDS)
        if polarity:
            score += -polarity if words_since_negator <= NEGATION_SPAN else polarity
            words_since_negator = NEGATION_SPAN + 1
    return score


def sentiment(text: str) -> str:
    score = sentiment_score(text)
    return POSITIVE if score > 0 else NEGATIVE if score < 0 else NEUTRAL
