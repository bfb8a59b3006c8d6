"""Pure logic of the voice path: framing, the VAD state machine, noise filtering, the robot's
speech gate, WER; and audio files, mixing and resampling (no model, no ROS)."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from uservlm_ros.backends.audio import (
    AudioBlock,
    AudioError,
    StreamResampler,
    load_speech,
    read_wav,
    write_wav,
)
from uservlm_ros.core.utterances import (
    Framer,
    RobotSpeechGate,
    TranscriptFilter,
    UtteranceSegmenter,
    VadConfig,
    normalise_text,
    repeats_in_a_loop,
    sounds_finished,
    word_error_rate,
)

ROOT = Path(__file__).resolve().parents[1]
FRAME = 512
FRAME_S = FRAME / 16000  # 32 ms


def run(config: VadConfig, probabilities: list[float]):
    """Feed one frame per probability (each frame filled with its index) and collect output."""
    segmenter = UtteranceSegmenter(config)
    out = []
    for index, p in enumerate(probabilities):
        out += segmenter.push(np.full(FRAME, index, np.float32), index * FRAME_S, p)
    return out, segmenter


def frame_indices(utterance) -> list[int]:
    return [int(v) for v in utterance.samples[::FRAME]]


def test_framer_rechunks_pepper_buffers_into_vad_frames_with_capture_times():
    framer = Framer(FRAME, 16000)
    frames = []
    for k in range(3):  # three 170 ms buffers = 8160 samples = 15 frames + 480 left over
        frames += framer.push(np.full(2720, k, np.float32), 100.0 + k * 0.17)
    assert len(frames) == 15
    assert [start for _, start in frames[:2]] == pytest.approx([100.0, 100.0 + FRAME_S])
    # frame 5 straddles the first two buffers: 160 samples of buffer 0, then buffer 1
    assert frames[5][0][159] == 0 and frames[5][0][160] == 1
    assert frames[5][1] == pytest.approx(100.0 + 5 * FRAME_S)
    ((last, _),) = framer.flush()
    assert len(last) == FRAME and last[479] == 2 and last[480] == 0  # zero-padded


def test_segmenter_pre_roll_hangover_and_speech_end():
    config = VadConfig(pre_roll_ms=64, hangover_ms=96, min_speech_ms=0)
    probs = [0.0] * 5 + [0.9] * 10 + [0.0] * 3 + [0.0] * 4
    out, _ = run(config, probs)
    (u,) = out
    # two pre-roll frames (3, 4), speech 5..14, three hangover frames 15..17
    assert frame_indices(u) == list(range(3, 18))
    assert u.start == pytest.approx(3 * FRAME_S)
    assert u.speech_end == pytest.approx(15 * FRAME_S)
    assert u.end == pytest.approx(18 * FRAME_S)
    assert u.speech_ms == pytest.approx(10 * FRAME_S * 1e3)
    assert not u.cut and u.dropped == ""


def test_segmenter_hysteresis_keeps_weak_frames_and_short_pauses_inside():
    config = VadConfig(start_threshold=0.5, end_threshold=0.3, hangover_ms=96, min_speech_ms=0)
    # 0.4 is below the start threshold but above the end one: speech goes on
    probs = [0.9] * 3 + [0.4] * 5 + [0.1, 0.1] + [0.9] * 3 + [0.0] * 3
    out, _ = run(config, probs)
    assert len(out) == 1  # a two-frame pause (64 ms) is shorter than the hangover
    assert out[0].speech_end == pytest.approx(13 * FRAME_S)
    # a frame at 0.4 does not start speech on its own
    assert run(config, [0.4] * 20)[0] == []


def test_segmenter_drops_too_short_speech_but_reports_it():
    config = VadConfig(hangover_ms=64, min_speech_ms=250)
    out, _ = run(config, [0.0, 0.9, 0.9, 0.0, 0.0, 0.0])
    (u,) = out
    assert u.dropped == "too_short"


def test_segmenter_cuts_at_max_utterance_and_goes_on():
    config = VadConfig(max_utterance_s=1.0, hangover_ms=64, min_speech_ms=0, pre_roll_ms=0)
    frames_per_second = int(1.0 / FRAME_S)  # 31
    out, segmenter = run(config, [0.9] * (frames_per_second * 2 + 5) + [0.0] * 2)
    assert [u.cut for u in out] == [True, True, False]
    assert len(out[0].samples) == frames_per_second * FRAME
    assert out[1].start == pytest.approx(out[0].end)
    assert not segmenter.in_speech


def test_segmenter_flush_ends_open_speech_and_silence_gives_nothing():
    config = VadConfig(min_speech_ms=0)
    out, segmenter = run(config, [0.9] * 5)
    assert out == []
    (u,) = segmenter.flush()
    assert u.end == pytest.approx(5 * FRAME_S)
    assert run(config, [0.0] * 100)[0] == []


def test_vad_config_rejects_inverted_thresholds():
    with pytest.raises(ValueError, match="end_threshold"):
        VadConfig(start_threshold=0.3, end_threshold=0.5)


@pytest.mark.parametrize(
    ("text", "confidence", "reason"),
    [
        ("", 1.0, "empty"),
        ("   ", 1.0, "empty"),
        ("[BLANK_AUDIO]", 1.0, "noise"),
        (" (music) ", 1.0, "noise"),
        ("*coughs*", 1.0, "noise"),
        (" you", 1.0, "noise"),
        ("Thank you.", 1.0, "noise"),
        ("Thanks for watching!", 1.0, "noise"),
        ("What is that?", 0.1, "low_confidence"),
        ("What is that?", 0.9, ""),
        ("Thank you, what is that?", 0.9, ""),
        ("You are tall.", 0.9, ""),
    ],
)
def test_transcript_filter(text, confidence, reason):
    assert TranscriptFilter(min_confidence=0.3).reason(text, confidence, 2.0) == reason


def test_noise_phrases_are_configurable():
    assert TranscriptFilter().reason("Okay.") == "noise"
    assert TranscriptFilter(noise_phrases=("bye",)).reason("Okay.") == ""


# What 3 minutes of babble gave: one sentence over and over, asked at confidence 0.9.
LOOP = "I'm going to go to the bathroom and I'm going to go to the bathroom. " * 9


@pytest.mark.parametrize(
    ("text", "loop"),
    [
        (LOOP, True),
        ("the the the the the", True),
        ("Hello, how are you? Hello, how are you? Hello, how are you?", True),
        ("Tell me a joke, a joke, a joke please.", True),
        ("yes yes yes", False),  # emphasis, not a loop
        ("Can you tell me a joke?", False),
        ("What is the time in London and what is the time in Tokyo?", False),
    ],
)
def test_hallucination_loops_are_recognised(text, loop):
    assert repeats_in_a_loop(text) is loop


def test_loops_and_over_long_transcripts_are_not_questions():
    filters = TranscriptFilter()
    assert filters.reason(LOOP, 0.9, speech_s=15.0) == "repetition"
    varied = " ".join(f"And then the {word} went to the market again." for word in "abcdefghij")
    assert filters.reason(varied, 0.9, speech_s=15.0) == "repetition"  # few distinct words
    # 420 characters of varied text cannot come out of 3 s of audio (nor 15 s)
    long_text = " ".join(f"word{i}" for i in range(70))
    assert filters.reason(long_text, 0.9, speech_s=3.0) == "too_long"
    assert filters.reason(long_text, 0.9, speech_s=15.0) == "too_long"
    assert filters.reason(long_text, 0.9, speech_s=20.0) == ""
    # a short question in a short utterance is never too long (the rate test allows 2 s)
    assert filters.reason("What is your favourite colour?", 0.9, speech_s=0.4) == ""


class _SaysOnEverything:
    """A recogniser that hears the same text in any audio."""

    model_id = "fake"

    def __init__(self, text: str) -> None:
        self.text = text

    def transcribe(self, samples):
        from uservlm_ros.backends.asr import AsrResult

        return AsrResult(self.text, 0.9, "en", 0.0, 1.0)


@pytest.mark.parametrize(("text", "reason"), [("Thank you.", "noise"), (LOOP, "repetition")])
def test_files_are_judged_by_the_speech_nodes_filters(text, reason):
    from uservlm_ros.backends.listener import transcribe_audio

    def loud_vad(frame):
        return 1.0 if np.abs(frame).max() > 0.01 else 0.0

    audio = np.concatenate([np.zeros(8000), 0.5 * np.ones(16000), np.zeros(16000)])
    (heard,) = transcribe_audio(
        audio.astype(np.float32), loud_vad, _SaysOnEverything(text), VadConfig()
    )
    assert heard.text == text and heard.dropped == reason


@pytest.mark.parametrize(
    ("text", "finished"),
    [
        ("Can you tell me a joke?", True),
        ("What time is it now?", True),
        ("Tell me a story.", True),
        ("Could you describe", False),
        ("Could you describe...", False),
        ("What is your?", False),  # a sentence does not end on "your"
        ("Could you describe what?", False),
        ("Hello?", False),  # too short to tell
        ("What?", False),
        ("Can you tell me a", False),
        ("", False),
    ],
)
def test_a_finished_sentence_can_end_the_turn_early(text, finished):
    assert sounds_finished(text) is finished


def test_robot_speech_gate_covers_speech_and_tail_only():
    gate = RobotSpeechGate(tail_s=0.5)
    gate.event("started", 10.0)
    assert gate.speaking(11.0, 12.0)  # still talking (no finish yet)
    gate.event("finished", 13.0)
    assert gate.speaking(9.0, 10.1)  # overlaps the start
    assert gate.speaking(13.2, 14.0)  # inside the tail
    assert not gate.speaking(13.6, 15.0)  # after the tail
    assert not gate.speaking(8.0, 9.9)  # before
    gate.event("dropped", 20.0)  # said nothing
    assert not gate.speaking(19.0, 21.0)
    gate.event("started", 30.0)
    gate.event("interrupted", 31.0)  # robot lost mid-sentence: over, tail included
    assert gate.speaking(31.4, 32.0) and not gate.speaking(31.6, 32.0)


def test_robot_speech_gate_never_deaf_for_good():
    gate = RobotSpeechGate(tail_s=0.5, max_speech_s=10.0)
    gate.event("started", 0.0)  # its "finished" never comes
    assert gate.speaking(5.0, 6.0)
    assert not gate.speaking(11.0, 12.0)


def test_word_error_rate():
    assert word_error_rate(["What is your name?"], ["what is your name"]) == 0.0
    assert word_error_rate(["a b c d"], ["a x c"]) == pytest.approx(2 / 4)  # sub + del
    assert word_error_rate(["a b", "c d"], ["a b e", "c d"]) == pytest.approx(1 / 4)
    assert word_error_rate([""], [""]) == 0.0
    assert normalise_text("Hello, how ARE you?!") == "hello how are you"
    with pytest.raises(ValueError):
        word_error_rate(["a"], [])


# --------------------------------------------------------------------------- audio


def tone(rate: int, seconds: float = 0.5, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_resampler_mixes_channels_and_converts_rates():
    left = (tone(48000) * 32767).astype(np.int16)
    stereo = np.stack([left, left], axis=1).reshape(-1)
    out = StreamResampler()(AudioBlock(stereo, 48000, 2, 0.0))
    assert len(out) == 8000 and out.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(out))
    assert np.argmax(spectrum) * 16000 / len(out) == pytest.approx(440, abs=4)
    same = StreamResampler()(AudioBlock(left[:1600], 16000, 1, 0.0))
    assert len(same) == 1600


def test_malformed_blocks_are_rejected_with_a_reason():
    with pytest.raises(AudioError, match="divide"):
        StreamResampler()(AudioBlock(np.zeros(5, np.int16), 16000, 2, 0.0))
    with pytest.raises(AudioError, match="sample rate"):
        StreamResampler()(AudioBlock(np.zeros(4, np.int16), 0, 1, 0.0))


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_wav_sample_widths_are_read(tmp_path, width):
    path = tmp_path / f"w{width}.wav"
    reference = (tone(8000) * 32767).astype(np.int16)
    if width == 1:
        raw = ((reference >> 8) + 128).astype(np.uint8).tobytes()
    elif width == 2:
        raw = reference.astype("<i2").tobytes()
    elif width == 3:
        raw = b"".join(b"\x00" + int(v).to_bytes(2, "little", signed=True) for v in reference)
    else:
        raw = (reference.astype("<i4") << 16).astype("<i4").tobytes()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(width)
        wav.setframerate(8000)
        wav.writeframes(raw)
    samples, rate, channels = read_wav(path)
    assert (rate, channels) == (8000, 1)
    tolerance = 256 if width == 1 else 0
    assert np.max(np.abs(samples.astype(int) - reference.astype(int))) <= tolerance
    assert len(load_speech(path)) == 16000 * 0.5  # resampled to 16 kHz


def _wav_bytes(rate: int, header_frames: int, frames: int) -> bytes:
    fmt = (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little")
    fmt += (rate * 2).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    data = np.zeros(frames, "<i2").tobytes()
    size = header_frames * 2
    return (
        b"RIFF"
        + (36 + size).to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + fmt
        + b"data"
        + size.to_bytes(4, "little")
        + data
    )


def test_a_wav_with_sample_rate_zero_is_named(tmp_path):
    path = tmp_path / "rate0.wav"
    path.write_bytes(_wav_bytes(0, 1600, 1600))
    with pytest.raises(AudioError, match="sample rate 0") as error:
        read_wav(path)
    assert str(path) in str(error.value)


def test_a_truncated_wav_is_used_with_a_warning(tmp_path):
    path = tmp_path / "cut.wav"
    path.write_bytes(_wav_bytes(16000, 28800, 8000))  # the header says 1.8 s, 0.5 s is there
    warnings = []
    samples, rate, _ = read_wav(path, warnings.append)
    assert (len(samples), rate) == (8000, 16000)
    (warning,) = warnings
    assert str(path) in warning and "1.80 s" in warning and "0.50 s" in warning
    whole = tmp_path / "whole.wav"
    write_wav(whole, samples)
    warnings.clear()
    read_wav(whole, warnings.append)
    assert warnings == []


def test_the_file_source_warns_of_a_truncated_file_and_names_a_bad_rate(tmp_path):
    from uservlm_ros.backends.audio_sources import FileOptions, FileSource

    (tmp_path / "1_cut.wav").write_bytes(_wav_bytes(16000, 28800, 8000))
    (tmp_path / "2_rate0.wav").write_bytes(_wav_bytes(0, 1600, 1600))
    source = FileSource(FileOptions(str(tmp_path), realtime=False, gap_s=0.0))
    statuses, blocks = [], []
    source.start(blocks.append, lambda ok, message: statuses.append((ok, message)))
    assert source.finished.wait(10)
    source.stop()
    problems = [message for ok, message in statuses if not ok]
    assert len(problems) == 2, statuses
    assert "1_cut.wav: truncated" in problems[0] and "0.50 s" in problems[0]
    assert "2_rate0.wav: sample rate 0 Hz" in problems[1]
    assert sum(len(b.samples) for b in blocks) == 8000  # what the truncated file holds


def test_bad_wav_files_get_one_clear_line(tmp_path):
    (tmp_path / "text.wav").write_text("hello")
    (tmp_path / "empty.wav").write_bytes(b"")
    header_only = tmp_path / "header.wav"
    write_wav(header_only, np.zeros(0, np.int16))
    cases = {
        tmp_path / "text.wav": "not a PCM WAV file",
        tmp_path / "empty.wav": "empty",
        header_only: "no audio",
        tmp_path / "missing.wav": "no such file",
    }
    for path, reason in cases.items():
        with pytest.raises(AudioError, match=reason) as error:
            read_wav(path)
        assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_segmenter_hands_out_a_tentative_copy_before_the_hangover_ends():
    config = VadConfig(hangover_ms=160, early_ms=64, min_speech_ms=0, pre_roll_ms=0)
    segmenter = UtteranceSegmenter(config)
    out = []
    probs = [0.9] * 5 + [0.0] * 2  # 2 silent frames = 64 ms: the tentative copy
    for index, p in enumerate(probs):
        out += segmenter.push(np.full(FRAME, index, np.float32), index * FRAME_S, p)
    (early,) = out
    assert early.tentative and segmenter.in_speech
    assert segmenter.open_key == early.key
    for index, p in enumerate([0.0] * 3, start=len(probs)):  # silence goes on: it ends
        out += segmenter.push(np.full(FRAME, index, np.float32), index * FRAME_S, p)
    final = out[-1]
    assert not final.tentative and final.key == early.key  # same speech: reuse its result
    assert len(final.samples) > len(early.samples)


def test_a_tentative_copy_goes_stale_when_speech_resumes():
    config = VadConfig(hangover_ms=160, early_ms=64, min_speech_ms=0, pre_roll_ms=0)
    out, _ = run(config, [0.9] * 5 + [0.0] * 2 + [0.9] * 3 + [0.0] * 5)
    early, second_early, final = out
    assert early.tentative and second_early.tentative and not final.tentative
    assert final.key != early.key and final.key == second_early.key
    with pytest.raises(ValueError, match="early_ms"):
        VadConfig(hangover_ms=100, early_ms=128)


def test_an_utterance_taken_as_finished_early_is_forgotten():
    config = VadConfig(hangover_ms=320, early_ms=64, min_speech_ms=0, pre_roll_ms=0)
    out, segmenter = run(config, [0.9] * 5 + [0.0] * 2)
    (early,) = out
    segmenter.discard_open()  # asked from the early copy
    later, _ = run(config, [0.0] * 20)
    assert not segmenter.in_speech and later == []
    assert segmenter.push(np.zeros(FRAME, np.float32), 1.0, 0.9) == []  # new speech: new one
    assert segmenter.open_key[0] == early.number + 1


def test_niceness_reaches_the_threads_that_already_run():
    # In a child process: niceness cannot be lowered back without root.
    probe = (
        "import os, threading, time\n"
        "from pathlib import Path\n"
        "from uservlm_ros.core.cpu import set_niceness\n"
        "stop = threading.Event()\n"
        "early = threading.Thread(target=stop.wait); early.start()\n"
        "print(set_niceness(7))\n"
        "late = threading.Thread(target=stop.wait); late.start()\n"
        "print(sorted({int(p.joinpath('stat').read_text().rsplit(')', 1)[1].split()[16])\n"
        "              for p in Path('/proc/self/task').iterdir()}))\n"
        "stop.set()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    threads, niceness = result.stdout.splitlines()
    assert int(threads) >= 2  # the main thread and the early one
    assert niceness == "[7]"  # every thread, the early and the late one included
