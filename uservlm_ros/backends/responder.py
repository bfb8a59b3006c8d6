"""The responder's work between the node's messages and the answer pipeline, without ROS: who is
in view and whom a question is for (core/addressee.py), which questions are accepted, the image
the model sees, and each answer as a plain `Reply` that the node turns into a Response.

The node feeds it the latest image (as it came: decoded only when a question needs it) and each
person's latest profile (as an `Asker`), and calls `answer` on its worker thread.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from uservlm_ros.backends.responder_pipeline import (
    AnswerHooks,
    AskerView,
    Question,
    ResponderPipeline,
    Utterance,
)
from uservlm_ros.backends.vlm import DEFAULT_MAX_NEW_TOKENS, VlmBackend
from uservlm_ros.core import addressee as addressing
from uservlm_ros.core.camera_clock import CameraClock
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.prompt import MODES, USER_AWARE

Log = Callable[[str], None]


@dataclass(frozen=True)
class ResponderConfig:
    """The responder node's own parameters (its backends' are in backends/vlm_registry.py)."""

    mode: str = setting(USER_AWARE, name="responder.mode", choices=MODES)
    """Default prompt mode: user_aware (image + question) or profile_prompt (the asking user's
    profile_text is put into the prompt: the papers' baseline); a goal may override it"""
    image: str = setting("asker", name="responder.image", choices=("asker", "frame"), live=True)
    """What the model sees in user_aware mode: `asker` = with two or more people in view, a
    head-and-shoulders crop of the asker from the camera frame (whole frame with one); `frame`
    = always the whole frame (the papers' demo)"""
    visible_s: float = setting(5.0, name="responder.visible_s", min=0.1, max=3600.0, live=True)
    """A person counts as in view (for the addressee and the asker's crop) while their latest
    profile is at most this old on the camera's clock, seconds; keep it at
    user_profiler_node's fusion.expiry_s"""
    addressee_floor: float = setting(
        0.1, name="responder.addressee_floor", min=0.0, max=1.0, live=True
    )
    """A question that names nobody, while nobody is engaged and several people are in view, is
    answered for the most engaged of them if their engagement score (0..1) is at least this;
    else for nobody. 0 = always the most engaged one; 0.1 leaves out people turned away or at
    the far edge of the view (their scores are near 0)"""
    queue_size: int = setting(4, name="responder.queue_size", min=1, max=100)
    """Questions that may wait while one is answered; more are answered at once with an error"""
    max_question_chars: int = setting(500, name="responder.max_question_chars", min=1, max=10000)
    """Longest accepted question, characters; longer ones get an error Response"""
    fallback_without_model: bool = setting(True, name="responder.fallback_without_model")
    """paligemma with an empty model.path (a deployment without VLM weights): answer with the
    fallback templates (logged once, every Response says responder=fallback-template) so
    perception and speech still run; false = configure fails. A model.path that does not load
    is always an error"""
    max_new_tokens: int = setting(
        DEFAULT_MAX_NEW_TOKENS, name="generation.max_new_tokens", min=1, max=2048
    )
    """Default generation limit, tokens (the papers use 100); a goal may ask for fewer or more"""


@dataclass(frozen=True)
class Asker:
    """What the responder keeps of a person's latest UserProfile."""

    seen: addressing.Seen  # stamp 0.0: the profile had none, so it counts as seen now
    profile_text: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # known labels, never ethnicity


@dataclass
class Reply:
    """The content of one Response: the early first sentence (final False) or the final one."""

    question: Question
    responder: str
    track_id: int  # the user it is for; for an error before an addressee: the one asked for
    person_id: str
    final: bool = True
    utterance: Utterance | None = None  # None: no text (error says why, if final)
    error: str = ""
    addressee: str = ""  # core/addressee's how ("" = none chosen)
    image_roi: tuple[float, ...] | None = None  # the frame part the model saw; None = not set
    camera_stamp: Any = None  # the answered image's stamp, as the node gave it
    timings_ms: dict[str, float] = field(default_factory=dict)


class Responder:
    def __init__(
        self,
        config: Callable[[], ResponderConfig],
        decode: Callable[[Any], np.ndarray],
        image_source: str,
        count: Callable[[str], None],
        log: Log,
        warn: Log,
    ) -> None:
        """`config()` is read per question (live parameters); `decode` turns the image the node
        gave into (h, w, 3) uint8 RGB or raises UservlmError; `image_source` names where images
        come from (for the error when none came); `count` bumps a diagnostics counter."""
        self._config, self._decode, self._image_source = config, decode, image_source
        self._count, self._log, self._warn = count, log, warn
        self.pipeline: ResponderPipeline | None = None  # set while configured
        self.backend_name = ""  # the backend answering (fallback needs no image)
        self.clock = CameraClock()
        self._lock = threading.Lock()
        self._image: tuple[Any, Any] | None = None  # (the latest image, its stamp), as given
        self._askers: dict[int, Asker] = {}  # track id -> latest profile

    @property
    def backend(self) -> VlmBackend | None:
        return self.pipeline.backend if self.pipeline is not None else None

    # -- inputs (subscription callbacks)

    def see_image(self, image: Any, stamp: Any, seconds: float) -> None:
        with self._lock:
            self._image = (image, stamp)
        self.clock.seen(seconds)

    def see_profile(self, asker: Asker) -> None:
        with self._lock:
            self._askers[asker.seen.track_id] = asker
        self.clock.seen(asker.seen.stamp)

    # -- questions

    def question(
        self,
        text: str,
        track_id: int = 0,
        mode: str = "",
        max_new_tokens: int = 0,
        adapter: str = "",
        request_id: str = "",
        source: str = "",
        person_id: str = "",
    ) -> Question:
        """A question as asked, with the defaults for what the asker left empty."""
        config = self._config()
        return Question(
            request_id=request_id or uuid.uuid4().hex[:12],
            question=text,
            track_id=track_id,
            mode=mode or config.mode,
            max_new_tokens=max_new_tokens or config.max_new_tokens,
            adapter=adapter,
            source=source,
            person_id=person_id,
        )

    def problem(self, question: Question) -> str | None:
        """Why the question is refused before it is queued, or None."""
        limit = self._config().max_question_chars
        if not question.question.strip():
            return "empty question"
        if len(question.question) > limit:
            return f"question too long ({len(question.question)} characters; the limit is {limit})"
        if question.mode not in MODES:
            return f"unknown mode {question.mode!r}; expected one of {', '.join(MODES)}"
        adapters = self.backend.adapters if self.backend is not None else ()
        if question.adapter and question.adapter not in adapters:
            return f"unknown adapter {question.adapter!r}; loaded: {', '.join(adapters)}"
        return None

    def error(self, question: Question, error: str) -> Reply:
        """The final Reply of a question that gets no answer, for the user it named."""
        self._warn(f"[{question.request_id}] no answer: {error}")
        self._count("errors")
        backend = self.backend
        return Reply(
            question,
            backend.responder_id(question.adapter) if backend is not None else "",
            question.track_id,
            question.person_id,
            error=error,
            timings_ms={"queue": (time.monotonic() - question.received) * 1e3},
        )

    # -- answering (the worker thread)

    def answer(
        self,
        question: Question,
        cancelled: Callable[[], bool],
        stopping: Callable[[], bool],
        on_partial: Callable[[str, int], None],
        on_early: Callable[[Reply], None],
    ) -> Reply:
        """The final Reply: for whom, with which image, the pipeline's answer. `cancelled`: the
        asker withdrew the question; `stopping`: the node is shutting down."""
        if cancelled():
            return self.error(question, "cancelled before generation started")
        config = self._config()
        with self._lock:
            latest = self._image
            people = self._people()
        whom = addressing.choose_addressee(
            question.track_id,
            people,
            self.clock.now(),
            config.visible_s,
            question.person_id,
            config.addressee_floor,
        )
        if whom.error:
            reply = self.error(question, whom.error)
            reply.addressee = whom.how
            return reply
        with self._lock:
            asker = self._askers.get(whom.track_id) if whom.track_id else None
        image, camera_stamp, roi = None, None, addressing.NO_IMAGE
        if latest is not None:
            message, camera_stamp = latest
            try:
                image = self._decode(message)
            except UservlmError as error:
                self._count("images_rejected")
                return self.error(question, f"the camera image is unusable: {error}")
            image, roi = _asker_image(image, whom, people, question.mode, config.image)
        elif self.backend_name != "fallback":
            return self.error(question, f"no camera image received yet on {self._image_source}")
        if asker is None:
            self._log(
                f"[{question.request_id}] nobody to address ({len(whom.visible)} in view): "
                "answered without a profile"
            )
        view = AskerView(
            image=image,
            track_id=whom.track_id,
            profile_text=asker.profile_text if asker is not None else "",
            labels=asker.labels if asker is not None else {},
        )

        def reply(final: bool, responder: str) -> Reply:
            return Reply(
                question,
                responder,
                whom.track_id,
                whom.person_id,
                final,
                addressee=whom.how,
                image_roi=roi,
                camera_stamp=camera_stamp,
            )

        def early(utterance: Utterance, elapsed_ms: float) -> None:
            sentence = reply(False, responder)
            sentence.utterance = utterance
            sentence.timings_ms = {"question_to_first_sentence": elapsed_ms}
            on_early(sentence)
            self._count("early_sentences")

        responder = self.backend.responder_id(question.adapter)
        hooks = AnswerHooks(on_partial, early, should_stop=lambda: cancelled() or stopping())
        answer = self.pipeline.answer(question, view, hooks)
        final = reply(True, answer.responder)
        final.utterance, final.error, final.timings_ms = (
            answer.utterance,
            answer.error,
            answer.timings_ms,
        )
        if answer.utterance is None:
            self._count("cancelled" if cancelled() else "empty_answers")
        said = answer.utterance.text if answer.utterance is not None else answer.error
        self._log(
            f"[{question.request_id}] {answer.responder}, {answer.new_tokens} tokens "
            f"({answer.finish_reason}) in {answer.timings_ms['total']:.0f} ms: {said[:100]!r}"
        )
        return final

    def _people(self) -> dict[int, addressing.Seen]:
        """Everyone a profile describes (lock held); core/addressee decides who is in view."""
        now = self.clock.now()
        return {
            track: asker.seen if asker.seen.stamp else replace(asker.seen, stamp=now)
            for track, asker in self._askers.items()
        }


def _asker_image(image: np.ndarray, whom, people, mode: str, image_mode: str):
    """The image the model gets and its normalised region of the frame."""
    height, width = image.shape[:2]
    roi = addressing.image_roi(
        whom, people, image_mode if mode == USER_AWARE else "frame", width, height
    )
    if roi == addressing.WHOLE_FRAME:
        return image, roi
    return addressing.crop(image, roi), roi
