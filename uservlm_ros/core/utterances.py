"""From per-frame speech probabilities to utterances, and which transcripts become questions.

Pure logic (numpy only), shared by the speech node, `uservlm transcribe`, the benchmark and the
tests:

- `Framer` re-chunks audio blocks of any length (Pepper sends 170 ms) into the fixed frames the
  voice-activity model needs, keeping each frame's capture time.
- `UtteranceSegmenter` is the voice-activity state machine: it is fed one speech probability
  per frame and cuts utterances with pre-roll, hysteresis thresholds, hangover, a minimum speech
  length and a maximum utterance length.
- `TranscriptFilter` says why a transcript is not a question (empty, a bracketed non-speech tag,
  a phrase Whisper is known to invent on noise, a hallucination loop, more text than the audio
  can hold, low confidence).
- `sounds_finished` says whether a transcript reads as a whole sentence (the optional early end
  of a turn).
- `RobotSpeechGate` remembers when the robot spoke (from the bridge's speech events) so that
  what the microphones heard meanwhile is not taken for a question.
- `word_error_rate` scores transcripts against references.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from uservlm_ros.core.parameters import setting

SAMPLE_RATE = 16000  # what the VAD and Whisper take


@dataclass(frozen=True)
class VadConfig:
    """The segmenter's settings (the speech node's `vad.*` parameters)."""

    frame_samples: int = 512  # 32 ms at 16 kHz: the only frame size Silero VAD accepts
    sample_rate: int = SAMPLE_RATE
    start_threshold: float = setting(0.5, name="vad.start_threshold", min=0.0, max=1.0)
    """Speech probability at which an utterance starts"""
    end_threshold: float = setting(0.35, name="vad.end_threshold", min=0.0, max=1.0)
    """Below this probability a frame counts as silence (hysteresis; <= vad.start_threshold)"""
    pre_roll_ms: float = setting(200.0, name="vad.pre_roll_ms", min=0.0, max=2000.0)
    """Audio kept from before the detected start (the first syllable's onset), ms"""
    hangover_ms: float = setting(700.0, name="vad.hangover_ms", min=32.0, max=5000.0)
    """Silence that ends an utterance, ms: pauses inside a question shorter than this stay inside
    it (a finished sentence may end sooner: turn.early_end)"""
    min_speech_ms: float = setting(250.0, name="vad.min_speech_ms", min=0.0, max=5000.0)
    """Shorter utterances are dropped as too short (knocks, clicks), ms"""
    max_utterance_s: float = setting(15.0, name="vad.max_utterance_s", min=1.0, max=30.0)
    """Longer speech is cut here and continues as a new utterance, s"""
    # After this much silence (less than the hangover), a tentative copy of the utterance is
    # handed out so recognition can start while the hangover runs; 0 = never.
    early_ms: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.end_threshold <= self.start_threshold <= 1.0:
            raise ValueError(
                "need 0 <= end_threshold <= start_threshold <= 1, got "
                f"{self.end_threshold} and {self.start_threshold}"
            )
        if self.max_utterance_s * 1e3 <= self.min_speech_ms:
            raise ValueError("max_utterance_s must be longer than min_speech_ms")
        if self.early_ms and self.early_ms >= self.hangover_ms:
            raise ValueError("early_ms must be shorter than hangover_ms (or 0)")

    @property
    def frame_s(self) -> float:
        return self.frame_samples / self.sample_rate

    def frames(self, ms: float) -> int:
        """How many whole frames cover `ms` milliseconds (at least 0)."""
        return max(0, int(np.ceil(ms / 1e3 / self.frame_s - 1e-9)))


@dataclass
class Utterance:
    """Audio of one utterance (float32 mono at the config's rate) and its capture times."""

    samples: np.ndarray
    start: float  # capture time of the first sample (pre-roll included), s
    speech_end: float  # capture time of the end of the last speech frame, s
    end: float  # capture time of the end of the last sample (hangover included), s
    speech_ms: float  # from the first to the last speech frame
    cut: bool = False  # ended by max_utterance_s, not by silence
    dropped: str = ""  # "" or "too_short"
    number: int = 0  # counts the segmenter's utterances; a tentative copy shares its number
    tentative: bool = False  # a copy made early (see VadConfig.early_ms); the utterance goes on

    @property
    def key(self) -> tuple[int, float]:
        """Equal for an utterance and a tentative copy of it with the same speech in it."""
        return self.number, round(self.speech_end, 6)

    @property
    def duration_s(self) -> float:
        return self.end - self.start


class Framer:
    """Re-chunks mono float32 blocks into frames of a fixed size with their capture times."""

    def __init__(self, frame_samples: int, sample_rate: int) -> None:
        self.frame_samples = frame_samples
        self.sample_rate = sample_rate
        self._pending = np.zeros(0, np.float32)
        self._pending_start = 0.0

    def push(self, samples: np.ndarray, start: float) -> list[tuple[np.ndarray, float]]:
        """Add a block captured from `start` (s); returns the complete (frame, start) pairs."""
        samples = np.asarray(samples, np.float32)
        if len(self._pending) == 0:
            self._pending_start = start
        self._pending = np.concatenate([self._pending, samples])
        frames = []
        n = self.frame_samples
        while len(self._pending) >= n:
            frames.append((self._pending[:n], self._pending_start))
            self._pending = self._pending[n:]
            self._pending_start += n / self.sample_rate
        return frames

    def flush(self) -> list[tuple[np.ndarray, float]]:
        """The last partial frame, zero-padded (end of a file)."""
        if len(self._pending) == 0:
            return []
        frame = np.zeros(self.frame_samples, np.float32)
        frame[: len(self._pending)] = self._pending
        start, self._pending = self._pending_start, np.zeros(0, np.float32)
        return [(frame, start)]

    def reset(self) -> None:
        self._pending = np.zeros(0, np.float32)


@dataclass
class _Open:
    frames: list[np.ndarray]
    start: float
    first_speech: float
    last_speech_end: float
    number: int
    silence_frames: int = 0


class UtteranceSegmenter:
    """The voice-activity state machine; see the module docstring.

    `push(frame, start, probability)` returns the utterances that ended with this frame (none or
    one) and, with `early_ms`, the tentative copy made after that much silence. Utterances
    shorter than `min_speech_ms` come back with `dropped="too_short"` so callers can count them.
    `open_key` is the key the open utterance would have if it ended now: a tentative copy whose
    key differs from it is stale (speech went on).
    """

    def __init__(self, config: VadConfig) -> None:
        self.config = config
        self._pre_roll: deque[tuple[np.ndarray, float]] = deque(
            maxlen=max(config.frames(config.pre_roll_ms), 1)
        )
        self._keep_pre_roll = config.frames(config.pre_roll_ms) > 0
        self._hangover_frames = max(config.frames(config.hangover_ms), 1)
        self._max_frames = max(int(config.max_utterance_s / config.frame_s), 1)
        self._early_frames = config.frames(config.early_ms) if config.early_ms else 0
        self._open: _Open | None = None
        self._count = 0

    @property
    def in_speech(self) -> bool:
        return self._open is not None

    @property
    def open_key(self) -> tuple[int, float] | None:
        o = self._open
        return None if o is None else (o.number, round(o.last_speech_end, 6))

    def push(self, frame: np.ndarray, start: float, probability: float) -> list[Utterance]:
        config = self.config
        end = start + config.frame_s
        if self._open is None:
            if probability < config.start_threshold:
                self._pre_roll.append((frame, start))
                return []
            pre = list(self._pre_roll) if self._keep_pre_roll else []
            self._pre_roll.clear()
            self._count += 1
            self._open = _Open(
                frames=[f for f, _ in pre] + [frame],
                start=pre[0][1] if pre else start,
                first_speech=start,
                last_speech_end=end,
                number=self._count,
            )
            return []
        utterance = self._open
        utterance.frames.append(frame)
        if probability >= config.end_threshold:
            utterance.silence_frames = 0
            utterance.last_speech_end = end
        else:
            utterance.silence_frames += 1
        if utterance.silence_frames >= self._hangover_frames:
            return [self._close(end, cut=False)]
        if len(utterance.frames) >= self._max_frames:
            closed = self._close(end, cut=True)
            # Speech goes on: the next frames open a new utterance at once (no pre-roll).
            self._count += 1
            self._open = _Open(
                frames=[], start=end, first_speech=end, last_speech_end=end, number=self._count
            )
            return [closed]
        if self._early_frames and utterance.silence_frames == self._early_frames:
            early = self._snapshot(utterance, end, cut=False)
            early.tentative = True
            return [early]
        return []

    def flush(self) -> list[Utterance]:
        """End the open utterance (end of a file or of the stream)."""
        if self._open is None or not self._open.frames:
            self._open = None
            return []
        end = self._open.start + len(self._open.frames) * self.config.frame_s
        return [self._close(end, cut=False)]

    def reset(self) -> None:
        self._open = None
        self._pre_roll.clear()

    def discard_open(self) -> None:
        """Forget the open utterance: it was taken as finished from a tentative copy."""
        self._open = None

    def _close(self, end: float, cut: bool) -> Utterance:
        utterance, self._open = self._open, None
        return self._snapshot(utterance, end, cut)

    def _snapshot(self, utterance: _Open, end: float, cut: bool) -> Utterance:
        speech_ms = (utterance.last_speech_end - utterance.first_speech) * 1e3
        return Utterance(
            samples=np.concatenate(utterance.frames).astype(np.float32, copy=False),
            start=utterance.start,
            speech_end=utterance.last_speech_end,
            end=end,
            speech_ms=speech_ms,
            cut=cut,
            dropped="" if speech_ms >= self.config.min_speech_ms else "too_short",
            number=utterance.number,
        )


# --------------------------------------------------------------------------- transcripts

# Whisper writes these on silence, music or noise (it was trained on subtitles); alone they are
# never a question. Compared after `normalise_text`.
DEFAULT_NOISE_PHRASES = (
    "you",
    "thank you",
    "thanks",
    "thanks for watching",
    "thank you for watching",
    "bye",
    "uh",
    "um",
    "hmm",
    "mm",
    "oh",
    "ah",
    "so",
    "okay",
)


def _check_strings(value: list) -> str | None:
    return None if all(isinstance(v, str) for v in value) else "must be a list of strings"


_BRACKETED = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪+")
_NON_WORD = re.compile(r"[^\w\s']+")


def normalise_text(text: str) -> str:
    """Lower case, punctuation removed, single spaces: how transcripts are compared."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


# Whisper's hallucination loops: one word said this many times in a row, or a phrase of 2..8
# words this many times in a row, is a loop, not a question.
LOOP_WORD_REPEATS = 4
LOOP_PHRASE_REPEATS = 3
LOOP_MAX_PHRASE_WORDS = 8
# A long transcript with this few distinct words repeats itself even where the copies differ.
LOOP_MIN_WORDS = 20
LOOP_DISTINCT_RATIO = 0.3
# Under this much audio the speaking-rate test allows the text of this much audio.
MIN_RATE_SECONDS = 2.0


def repeats_in_a_loop(text: str) -> bool:
    """Whether the text goes round in a loop (see LOOP_*), after `normalise_text`."""
    words = normalise_text(text).split()
    if len(words) >= LOOP_MIN_WORDS and len(set(words)) < LOOP_DISTINCT_RATIO * len(words):
        return True
    for size in range(1, LOOP_MAX_PHRASE_WORDS + 1):
        needed = LOOP_WORD_REPEATS if size == 1 else LOOP_PHRASE_REPEATS
        for start in range(len(words) - size * needed + 1):
            phrase = words[start : start + size]
            copies = 1
            while words[start + copies * size : start + (copies + 1) * size] == phrase:
                copies += 1
                if copies >= needed:
                    return True
    return False


@dataclass(frozen=True)
class TranscriptFilter:
    """Which transcripts become questions: the speech node's `filter.*` parameters, also used by
    `uservlm transcribe` and the evaluation so that every path drops the same things.

    `reason` says why a transcript is not a question ("" when it is one): `empty`; `noise` (only
    bracketed tags such as [BLANK_AUDIO], or alone a phrase Whisper invents on noise);
    `repetition` (a hallucination loop); `too_long` (more characters than `speech_s` seconds of
    audio can hold at `max_chars_per_s`); `low_confidence`.
    """

    noise_phrases: Sequence[str] = setting(
        list(DEFAULT_NOISE_PHRASES), name="filter.noise_phrases", check=_check_strings, live=True
    )
    """Transcripts that alone are noise, not questions (compared in lower case without
    punctuation; Whisper writes them on silence and noise)"""
    min_confidence: float = setting(0.3, name="filter.min_confidence", min=0.0, max=1.0, live=True)
    """Transcripts less confident than this (exp of the mean token log-prob) are not asked"""
    # Fast speech is ~15 characters per second.
    max_chars_per_s: float = setting(
        25.0, name="filter.max_chars_per_s", min=1.0, max=1000.0, live=True
    )
    """Transcripts with more characters than this per second of audio (at least 2 s) are dropped
    as too_long: Whisper's hallucinations run longer than speech can"""

    def reason(self, text: str, confidence: float = 1.0, speech_s: float = 0.0) -> str:
        if not text.strip():
            return "empty"
        spoken = normalise_text(_BRACKETED.sub(" ", text))
        if not spoken:
            return "noise"
        if spoken in {normalise_text(p) for p in self.noise_phrases}:
            return "noise"
        if repeats_in_a_loop(spoken):
            return "repetition"
        if len(text.strip()) > self.max_chars_per_s * max(speech_s, MIN_RATE_SECONDS):
            return "too_long"
        if confidence < self.min_confidence:
            return "low_confidence"
        return ""


# Words a finished sentence does not end on: articles, possessives, prepositions, conjunctions,
# auxiliaries, question words. A pause after them is a speaker looking for the next word.
UNFINISHED_LAST_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "my",
        "your",
        "his",
        "her",
        "its",
        "our",
        "their",
        "this",
        "that",
        "these",
        "those",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "from",
        "by",
        "about",
        "into",
        "over",
        "under",
        "like",
        "than",
        "and",
        "or",
        "but",
        "so",
        "because",
        "if",
        "when",
        "while",
        "where",
        "whether",
        "is",
        "are",
        "was",
        "were",
        "am",
        "be",
        "been",
        "do",
        "does",
        "did",
        "can",
        "could",
        "would",
        "will",
        "should",
        "shall",
        "may",
        "might",
        "must",
        "have",
        "has",
        "had",
        "not",
        "very",
        "some",
        "any",
        "what",
        "who",
        "whom",
        "whose",
        "which",
        "why",
        "how",
    ]
)
MIN_FINISHED_WORDS = 3  # "Hello?" or "What?" may well go on


def sounds_finished(text: str) -> bool:
    """Whether a transcript reads as a whole sentence: at least MIN_FINISHED_WORDS words, ending
    in . ? or ! (not an ellipsis) and not on a word of UNFINISHED_LAST_WORDS. A weak test: tiny.en
    often ends a sentence cut at a pause with "?" too ("What is your favorite?"), which is why
    the speech node's `turn.early_end` is off by default."""
    stripped = text.strip().rstrip("\"')] ")
    if not stripped or stripped[-1] not in ".?!" or stripped.endswith(".."):
        return False
    words = normalise_text(stripped).split()
    return len(words) >= MIN_FINISHED_WORDS and words[-1] not in UNFINISHED_LAST_WORDS


# --------------------------------------------------------------------------- the robot's voice

ROBOT_EVENTS = ("started", "finished", "interrupted", "dropped")


@dataclass
class RobotSpeechGate:
    """When the robot spoke, from the bridge's speech events (times on the audio's clock).

    `started` opens a speaking interval; `finished` or `interrupted` closes it and extends it by
    `tail_s` (the room's echo, the audio pipeline's delay). An interval never closed (the bridge
    died mid-sentence) counts as ended `max_speech_s` after it started, so the node is never
    deaf for good. `dropped` (the bridge did not say it) changes nothing.
    """

    tail_s: float = setting(0.5, name="robot.speech_tail_s", min=0.0, max=30.0, live=True)
    """After the robot stops speaking, what is heard for this long is still its own voice, s"""
    max_speech_s: float = setting(60.0, name="robot.max_speech_s", min=1.0, max=3600.0)
    """A 'started' speech event without its 'finished' stops counting after this long, s"""
    keep_s: float = 300.0  # intervals older than this are forgotten
    _intervals: list[list[float]] = field(default_factory=list)  # [start, end or inf]

    def event(self, kind: str, at: float) -> None:
        if kind == "started":
            if not self._intervals or self._intervals[-1][1] != float("inf"):
                self._intervals.append([at, float("inf")])
        elif kind in ("finished", "interrupted"):
            if self._intervals and self._intervals[-1][1] == float("inf"):
                self._intervals[-1][1] = at + self.tail_s
            else:  # a finish without its start (we joined late): the tail still holds
                self._intervals.append([at, at + self.tail_s])
        self._intervals = [i for i in self._intervals if self._end(i) >= at - self.keep_s]

    def _end(self, interval: Sequence[float]) -> float:
        start, end = interval
        return start + self.max_speech_s if end == float("inf") else end

    def speaking(self, start: float, end: float) -> bool:
        """Whether the robot spoke (or its tail lasted) at any time in [start, end]."""
        return any(i[0] <= end and self._end(i) >= start for i in self._intervals)


# --------------------------------------------------------------------------- scoring


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER: word edits (substitutions, deletions, insertions) / reference words, after
    `normalise_text`. 0 when there are no reference words and no hypothesis words."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    edits = words = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        ref, hyp = normalise_text(reference).split(), normalise_text(hypothesis).split()
        edits += _edit_distance(ref, hyp)
        words += len(ref)
    if words == 0:
        return 0.0 if edits == 0 else float("inf")
    return edits / words


def _edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        current = [i]
        for j, other in enumerate(hyp, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
            )
        previous = current
    return previous[-1]
