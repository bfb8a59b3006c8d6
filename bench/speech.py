"""Turn-taking benchmark: end of the user's speech -> the robot starts speaking, stage by stage,
for the speech settings of before (the same-run baseline) and today's defaults.

    .venv/bin/python bench/speech.py              # 2 rounds of the 6 shipped questions (~8 min)
    .venv/bin/python bench/speech.py --rounds 1   # quicker

For each variant a simulated Pepper runs in this process and speech_node (its microphones over
qi), the fallback vlm_responder_node and naoqi_bridge_node run as processes over DDS, as in
`make demo`. Each shipped question is spoken into the simulated microphones in real time and
followed to the robot's voice; then each question again with a pause of 300, 450 and 600 ms
spliced into it at its quietest point between words, to count questions cut in two. Times are on
the host clock:

- end of speech: capture time of the clip's last sample louder than -40 dBFS, in the simulated
  microphones (NAOqi delivers a 170 ms buffer when it is full, so the buffering counts);
- question: the Transcript's stamp, taken right after the Respond goal was sent; its `asr_ms`
  is the recognition compute (the rest of that stage is the VAD's wait for the end of the turn,
  capture buffering and the recognition queue);
- first sentence: the first Response (streamed or final) of that request reaching this process;
- bridge: the bridge's "started" speech event (sent just before ALAnimatedSpeech.say);
- robot: the simulated Pepper receiving the say call.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from uservlm_ros.backends.audio import load_speech  # noqa: E402
from uservlm_ros.core.utterances import word_error_rate  # noqa: E402
from uservlm_ros.eval.speech import with_pause  # noqa: E402
from uservlm_ros.sim.audio_device import SPEECH_DIR  # noqa: E402

# The speech settings before the turn-taking work: a 300 ms hangover that ends every utterance
# (so pauses of 300 ms and more cut a question), Whisper's full 30 s window, no early end.
BEFORE = {
    "vad": {"hangover_ms": 300.0},
    "asr": {"early_start_ms": 128.0, "audio_context_s": 30.0},
    "turn": {"early_end": False},
}
# Today's defaults, and with the early end of a turn on a finished-looking sentence.
VARIANTS = {"before": BEFORE, "now": {}, "early_end": {"turn": {"early_end": True}}}
PAUSES_S = (0.3, 0.45, 0.6)
STAGES = (
    ("speech end -> question (VAD hangover + capture + queue + ASR)", "question"),
    ("  ASR compute", "asr"),
    ("  VAD hangover, capture buffering, queue", "wait"),
    ("question -> first sentence (responder)", "sentence"),
    ("first sentence -> speech started (bridge)", "bridge"),
    ("speech started -> say call (robot)", "robot"),
    ("speech end -> robot starts speaking", "total"),
)


def questions() -> list[tuple[str, str]]:
    rows = (SPEECH_DIR / "transcripts.tsv").read_text().splitlines()
    pairs = [tuple(r.split("\t")) for r in rows if r]
    return [(name, text) for name, text in pairs if name != "robot_voice.wav"]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class Observer:
    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from uservlm.msg import Response, SpeechEvent, Transcript

        from uservlm_ros.ros import topics
        from uservlm_ros.ros.qos import RELIABLE_QOS

        self.node = rclpy.create_node("bench_speech")
        self.lock = threading.Lock()
        self.transcripts: list = []
        self.first_response: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.finished: set[str] = set()
        self.node.create_subscription(Transcript, topics.TRANSCRIPT, self._transcript, RELIABLE_QOS)
        self.node.create_subscription(Response, topics.RESPONSE, self._response, RELIABLE_QOS)
        self.node.create_subscription(SpeechEvent, topics.SPEECH_EVENTS, self._event, RELIABLE_QOS)
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _transcript(self, msg) -> None:
        with self.lock:
            self.transcripts.append(msg)

    def _response(self, msg) -> None:
        with self.lock:
            self.first_response.setdefault(msg.request_id, time.time())

    def _event(self, msg) -> None:
        with self.lock:
            if msg.event == msg.STARTED:
                self.started.setdefault(msg.request_id, time.time())
            elif msg.event in (msg.FINISHED, msg.DROPPED) and msg.part in (msg.REST, msg.FULL):
                self.finished.add(msg.request_id)

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


def run_variant(name: str, speech: dict, clips, paused, rounds: int, threads: int) -> dict:
    """Every clip through a fresh graph with these speech_node parameters."""
    from uservlm_ros.bringup.graph import load_graph
    from uservlm_ros.bringup.runner import GraphRunner
    from uservlm_ros.ros.conversions import stamp_to_seconds
    from uservlm_ros.sim.pepper import SimulatedPepper

    pepper = SimulatedPepper(port=0, speech_s_per_word=0.15)
    pepper.start()
    work = Path(tempfile.mkdtemp(prefix=f"bench_speech_{name}_"))
    speech_params = {
        "source": "naoqi",
        "naoqi": {"reconnect_max_s": 1.0, "port": pepper.port},
        "model": {"threads": threads},
        **json.loads(json.dumps(speech)),
    }
    graph = {
        "speech_node": {"ros__parameters": speech_params},
        "vlm_responder_node": {"ros__parameters": {"responder": {"backend": "fallback"}}},
        "naoqi_bridge_node": {
            "ros__parameters": {"backend": "libqi", "robot": {"port": pepper.port}}
        },
    }
    params = work / "graph.yaml"
    params.write_text(yaml.safe_dump(graph))
    log = (work / "nodes.log").open("w")
    runner = GraphRunner(load_graph(params), out=log, colour=False)
    observer = None
    timed, cuts = [], []
    try:
        runner.start()
        observer = Observer()
        if not wait(lambda: "uservlm_speech" in pepper.services["ALAudioDevice"].subscribers, 120):
            raise SystemExit(f"speech_node did not subscribe; see {work / 'nodes.log'}")
        wait(lambda: bool(pepper.calls_to("ALMotion", "wakeUp")), 60)  # the bridge is connected
        time.sleep(2.0)
        plan = [(label, text, audio, True) for label, text, audio in clips] * rounds
        plan += [(label, text, audio, False) for label, text, audio in paused]
        for label, text, audio, timing in plan:
            says_before = len(pepper.calls_to("ALAnimatedSpeech", "say"))
            played = pepper.microphones.play(audio, label)
            played.done.wait(30)

            clip_end = played.start + len(audio) / 16000

            def heard(played=played, clip_end=clip_end):
                # Every utterance cut from the clip: a second part may be dropped (the robot was
                # already answering the first), it is a cut all the same.
                with observer.lock:
                    return [
                        t
                        for t in observer.transcripts
                        if stamp_to_seconds(t.audio_end) >= played.start
                        and stamp_to_seconds(t.audio_start) <= clip_end
                    ]

            wait(lambda: any(not t.dropped for t in heard()), 30)
            # A second part of a cut question ends with the hangover, or, heard together with
            # the robot's answer to the first part, when the robot stops talking.
            for _ in range(2):
                for part in heard():
                    if part.request_id:
                        wait(lambda rid=part.request_id: rid in observer.finished, 60)
                time.sleep(1.0)
            parts = heard()
            entry = {"clip": label, "reference": text, "parts": len(parts)}
            entry["text"] = " ".join(p.text for p in parts)
            if timing and parts and parts[0].request_id:
                first = parts[0]
                rid = first.request_id
                says = pepper.calls_to("ALAnimatedSpeech", "say")[says_before:]
                with observer.lock:
                    response_at = observer.first_response.get(rid)
                    started_at = observer.started.get(rid)
                question_at = stamp_to_seconds(first.header.stamp)
                end = played.speech_end
                entry.update(
                    question=(question_at - end) * 1e3,
                    asr=first.asr_ms,
                    wait=(question_at - end) * 1e3 - first.asr_ms,
                    sentence=(response_at - question_at) * 1e3 if response_at else None,
                    bridge=(started_at - response_at) * 1e3 if started_at and response_at else None,
                    robot=(says[0].time - started_at) * 1e3 if says and started_at else None,
                    total=(says[0].time - end) * 1e3 if says else None,
                )
                timed.append(entry)
            elif not timing:
                cuts.append(entry)
            print(f"{name} {label}: {len(parts)} part(s) {entry['text']!r}", flush=True)
            time.sleep(1.0)  # the robot's voice tail
    finally:
        runner.stop()
        log.close()
        if observer is not None:
            observer.close()
        pepper.stop()
    return {"timed": timed, "paused": cuts, "log": work / "nodes.log"}


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="times each question is timed")
    parser.add_argument("--threads", type=int, default=2, help="recogniser CPU threads")
    args = parser.parse_args()

    import qi
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from uservlm_ros.ros.node_main import use_uservlm_dds_profile

    qi.logging.setLevel(qi.logging.WARNING)
    use_uservlm_dds_profile()
    clips = [(name, text, load_speech(SPEECH_DIR / name)) for name, text in questions()]
    paused = [
        (f"{name}+{pause * 1e3:.0f}ms", text, with_pause(audio, pause))
        for pause in PAUSES_S
        for name, text, audio in clips
    ]
    # SIGTERM, like Ctrl-C, stops the graph and the simulated robot on the way out.
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, _interrupt)
    results = {}
    try:
        for name, speech in VARIANTS.items():
            results[name] = run_variant(name, speech, clips, paused, args.rounds, args.threads)
    finally:
        rclpy.try_shutdown()

    print(f"\n{args.rounds} round(s) of {len(clips)} questions per variant; ms, p50 / p95\n")
    names = list(VARIANTS)
    header = " | ".join(f"{n + ' p50':>15} | {n + ' p95':>15}" for n in names)
    ratios = " | ".join(f"{n + '/' + names[0]:>17}" for n in names[1:])
    print(f"| {'stage':<62} | {header} | {ratios} |")
    print(f"|{'-' * 64}|" + f"{'-' * 17}|" * (2 * len(names)) + f"{'-' * 19}|" * (len(names) - 1))
    for title, key in STAGES:
        cells, p50s = [], []
        for n in names:
            values = [e[key] for e in results[n]["timed"] if e.get(key) is not None]
            p50s.append(percentile(values, 50))
            cells.append(f"{p50s[-1]:15.0f} | {percentile(values, 95):15.0f}")
        ratio = " | ".join(f"{p / p50s[0]:16.2f}x" for p in p50s[1:])
        print(f"| {title:<62} | {' | '.join(cells)} | {ratio} |")
    print()
    for n in names:
        timed, cut_runs = results[n]["timed"], results[n]["paused"]
        wer = word_error_rate([e["reference"] for e in timed], [e["text"] for e in timed])
        wer_paused = word_error_rate(
            [e["reference"] for e in cut_runs], [e["text"] for e in cut_runs]
        )
        cut = sum(e["parts"] > 1 for e in cut_runs)
        missed = sum(e["parts"] == 0 for e in timed + cut_runs)
        print(
            f"{n}: WER {wer:.1%} on the shipped questions, {wer_paused:.1%} with pauses; "
            f"{cut}/{len(cut_runs)} questions with a pause cut in two; {missed} not heard; "
            f"nodes' output {results[n]['log']}"
        )
    print(
        "targets: speech end -> robot starts speaking p50 <= 600 ms, p95 <= 800 ms; WER not "
        "above the baseline's; no question with a 300-600 ms pause cut in two"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
