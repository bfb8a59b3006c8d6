"""The `fallback` responder: profile-aware template answers, for machines without VLM weights.

It is never presented as a VLM: every answer says `responder = "fallback-template"`, the node logs
a warning when it is selected, and it does not look at the image. It reads the asking user's
known labels (age group, gender, emotion; never ethnicity) to choose a friendly wording, and
streams its answer word by word through the same callback as a real model, so the rest of the
pipeline (early first sentence, feedback, bridge) behaves as with the VLM.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from uservlm_ros.backends.vlm import BASE_ADAPTER, GenerationRequest, GenerationResult, UserContext
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.parameters import check_settings, setting

RESPONDER_ID = "fallback-template"

_CHILD_AGES = {"0-2", "3-9"}
_MOOD = {
    "happy": "You look happy today, which is lovely to see.",
    "sad": "You look a little sad; I hope your day gets better.",
    "angry": "You seem a bit upset; let's take it slowly.",
    "fear": "You look a little worried; there is nothing to be afraid of here.",
    "surprise": "You look surprised!",
    "disgust": "Something seems to bother you.",
}
# (question pattern, answer template); {greeting} and {mood} are filled from the profile.
_INTENTS = (
    (r"\b(hello|hi|hey|good (morning|afternoon|evening))\b", "{greeting} How can I help you?"),
    (r"\bhow are you\b", "I'm doing well, thank you for asking! {mood}"),
    (
        r"\b(what|who) (do you|can you) see\b|\bwhat am i (wearing|holding)\b|\bdescribe\b",
        "{greeting} I am answering with simple templates right now, so I cannot describe the "
        "picture in detail. Please ask my operator to load the vision-language model.",
    ),
    (
        r"\b(joke|funny)\b",
        "Here is one: why did the robot go on holiday? It needed to recharge its batteries!",
    ),
    (
        r"\b(recommend|suggest|should i|what can i do)\b",
        "{mood} A short walk, a glass of water and a chat with a friend are good ideas for "
        "almost anyone.",
    ),
)
_DEFAULT = (
    "That is a good question. {mood} I am answering with simple templates right now, so I "
    "cannot give you a detailed answer."
)


@dataclass(frozen=True)
class FallbackOptions:
    """The templates' options; the openai backend's, which answers with the templates when its
    server fails, include them."""

    word_delay_s: float = setting(0.0, name="responder.fallback_word_delay_s", min=0.0, max=1.0)
    """fallback templates only: pause between streamed words, seconds (a demo shows streaming)"""

    def __post_init__(self) -> None:
        check_settings(self)


class FallbackResponder:
    """Template answers with the VlmBackend interface; see the module docstring."""

    def __init__(self, options: FallbackOptions = FallbackOptions()) -> None:
        self.word_delay_s = options.word_delay_s

    @property
    def adapters(self) -> tuple[str, ...]:
        return (BASE_ADAPTER,)

    def load(self) -> None:
        """Nothing to load: the templates are code."""

    def responder_id(self, adapter: str = "") -> str:
        return RESPONDER_ID

    def warm_up(self) -> None:
        self.answer(UserContext(question="hello"))

    def answer(self, user: UserContext) -> str:
        question = user.question.lower()
        labels = user.labels
        child = labels.get("age_group") in _CHILD_AGES
        greeting = "Hello, my young friend!" if child else "Hello, nice to see you!"
        mood = _MOOD.get(labels.get("emotion", ""), "")
        template = next(
            (answer for pattern, answer in _INTENTS if re.search(pattern, question)), _DEFAULT
        )
        return " ".join(template.format(greeting=greeting, mood=mood).split())

    def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.adapter not in ("", BASE_ADAPTER):
            raise UservlmError(f"the fallback responder has no adapter {request.adapter!r}")
        started = time.perf_counter()
        words = self.answer(request.user).split()[: request.max_new_tokens]
        finish, first_ms = "eos", 0.0
        for count in range(1, len(words) + 1):
            if self.word_delay_s:
                time.sleep(self.word_delay_s)
            if count == 1:
                first_ms = (time.perf_counter() - started) * 1e3
            if request.on_token is not None:
                request.on_token(" ".join(words[:count]), count)
            if request.should_stop is not None and request.should_stop():
                words, finish = words[:count], "cancelled"
                break
        total_ms = (time.perf_counter() - started) * 1e3
        return GenerationResult(
            text=" ".join(words),
            responder=RESPONDER_ID,
            new_tokens=len(words),
            finish_reason=finish,
            timings_ms={"first_token": first_ms, "decode": total_ms - first_ms},
        )
