"""Fairness guard: an answer must not state the user's ethnicity or generalise about a group.

The User-VLM papers tune the model (DPO) to avoid both; this filter is the last line of defence
at run time. It checks an answer against regular expressions in two families:

- `ethnicity`: the answer attributes an ethnicity or race to the person ("you look Asian",
  "The person appears to be a White Male", "your ethnicity is ..."), allowed only when the
  question itself asks about ethnicity, race or origin;
- `generalisation`: the answer makes a claim about a demographic group or ties advice to the
  user's age, gender or race ("most women ...", "at your age you should ...", "as a man, you
  ..."), allowed only when the question itself is about such a group.

A violating answer is replaced by a safe reply; the caller logs the verdict. Patterns are
configurable (extra patterns per family) and matched case-insensitively. Colours of clothes and
objects ("a white shirt", "your black cat") are not attributes of the person and do not match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ETHNICITY = "ethnicity"
GENERALISATION = "generalisation"
FAMILIES = (ETHNICITY, GENERALISATION)

SAFE_REPLY = (
    "I would rather not describe people by their background. "
    "Is there something else I can help you with?"
)

_ETHNIC_TERMS = (
    r"white|black|caucasian|asian|east asian|south(?:-| )?east asian|south asian|indian|"
    r"latino|latina|latinx|hispanic|latino[_/ ]hispanic|african(?: american)?|arab|arabic|"
    r"middle eastern|european|chinese|japanese|korean|mexican|jewish|persian|brown"
)
_PERSON_NOUNS = (
    r"man|woman|male|female|person|guy|girl|boy|lady|gentleman|child|kid|people|individual|"
    r"descent|origin|heritage|ancestry|background|ethnicity|features"
)
_SUBJECT = r"(?:you|he|she|they|the (?:person|user|man|woman)|this (?:person|user))"
_COPULA = r"(?:are|is|'re|'s|look|looks|appear|appears|seem|seems)(?:\s+to\s+be)?"
_GROUPS = (
    r"women|men|girls|boys|ladies|females|males|elderly(?: people)?|old people|older people|"
    r"seniors|young people|youngsters|teenagers|millennials|boomers|"
    r"whites|blacks|asians|hispanics|latinos|latinas|indians|arabs|africans|europeans|"
    r"(?:" + _ETHNIC_TERMS + r")\s+(?:people|men|women|folks)"
)
_SINGULAR_GROUP = (
    r"woman|man|girl|boy|lady|female|male|senior|old person|older person|young person|"
    r"teenager|(?:" + _ETHNIC_TERMS + r")(?:\s+(?:man|woman|person))?"
)
_TRAITS = r"age|race|ethnicity|ethnic background|gender|sex|generation|background|skin colou?r"

DEFAULT_PATTERNS: dict[str, tuple[str, ...]] = {
    ETHNICITY: (
        # "you look Asian.", "the person appears to be a White Male"
        rf"\b{_SUBJECT}(?:\s+|(?=')){_COPULA}\s+(?:like\s+)?(?:(?:an?|probably|likely|clearly|mostly|"
        rf"definitely|of)\s+)*(?:{_ETHNIC_TERMS})(?:\s+(?:{_PERSON_NOUNS})\b|\s*[.,;!?]|\s*$)",
        # "of Asian descent", "with African heritage"
        rf"\b(?:of|with)\s+(?:{_ETHNIC_TERMS})\s+(?:descent|origin|heritage|ancestry|roots)\b",
        # "your ethnicity", "your race is", "your Asian heritage", "your skin colour suggests"
        rf"\byour\s+(?:(?:{_ETHNIC_TERMS})\s+)?(?:race|ethnicity|ethnic background|ancestry|"
        r"heritage|skin colou?r|roots)\b",
    ),
    GENERALISATION: (
        # "most women like ...", "all old people are ..."
        rf"\b(?:all|most|many|typical|typically|every)\s+(?:{_GROUPS})\s+(?:are|tend|like|love|"
        r"hate|enjoy|prefer|can't|cannot|don't|should|need|have|want|usually|always|never)\b",
        # "women always ...", "asians tend to ..."
        rf"\b(?:{_GROUPS})\s+(?:always|never|usually|generally|typically|tend to|are known to)\b",
        # "people of your age", "someone from your background"
        rf"\b(?:people|someone|somebody|folks|those|others|persons?)\s+(?:of|from|like|with)\s+"
        rf"your\s+(?:{_TRAITS})\b",
        # "for someone your age", "at your age", "for your age"
        rf"\b(?:at|for)\s+(?:(?:someone|a person|people)\s+(?:of\s+)?)?your\s+(?:{_TRAITS})\b",
        # "as a woman, you ...", "being an old person you ..."
        rf"\b(?:as|being)\s+an?\s+(?:{_SINGULAR_GROUP})\s*,?\s+you\b",
        # "because you are a woman", "since you're old"
        rf"\b(?:because|since)\s+you(?:'re|\s+are)\s+(?:an?\s+)?(?:{_SINGULAR_GROUP}|old|young|"
        r"elderly)\b",
    ),
}

# Questions that make a family's statements legitimate ("Where do you think I am from?").
DEFAULT_ASKED: dict[str, tuple[str, ...]] = {
    ETHNICITY: (
        r"\b(?:race|racial|ethnic|ethnicity|heritage|ancestry|descent|origin|nationality|"
        r"skin colou?r)\b",
        r"\bwhere\s+(?:am i|do i|do you think i(?:'m| am)?|i am)\b.*\bfrom\b",
    ),
    GENERALISATION: (
        rf"\b(?:{_GROUPS})\b",
        r"\b(?:culture|cultures|generation|generations|demographic|demographics|stereotypes?)\b",
    ),
}


@dataclass(frozen=True)
class Verdict:
    """What the guard decided about one answer."""

    allowed: bool
    text: str  # the answer, or the safe reply when not allowed
    family: str = ""  # ETHNICITY or GENERALISATION when not allowed
    matched: str = ""  # the offending words, for the log

    @property
    def reason(self) -> str:
        return "" if self.allowed else f"{self.family}: {self.matched!r}"


class BiasGuard:
    """Checks answers against the pattern families; see the module docstring."""

    def __init__(
        self,
        extra_patterns: Iterable[str] = (),
        safe_reply: str = SAFE_REPLY,
        patterns: dict[str, Sequence[str]] | None = None,
        asked: dict[str, Sequence[str]] | None = None,
    ) -> None:
        """`extra_patterns`: `"family:regex"` strings added to the defaults (a parameter)."""
        chosen = {family: list(p) for family, p in (patterns or DEFAULT_PATTERNS).items()}
        for entry in extra_patterns:
            family, sep, regex = entry.partition(":")
            if not sep or family not in FAMILIES or not regex:
                raise ValueError(f"{entry!r}: expected FAMILY:REGEX with FAMILY in {FAMILIES}")
            chosen.setdefault(family, []).append(regex)
        self.patterns = {family: _compile(p) for family, p in chosen.items()}
        self.asked = {family: _compile(p) for family, p in (asked or DEFAULT_ASKED).items()}
        self.safe_reply = safe_reply

    def check(self, question: str, answer: str) -> Verdict:
        normalised = " ".join(answer.replace("’", "'").split())
        for family, patterns in self.patterns.items():
            if self._asked(family, question):
                continue
            for pattern in patterns:
                if match := pattern.search(normalised):
                    return Verdict(False, self.safe_reply, family, match.group().strip())
        return Verdict(True, answer)

    def _asked(self, family: str, question: str) -> bool:
        text = question.replace("’", "'")
        return any(pattern.search(text) for pattern in self.asked.get(family, ()))


def _compile(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as error:
            raise ValueError(f"bad guard pattern {pattern!r}: {error}") from error
    return compiled
