"""Voice benchmark: end of speech -> question -> robot speech, and ASR cost against faster-whisper.

    .venv/bin/python bench/speech.py              # 2 rounds of the 6 shipped questions (~2 min)
    .venv/bin/python bench/speech.py --rounds 1   # quicker

A simulated Pepper runs in this process; speech_node (its microphones over qi), the fallback
vlm_responder_node and naoqi_bridge_node run as processes over DDS, as in `make demo`. Each
shipped question is first recognised by faster-whisper called directly here (same model, same
settings: the baseline), then spoken into the simulated Pepper's microphones in real time, and
followed to the robot's answer. Times are on the host clock:

- end of speech: capture time of the clip's last sample louder than -40 dBFS, in the simulated
  microphones (NAOqi delivers a 170 ms buffer when it is full, so the buffering counts);
- question: the Transcript's stamp, taken right after the Respond goal was sent;
- robot speaks: the bridge's "started" speech event for that request (sent just before
  ALAnimatedSpeech.say).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from uservlm_ros.backends.asr import AsrOptions, resolve_whisper_model  # noqa: E402
from uservlm_ros.backends.audio import load_speech  # noqa: E402
from uservlm_ros.core.utterances import word_error_rate  # noqa: E402
from uservlm_ros.sim.audio_device import SPEECH_DIR  # noqa: E402

GRAPH = {
    "speech_node": {"ros__parameters": {"source": "naoqi", "naoqi": {"reconnect_max_s": 1.0}}},
    "vlm_responder_node": {"ros__parameters": {"responder": {"backend": "fallback"}}},
    "naoqi_bridge_node": {"ros__parameters": {"backend": "libqi"}},
}


def questions() -> list[tuple[str, str]]:
    rows = (SPEECH_DIR / "transcripts.tsv").read_text().splitlines()
    pairs = [tuple(r.split("\t")) for r in rows if r]
    return [(name, text) for name, text in pairs if name != "robot_voice.wav"]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def row(name: str, values: list[float], baseline: list[float] | None = None) -> str:
    p50, p95 = percentile(values, 50), percentile(values, 95)
    ratio = f"{p50 / percentile(baseline, 50):7.2f}x" if baseline else " " * 8
    return f"| {name:<44} | {p50:8.1f} | {p95:8.1f} | {ratio} | {len(values):3d} |"


class DirectWhisper:
    """faster-whisper called directly: the baseline (same folder, settings as AsrOptions)."""

    def __init__(self, options: AsrOptions) -> None:
        from faster_whisper import WhisperModel

        folder, _ = resolve_whisper_model(options.path)
        self.options = options
        self.model = WhisperModel(
            str(folder),
            device="cpu",
            compute_type=options.compute_type,
            cpu_threads=options.threads,
        )

    def __call__(self, audio: np.ndarray) -> tuple[str, float]:
        o = self.options
        started = time.perf_counter()
        segments, _ = self.model.transcribe(
            audio,
            language=o.language,
            beam_size=o.beam_size,
            temperature=0.0,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        text = " ".join(s.text.strip() for s in segments)
        return text, (time.perf_counter() - started) * 1e3


class Observer:
    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from std_msgs.msg import String
        from uservlm.msg import Transcript

        from uservlm_ros.ros import topics
        from uservlm_ros.ros.qos import RELIABLE_QOS

        self.node = rclpy.create_node("bench_speech")
        self.lock = threading.Lock()
        self.transcripts: list = []
        self.started: dict[str, float] = {}
        self.finished: set[str] = set()
        self.node.create_subscription(Transcript, topics.TRANSCRIPT, self._transcript, RELIABLE_QOS)
        self.node.create_subscription(String, topics.SPEECH_EVENTS, self._event, RELIABLE_QOS)
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _transcript(self, msg) -> None:
        with self.lock:
            self.transcripts.append(msg)

    def _event(self, msg) -> None:
        event = json.loads(msg.data)
        with self.lock:
            if event["event"] == "started":
                self.started.setdefault(event["request_id"], time.time())
            elif event["event"] == "finished" and event["part"] in ("rest", "full"):
                self.finished.add(event["request_id"])

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()


def wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="times each question is asked")
    parser.add_argument("--threads", type=int, default=2, help="recogniser CPU threads")
    args = parser.parse_args()

    import qi
    import rclpy

    from uservlm_ros.bringup.graph import load_graph
    from uservlm_ros.bringup.runner import GraphRunner
    from uservlm_ros.ros.conversions import stamp_to_seconds
    from uservlm_ros.ros.node_main import use_uservlm_dds_profile
    from uservlm_ros.sim.pepper import SimulatedPepper

    qi.logging.setLevel(qi.logging.WARNING)
    use_uservlm_dds_profile()
    options = AsrOptions(threads=args.threads)
    direct = DirectWhisper(options)
    clips = [(name, text, load_speech(SPEECH_DIR / name)) for name, text in questions()]
    direct(clips[0][2])  # warm-up, as the node does at configure

    pepper = SimulatedPepper(port=0, speech_s_per_word=0.15)
    pepper.start()
    work = Path(tempfile.mkdtemp(prefix="bench_speech_"))
    params = work / "speech.yaml"
    GRAPH["speech_node"]["ros__parameters"]["naoqi"]["port"] = pepper.port
    GRAPH["speech_node"]["ros__parameters"]["model"] = {"threads": args.threads}
    GRAPH["naoqi_bridge_node"]["ros__parameters"]["robot"] = {"port": pepper.port}
    params.write_text(yaml.safe_dump(GRAPH))
    log = (work / "nodes.log").open("w")
    runner = GraphRunner(load_graph(params), out=log, colour=False)
    rclpy.init()
    observer = None
    results = []
    try:
        runner.start()
        observer = Observer()
        if not wait(lambda: "uservlm_speech" in pepper.services["ALAudioDevice"].subscribers, 120):
            raise SystemExit(f"speech_node did not subscribe; see {work / 'nodes.log'}")
        wait(lambda: bool(pepper.calls_to("ALMotion", "wakeUp")), 60)  # the bridge is connected
        time.sleep(2.0)
        for round_index in range(args.rounds):
            for name, text, audio in clips:
                direct_text, direct_ms = direct(audio)  # the graph is idle meanwhile
                played = pepper.microphones.play(audio, name)
                played.done.wait(30)

                def heard(played=played):
                    with observer.lock:
                        return next(
                            (
                                t
                                for t in observer.transcripts
                                if not t.dropped and stamp_to_seconds(t.audio_end) >= played.start
                            ),
                            None,
                        )

                wait(lambda: heard() is not None, 30)
                transcript = heard()
                entry = {
                    "clip": name,
                    "reference": text,
                    "direct_text": direct_text,
                    "direct_ms": direct_ms,
                    "audio_s": len(audio) / 16000,
                    "speech_end": played.speech_end,
                }
                if transcript is not None:
                    rid = transcript.request_id
                    wait(lambda rid=rid: rid in observer.finished, 60)
                    with observer.lock:
                        spoke = observer.started.get(rid)
                    entry.update(
                        text=transcript.text,
                        asr_ms=transcript.asr_ms,
                        question_at=stamp_to_seconds(transcript.header.stamp),
                        robot_speech_at=spoke,
                    )
                results.append(entry)
                print(
                    f"round {round_index + 1} {name}: heard {entry.get('text')!r} "
                    f"(direct {direct_text!r})",
                    flush=True,
                )
                time.sleep(1.0)  # the robot's voice tail
    finally:
        runner.stop()
        log.close()
        if observer is not None:
            observer.close()
        rclpy.try_shutdown()
        pepper.stop()

    heard = [r for r in results if "text" in r]
    to_question = [(r["question_at"] - r["speech_end"]) * 1e3 for r in heard]
    to_robot = [
        (r["robot_speech_at"] - r["speech_end"]) * 1e3 for r in heard if r["robot_speech_at"]
    ]
    node_asr = [r["asr_ms"] for r in heard]
    direct_asr = [r["direct_ms"] for r in results]
    node_rtf = [r["asr_ms"] / 1e3 / r["audio_s"] for r in heard]
    direct_rtf = [r["direct_ms"] / 1e3 / r["audio_s"] for r in results]
    print(
        f"\n{len(heard)}/{len(results)} spoken questions heard; "
        f"nodes' output: {work / 'nodes.log'}\n"
    )
    print(f"| {'measure':<44} | p50      | p95      | ratio    | n   |")
    print(f"|{'-' * 46}|----------|----------|----------|-----|")
    print(row("faster-whisper direct: ASR compute, ms", direct_asr))
    print(row("speech_node: ASR compute, ms", node_asr, direct_asr))
    print(row("faster-whisper direct: real-time factor", direct_rtf))
    print(row("speech_node: real-time factor", node_rtf, direct_rtf))
    print(row("end of speech -> question published, ms", to_question))
    print(row("end of speech -> robot starts speaking, ms", to_robot))
    wer_node = word_error_rate([r["reference"] for r in heard], [r["text"] for r in heard])
    wer_direct = word_error_rate(
        [r["reference"] for r in results], [r["direct_text"] for r in results]
    )
    print(
        f"\nWER: speech_node {wer_node:.1%}, faster-whisper direct {wer_direct:.1%} "
        f"({sum(len(r['reference'].split()) for r in results)} reference words)"
    )
    print(
        "targets: WER <= 8 %, end of speech -> question p50 <= 800 ms, ASR <= 1.1x direct, "
        "end of speech -> robot speech p50 <= 1200 ms"
    )
    return 0 if len(heard) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
