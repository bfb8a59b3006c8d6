"""The real models on the shipped speech: Silero VAD + Whisper tiny.en (int8, CPU), through the
same code as the speech node; `uservlm transcribe` on good and bad files."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from uservlm_ros.backends.asr import AsrOptions, resolve_whisper_model
from uservlm_ros.backends.audio import load_speech, write_wav
from uservlm_ros.backends.listener import transcribe_audio
from uservlm_ros.core.errors import ModelLoadError
from uservlm_ros.core.utterances import VadConfig, word_error_rate
from uservlm_ros.eval.speech import Recogniser, score_speech
from uservlm_ros.sim.audio_device import SPEECH_DIR

REPO = Path(__file__).resolve().parents[1]


def shipped_questions() -> list[tuple[Path, str]]:
    rows = (SPEECH_DIR / "transcripts.tsv").read_text().splitlines()
    return [(SPEECH_DIR / name, text) for name, text in (r.split("\t") for r in rows if r)]


@pytest.fixture(scope="module")
def recogniser():
    return Recogniser(AsrOptions(threads=2))


def test_shipped_speech_is_small_mono_16k_and_listed():
    files = sorted(SPEECH_DIR.glob("*.wav"))
    assert sum(f.stat().st_size for f in files) < 1_000_000
    listed = {p.name for p, _ in shipped_questions()}
    assert {f.name for f in files} == listed
    for path in files:
        with wave.open(str(path)) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)


def test_word_error_rate_on_the_shipped_questions_is_within_the_target(recogniser):
    score = score_speech(recogniser, shipped_questions())
    assert score.n == 6
    # The target for clean synthesized English: WER <= 8 %.
    assert score.wer <= 0.08, score.items
    assert 0 < score.real_time_factor < 2.0


def test_the_short_audio_context_hears_the_same_words_as_whisper_s_whole_window(recogniser):
    from uservlm_ros.backends.asr import FasterWhisperAsr

    whole = FasterWhisperAsr(AsrOptions(threads=2, audio_context_s=30.0))
    for path, _ in shipped_questions():
        audio = load_speech(path)
        assert recogniser.asr.transcribe(audio).text == whole.transcribe(audio).text


def test_a_question_in_silence_is_one_utterance_with_its_place(recogniser):
    speech = load_speech(SPEECH_DIR / "tell_me_a_joke.wav")
    audio = np.concatenate([np.zeros(16000, np.float32), speech, np.zeros(16000, np.float32)])
    (utterance,) = transcribe_audio(audio, recogniser.vad, recogniser.asr, VadConfig())
    assert word_error_rate(["Can you tell me a joke?"], [utterance.text]) == 0
    assert 0.7 < utterance.start_s < 1.2  # the speech starts 1 s in (less the pre-roll)
    assert utterance.confidence > 0.5 and utterance.asr_ms > 0


def noises() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(5 * 16000) / 16000
    clicks = np.zeros(5 * 16000, np.float32)
    clicks[::8000] = 0.9  # a knock every half second
    return {
        "silence": np.zeros(5 * 16000, np.float32),
        "white noise": rng.normal(0, 0.05, 5 * 16000).astype(np.float32),
        "mains hum": (0.3 * np.sin(2 * np.pi * 50 * t)).astype(np.float32),
        "fan tone": (0.2 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32),
        "clicks": clicks,
    }


@pytest.mark.parametrize("name", list(noises()))
def test_silence_and_noise_produce_no_question(recogniser, name):
    utterances = transcribe_audio(noises()[name], recogniser.vad, recogniser.asr, VadConfig())
    questions = [u for u in utterances if not u.dropped]
    assert questions == [], [(u.text, u.dropped) for u in utterances]


def test_model_path_errors_are_clear(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no model\.bin"):
        resolve_whisper_model(str(tmp_path))
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_whisper_model(str(tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError, match="local Hugging Face cache"):
        resolve_whisper_model("large-v3-turbo")  # never downloaded at run time


def transcribe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "uservlm_ros.cli", "transcribe", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
    )


def test_transcribe_command_resamples_mixes_and_reports_bad_files(tmp_path):
    speech = load_speech(SPEECH_DIR / "what_time_is_it.wav")
    # the same question as 44.1 kHz stereo
    from scipy.signal import resample_poly

    stereo = tmp_path / "stereo44k.wav"
    resampled = (resample_poly(speech, 441, 160) * 32767).astype("<i2")
    with wave.open(str(stereo), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(np.repeat(resampled, 2).tobytes())
    (tmp_path / "notes.wav").write_text("not audio")
    (tmp_path / "empty.wav").write_bytes(b"")
    write_wav(tmp_path / "silence.wav", np.zeros(16000, np.int16))
    result = transcribe(
        str(stereo),
        str(tmp_path / "notes.wav"),
        str(tmp_path / "empty.wav"),
        str(tmp_path / "missing.wav"),
        str(tmp_path / "silence.wav"),
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    path, text = lines[0].split("\t")
    assert path == str(stereo) and word_error_rate(["What time is it now?"], [text]) == 0
    assert lines[1] == f"{tmp_path / 'silence.wav'}\t"
    errors = [line for line in result.stderr.splitlines() if line.startswith("uservlm")]
    assert len(errors) == 3, result.stderr
    assert "notes.wav: not a PCM WAV file" in errors[0]
    assert "empty.wav: the file is empty" in errors[1]
    assert "missing.wav: no such file" in errors[2]
    assert "Traceback" not in result.stderr


def test_transcribe_json_gives_timings_per_utterance():
    result = transcribe("--json", str(SPEECH_DIR / "tell_me_a_joke.wav"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["text"] == "Can you tell me a joke?"
    (utterance,) = data["utterances"]
    assert utterance["asr_ms"] > 0 and utterance["vad_ms"] > 0
    assert data["duration_s"] == pytest.approx(1.61, abs=0.01)
