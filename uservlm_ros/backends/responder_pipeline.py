"""Answering one question: prompt, generation with streaming, the fairness guard, sentiment and
gesture, timings. The responder node's counterpart of FacePipeline: no rclpy, the node only
turns messages into a `Question` and an `AskerView` and the `Answer` back into a Response.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from uservlm_ros.backends.vlm import GenerationRequest, UserContext, VlmBackend, strings_check
from uservlm_ros.core.bias_guard import SAFE_REPLY, BiasGuard
from uservlm_ros.core.gestures import choose_gesture
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.prompt import build_prompt
from uservlm_ros.core.sentences import FirstSentenceDetector
from uservlm_ros.core.sentiment import sentiment
from uservlm_ros.core.speakable import speakable


@dataclass
class Question:
    """One question on its way through the responder."""

    request_id: str
    question: str
    track_id: int  # as asked; 0 = the addressee
    mode: str
    max_new_tokens: int
    adapter: str
    source: str = ""
    person_id: str = ""  # the person the question names; "" = by track_id
    received: float = field(default_factory=time.monotonic)  # monotonic seconds


@dataclass(frozen=True)
class AskerView:
    """What the model is shown for the asker: the image (or None) and their profile."""

    image: np.ndarray | None
    track_id: int = 0  # the user the answer is personalised for; 0 = nobody
    profile_text: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # known labels, never ethnicity


@dataclass(frozen=True)
class Utterance:
    """Text ready for the robot with its sentiment and gesture."""

    text: str
    sentiment: str
    gesture: str

    @classmethod
    def of(cls, text: str) -> Utterance:
        mood = sentiment(text)
        return cls(text, mood, choose_gesture(text, mood))


@dataclass(frozen=True)
class AnswerHooks:
    """Where one answer goes while it is generated, and when it stops."""

    on_partial: Callable[[str, int], None]  # the speakable text so far, tokens so far
    on_early: Callable[[Utterance, float], None]  # the first sentence, ms since the question
    should_stop: Callable[[], bool]


@dataclass
class Answer:
    utterance: Utterance | None  # None when error is set
    error: str
    responder: str
    new_tokens: int
    finish_reason: str
    timings_ms: dict[str, float]


def _guard_patterns(patterns: list[str]) -> None:
    BiasGuard(extra_patterns=patterns)  # raises ValueError naming a bad pattern


@dataclass(frozen=True)
class PipelineSettings:
    """The answer's way out: early first sentence and the fairness guard (node parameters)."""

    early_sentence: bool = setting(True, name="responder.early_sentence")
    """Publish the first complete sentence early (final=false) so the robot starts speaking"""
    min_sentence_chars: int = setting(12, name="responder.min_sentence_chars", min=1, max=1000)
    """Shortest early sentence, characters: shorter ones are merged with the next"""
    guard_enabled: bool = setting(True, name="guard.enabled")
    """Fairness guard: replace answers that state the user's ethnicity or generalise about a
    demographic group (unless the question asks) with guard.safe_reply, and log it"""
    guard_patterns: Sequence[str] = setting(
        [], name="guard.extra_patterns", check=strings_check(_guard_patterns)
    )
    """More guard patterns, FAMILY:REGEX each (FAMILY: ethnicity or generalisation)"""
    safe_reply: str = setting(SAFE_REPLY, name="guard.safe_reply")
    """What the robot says instead of a blocked answer"""


class ResponderPipeline:
    def __init__(
        self,
        backend: VlmBackend,
        settings: Callable[[], PipelineSettings],
        log_blocked: Callable[[Question, str], None],
    ) -> None:
        """`settings()` is read per question, so live parameter changes apply to the next one;
        the guard's patterns and reply are read here, once."""
        self.backend = backend
        first = settings()
        self.guard = BiasGuard(first.guard_patterns, first.safe_reply)
        self._settings = settings
        self._log_blocked = log_blocked

    def answer(self, question: Question, view: AskerView, hooks: AnswerHooks) -> Answer:
        """Generate, streaming partial text (`hooks.on_partial`) and the first sentence
        (`hooks.on_early`), and return the final answer or the reason none was given."""
        settings = self._settings()
        timings = {"queue": (time.monotonic() - question.received) * 1e3}
        stream = _Stream(self, question, settings, hooks)
        result = self.backend.generate(
            GenerationRequest(
                view.image,
                build_prompt(question.question, question.mode, view.profile_text),
                question.max_new_tokens,
                question.adapter,
                UserContext(question.question, dict(view.labels)),
                on_token=stream.on_token,
                should_stop=stream.should_stop,
            )
        )
        timings.update(result.timings_ms)
        if stream.first_sentence_ms is not None:
            timings["question_to_first_sentence"] = stream.first_sentence_ms
        answer = Answer(
            None, "", result.responder, result.new_tokens, result.finish_reason, timings
        )
        if hooks.should_stop():
            answer.error = f"cancelled after {result.new_tokens} tokens"
        else:
            guard_started = time.perf_counter()
            text = speakable(result.text)  # nothing a robot cannot say goes further
            if stream.blocked is not None:
                text = stream.blocked
            elif settings.guard_enabled:
                verdict = self.guard.check(question.question, text)
                if not verdict.allowed:
                    self._log_blocked(question, verdict.reason)
                    text = verdict.text
            timings["guard"] = (time.perf_counter() - guard_started) * 1e3
            if text:
                answer.utterance = Utterance.of(text)
            elif result.text.strip():
                answer.error = f"empty answer: nothing speakable in {result.text[:60]!r}"
            else:
                answer.error = "empty answer: the model produced no text"
        timings["total"] = (time.monotonic() - question.received) * 1e3
        return answer


@dataclass
class _Stream:
    """Per-question streaming state: partial text, the early sentence, the guard on partials."""

    pipeline: ResponderPipeline
    question: Question
    settings: PipelineSettings
    hooks: AnswerHooks
    blocked: str | None = None  # the guard's replacement once the partial text fails
    first_sentence_ms: float | None = None

    def __post_init__(self) -> None:
        self.detector = FirstSentenceDetector(self.settings.min_sentence_chars)

    def on_token(self, text: str, tokens: int) -> None:
        text = speakable(text, partial=True)  # may be "" still: the token count is progress
        if self.settings.guard_enabled:
            verdict = self.pipeline.guard.check(self.question.question, text)
            if not verdict.allowed:  # stop here: nothing more of this answer leaves the node
                self.blocked = verdict.text
                self.pipeline._log_blocked(self.question, verdict.reason)
                return
        self.hooks.on_partial(text, tokens)
        if self.settings.early_sentence and (sentence := self.detector.feed(text)):
            self.first_sentence_ms = (time.monotonic() - self.question.received) * 1e3
            self.hooks.on_early(Utterance.of(sentence), self.first_sentence_ms)

    def should_stop(self) -> bool:
        return self.blocked is not None or self.hooks.should_stop()
