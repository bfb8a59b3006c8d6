"""`uservlm eval` on recorded audio: WER and ASR latency from utterances in the labels file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import Writer
from std_msgs.msg import Header
from uservlm.msg import AudioChunk

from uservlm_ros.backends.audio import load_speech, to_int16
from uservlm_ros.core.errors import ConfigError
from uservlm_ros.eval.bags import STORAGES, _bag_qos, typestore
from uservlm_ros.eval.labels_file import load_labels
from uservlm_ros.ros.conversions import seconds_to_stamp
from uservlm_ros.sim.audio_device import SPEECH_DIR

REPO = Path(__file__).resolve().parents[1]
SAID = [
    ("tell_me_a_joke.wav", "Can you tell me a joke?"),
    ("what_time_is_it.wav", "What time is it now?"),
]


def write_audio_bag(path: Path, samples: np.ndarray, rate: int = 16000, block: int = 2720) -> int:
    """int16 mono samples as AudioChunk messages of `block` samples, as Pepper sends them."""
    with Writer(path, version=9, storage_plugin=STORAGES["mcap"]) as writer:
        connection = writer.add_connection(
            "/uservlm/audio",
            "uservlm/msg/AudioChunk",
            typestore=typestore(),
            offered_qos_profiles=[_bag_qos(True, False)],
        )
        count = 0
        for offset in range(0, len(samples), block):
            start = 1.8e9 + offset / rate
            chunk = AudioChunk(
                header=Header(stamp=seconds_to_stamp(start), frame_id="naoqi"),
                sample_rate=rate,
                channels=1,
                samples=samples[offset : offset + block],
            )
            writer.write(connection, int(start * 1e9), serialize_message(chunk))
            count += 1
    return count


@pytest.fixture(scope="module")
def speech_bag(tmp_path_factory):
    """1 s silence, a question, 1.5 s silence, a question, 1 s silence; labels with the times."""
    folder = tmp_path_factory.mktemp("speech")
    silence = np.zeros(16000, np.float32)
    parts, utterances, t = [silence], [], 1.0
    for name, text in SAID:
        clip = load_speech(SPEECH_DIR / name)
        utterances.append({"start_s": t, "end_s": t + len(clip) / 16000, "text": text})
        parts += [clip, np.zeros(24000, np.float32)]
        t += len(clip) / 16000 + 1.5
    write_audio_bag(folder / "bag", to_int16(np.concatenate(parts)))
    (folder / "labels.json").write_text(json.dumps({"frames": [], "utterances": utterances}))
    return folder


def test_eval_reports_wer_and_asr_latency_of_recorded_speech(speech_bag, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uservlm_ros.cli",
            "eval",
            str(speech_bag / "bag"),
            "--labels",
            str(speech_bag / "labels.json"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "speech: WER 0.0% over 2 utterances (0 extra detected)" in result.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    speech = report["speech"]
    assert [item["heard"] for item in speech["items"]] == [text for _, text in SAID]
    assert speech["asr_ms"]["n"] == 2 and speech["asr_ms"]["p50"] > 0
    assert 0 < speech["real_time_factor"] < 2
    assert "## Speech" in (tmp_path / "out" / "report.md").read_text()


def test_bad_utterance_labels_are_named(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"utterances": [{"start_s": 3, "end_s": 1, "text": "hi"}]}))
    with pytest.raises(ConfigError, match=r"utterances\[0\]: needs start_s < end_s"):
        load_labels(path)
