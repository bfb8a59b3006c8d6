"""The local voice: the shipped Piper voice spoken by the piper program in its own process, heard
back by the speech node's own recogniser; `uservlm say`; the local backend's sentences, stop and
WAV output; the simulated Pepper talking in that voice; the shipped user-question clips."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from uservlm_ros.backends.asr import AsrOptions
from uservlm_ros.backends.audio import load_speech, read_wav
from uservlm_ros.backends.local_speech import (
    OUTPUTS,
    LocalSpeech,
    SpeechStopped,
    WavOptions,
    WavOutput,
    split_sentences,
)
from uservlm_ros.backends.pepper_speech import Utterance
from uservlm_ros.backends.tts import (
    SYNTHESIZERS,
    PiperProcess,
    TtsError,
    TtsOptions,
    resolve_voice,
    speakable_line,
)
from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.utterances import word_error_rate
from uservlm_ros.eval.speech import Recogniser, score_speech
from uservlm_ros.sim.audio_device import RATE, SPEECH_DIR, SimulatedMicrophones

# What the robot says: greetings, answers about the user and the scene, fallbacks, jokes.
ROBOT_SENTENCES = [
    "Hello, I am Pepper.",
    "It is nice to meet you.",
    "You are wearing a blue shirt and glasses.",
    "I can see two people in front of me.",
    "You look happy today.",
    "My favorite color is green.",
    "Let me think about that for a moment.",
    "I am sorry, I did not understand the question.",
    "Could you say that again, please?",
    "There is a red chair next to the window.",
    "Why did the robot cross the road?",
    "It is a quarter past three.",
]


@pytest.fixture(scope="module")
def voice():
    synthesizer = PiperProcess(TtsOptions())
    yield synthesizer
    synthesizer.close()


@pytest.fixture(scope="module")
def recogniser():
    return Recogniser(AsrOptions(threads=2))


def test_the_voice_is_understood_by_the_speech_nodes_recogniser(tmp_path, voice, recogniser):
    speech = LocalSpeech(voice, WavOutput(str(tmp_path)))
    speech.connect()
    for index, sentence in enumerate(ROBOT_SENTENCES):
        speech.speak(Utterance(f"s{index:02d}", sentence))
    files = sorted(tmp_path.glob("*.wav"))
    assert len(files) == len(ROBOT_SENTENCES)
    score = score_speech(recogniser, list(zip(files, ROBOT_SENTENCES, strict=True)))
    assert score.n >= 10
    assert score.wer <= 0.05, score.items  # the target


def test_uservlm_say_writes_the_wav_and_refuses_bad_input_in_one_line(tmp_path, recogniser):
    out = tmp_path / "hello.wav"
    command = [sys.executable, "-m", "uservlm_ros.cli", "say"]
    done = subprocess.run(
        [*command, "Hello, I am Pepper.", "Nice to meet you.", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "en_US-joe-medium" in done.stdout
    samples, rate, channels = read_wav(out)
    assert (rate, channels) == (22050, 1) and len(samples) > rate  # both sentences, > 1 s
    heard = recogniser.transcribe_file(out).text
    assert word_error_rate(["Hello, I am Pepper. Nice to meet you."], [heard]) == 0, heard
    for args, expected in [
        (["hi", "--voice", str(tmp_path / "none")], "no Piper voice at"),
        (["hi", "--backend", "nope"], "unknown text-to-speech backend"),
        (["hi", "--out", "/proc/no/such.wav"], "cannot"),
    ]:
        bad = subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)
        assert bad.returncode != 0
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in bad.stderr


def test_voices_resolve_from_a_file_or_a_folder_and_say_what_is_wrong(tmp_path):
    shipped = resolve_voice("")
    assert shipped.name == "en_US-joe-medium" and shipped.sample_rate == 22050
    assert resolve_voice(str(shipped.model.parent)) == shipped  # a folder holding one voice
    assert resolve_voice(str(shipped.model)) == shipped
    with pytest.raises(ConfigError, match=r"must hold one \.onnx voice"):
        resolve_voice(str(tmp_path))
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=r"x\.onnx\.json is missing or unreadable"):
        resolve_voice(str(tmp_path))
    with pytest.raises(ConfigError, match="unknown text-to-speech backend 'espeak'; known: piper"):
        SYNTHESIZERS.create("espeak", TtsOptions())
    with pytest.raises(ConfigError, match=r"needs tts\.wav_dir"):
        OUTPUTS.create("wav", WavOptions())
    with pytest.raises(ConfigError, match="unknown audio output 'headphones'; known: speaker, wav"):
        OUTPUTS.create("headphones", {})


def test_text_becomes_one_line_and_sentences_in_order():
    assert speakable_line("  Hello\nthere.\t You ") == "Hello there. You"
    assert speakable_line("...") == ""  # nothing to say: never sent to the program
    assert split_sentences("Hi there! It is 3.5 m away, Dr. Who. And you") == [
        "Hi there!",
        "It is 3.5 m away, Dr. Who.",
        "And you",
    ]
    assert split_sentences("   ") == []


def test_nothing_to_say_gives_no_audio_and_a_dead_program_is_restarted(voice):
    assert len(voice.synthesize("?!")) == 0
    voice.synthesize("Ready.")
    dead = voice._process
    dead.kill()  # the program dies between two sentences: the next one starts it again
    dead.wait()
    assert len(voice.synthesize("Back again.")) > 0.3 * voice.voice.sample_rate
    assert voice._process is not dead


def test_a_program_that_says_nothing_is_one_clear_error(tmp_path):
    mute = tmp_path / "mute"
    mute.write_text("#!/bin/sh\nexec cat > /dev/null\n")  # reads every line, writes no WAV
    mute.chmod(0o755)
    silent = PiperProcess(TtsOptions(timeout_s=5.0), python=str(mute))
    with pytest.raises(TtsError, match="piper said nothing in 5 s"):
        silent.synthesize("Hello.")
    silent.close()


class StoppingAfterTwoSentences(WavOutput):
    """A listener who asks something new while the robot says its second sentence."""

    speech: LocalSpeech

    def play(self, samples, rate, stop) -> None:
        super().play(samples, rate, stop)
        if len(self._pieces) == 2:
            self.speech.stop()


def test_stop_cuts_the_utterance_short(tmp_path, voice):
    output = StoppingAfterTwoSentences(str(tmp_path))
    speech = output.speech = LocalSpeech(voice, output)
    speech.connect()
    sentence = "This is one more sentence of a very long answer."
    with pytest.raises(SpeechStopped):
        speech.speak(Utterance("long", " ".join([sentence] * 8)))
    (kept,) = tmp_path.glob("*_long_full.wav")  # what was said before the stop
    samples, _, _ = read_wav(kept)
    one = len(voice.synthesize(sentence))
    assert 1.5 * one < len(samples) < 2.5 * one


def test_the_simulated_pepper_hears_itself_say_what_it_said(recogniser):
    from uservlm_ros.sim.pepper import SimulatedPepper

    microphones = SimulatedMicrophones()
    with SimulatedPepper(speech_s_per_word=0.01, microphones=microphones) as pepper:
        started = time.monotonic()
        pepper.services["ALAnimatedSpeech"].say("^start(animations/x) I like your red shirt.")
        took = time.monotonic() - started
    heard_s = microphones.own_speech_s
    assert 1.0 < heard_s < 4.0 and took >= heard_s  # say() lasts as long as the voice
    blocks = [microphones.next_block(0.0) for _ in range(int(heard_s * RATE / 2720) + 2)]
    audio = np.concatenate(blocks).astype(np.float32) / 32768
    assert np.abs(audio).max() > 0.1
    text = recogniser.asr.transcribe(audio).text
    assert word_error_rate(["I like your red shirt."], [text]) == 0, text


def test_the_shipped_speech_folder_holds_only_user_questions():
    # `uservlm sim-pepper --mic uservlm_ros/sim/speech` plays every clip as a user speaking.
    rows = dict(r.split("\t") for r in (SPEECH_DIR / "transcripts.tsv").read_text().splitlines())
    clips = {p.name for p in SPEECH_DIR.glob("*.wav")}
    assert clips == set(rows)
    assert all(text.endswith("?") for text in rows.values()), rows
    for name in clips:
        assert len(load_speech(Path(SPEECH_DIR / name))) > RATE // 2
