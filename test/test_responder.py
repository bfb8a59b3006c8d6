"""The responder without ROS: backends by name (RESPONDERS), the camera clock, and Responder
(addressee, the asker's image, validation, replies) over the fallback and a recording backend."""

from __future__ import annotations

import numpy as np
import pytest

from uservlm_ros.backends.fallback_responder import RESPONDER_ID, FallbackOptions
from uservlm_ros.backends.openai_responder import OpenAIResponder, ServerOptions
from uservlm_ros.backends.responder import Asker, Reply, Responder, ResponderConfig
from uservlm_ros.backends.responder_pipeline import PipelineSettings, ResponderPipeline
from uservlm_ros.backends.vlm import (
    BASE_ADAPTER,
    GenerationRequest,
    GenerationResult,
    VlmOptions,
)
from uservlm_ros.backends.vlm_registry import RESPONDERS, choose_backend, start_backend
from uservlm_ros.core import addressee as addressing
from uservlm_ros.core.camera_clock import RESTART_S, CameraClock
from uservlm_ros.core.errors import ConfigError, ImageConversionError
from uservlm_ros.core.parameters import config_of, params_of

FRAME = np.random.default_rng(5).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def defaults(**changed) -> dict:
    params = [*params_of(ResponderConfig, ""), *params_of(PipelineSettings, "")]
    values = {p.name: p.default for p in [*params, *RESPONDERS.params()]}
    values["responder.backend"] = "paligemma"
    return {**values, **changed}


# -- backends by name


def test_the_registry_makes_every_backend_parameter_once_with_todays_names():
    names = [p.name for p in RESPONDERS.params()]
    assert len(names) == len(set(names))
    assert {"model.path", "model.adapters", "server.url", "server.fallback"} <= set(names)
    assert "responder.fallback_word_delay_s" in names  # fallback and openai share it
    choice = RESPONDERS.choice_param("responder.backend", "paligemma", "Who")
    assert choice.choices == ("paligemma", "fallback", "openai")
    with pytest.raises(ConfigError, match="unknown responder backend 'llava'; known: paligemma"):
        RESPONDERS.create("llava", defaults())


def test_options_come_from_parameter_values_or_code():
    values = defaults(**{"model.adapters": ["dpo=/m/dpo"], "model.default_adapter": "dpo"})
    options = RESPONDERS.options("paligemma", values)
    assert options.adapters == {"dpo": "/m/dpo"} and options.default_adapter == "dpo"
    assert VlmOptions(adapters={"dpo": "/m/dpo"}) == VlmOptions(adapters=["dpo=/m/dpo"])
    with pytest.raises(ConfigError, match=r"model\.default_adapter 'sft' is not loaded"):
        VlmOptions(default_adapter="sft")
    with pytest.raises(ConfigError, match="expected NAME=PATH"):
        VlmOptions(adapters=["dpo"])
    assert ServerOptions(adapters=["dpo", "sft=served-sft"]).adapters == {
        "dpo": "dpo",
        "sft": "served-sft",
    }
    with pytest.raises(ConfigError, match=r"connect_timeout_s' must be >= 0\.1"):
        ServerOptions(connect_timeout_s=0.0)


def test_openai_gets_its_server_options_and_templates_when_asked():
    values = defaults(**{"server.model": "user-vlm", "server.fallback": True})
    backend = RESPONDERS.create("openai", values, print, print)
    assert isinstance(backend, OpenAIResponder)
    assert backend.responder_id() == "openai:user-vlm@base"
    assert backend._fallback is not None
    with pytest.raises(ConfigError, match=r"server\.model is empty"):
        RESPONDERS.create("openai", defaults(), print, print)


def test_paligemma_without_weights_becomes_the_labelled_fallback_if_allowed():
    name, warning = choose_backend(defaults())
    assert name == "fallback" and "no VLM weights (model.path is empty)" in warning
    refused = defaults(**{"responder.fallback_without_model": False})
    assert choose_backend(refused) == ("paligemma", "")
    assert choose_backend(defaults(**{"model.path": "/m"})) == ("paligemma", "")
    name, warning = choose_backend(defaults(**{"responder.backend": "fallback"}))
    assert name == "fallback" and "TEMPLATES" in warning


def test_start_backend_loads_and_warms_up():
    lines: list[str] = []
    backend = start_backend("fallback", defaults(), lines.append, lines.append)
    assert backend.responder_id() == RESPONDER_ID
    assert any(line.startswith("warm-up done") for line in lines)


# -- the camera clock


def test_a_camera_clock_of_frames_follows_a_bag_that_starts_again():
    wall = [1000.0]
    clock = CameraClock(lambda: wall[0], restart_s=RESTART_S)
    clock.seen(50.0, arrival=1000.0)
    clock.seen(49.5)  # a frame out of order: ignored
    assert clock.now() == pytest.approx(50.0)
    clock.seen(10.0)  # much older: the bag started again
    assert clock.now() == pytest.approx(10.0)


def test_the_camera_clock_runs_on_from_the_newest_stamp():
    wall = [1000.0]
    clock = CameraClock(lambda: wall[0])
    assert clock.now() == 1000.0  # no stamp yet: wall time
    assert clock.seen(50.0, arrival=1000.0) == 50.0  # a replayed bag: old stamps
    wall[0] = 1002.5
    assert clock.now() == pytest.approx(52.5)
    clock.seen(40.0)  # older (out of order, or an old profile): ignored
    assert clock.now() == pytest.approx(52.5)
    assert clock.seen(0.0) == 1002.5  # unstamped: seen on arrival
    assert clock.now() == pytest.approx(1002.5)


# -- Responder


class Recording:
    """A VLM-like backend that records what it was shown and answers in two sentences."""

    adapters = (BASE_ADAPTER, "dpo")

    def __init__(self) -> None:
        self.shown: list = []

    def responder_id(self, adapter: str = "") -> str:
        return f"recording@{adapter or BASE_ADAPTER}"

    def generate(self, request: GenerationRequest) -> GenerationResult:
        self.shown.append((request.image, request.prompt, request.user))
        text = "You look great today. Have a nice walk."
        for count, end in enumerate((21, len(text)), 1):
            request.on_token(text[:end], count)
        return GenerationResult(text, self.responder_id(request.adapter), new_tokens=2)


def responder(backend, name: str = "paligemma", decode=lambda image: image, **config):
    counts: list[str] = []
    made = Responder(
        lambda: ResponderConfig(**config),
        decode,
        "/camera/image_raw",
        counts.append,
        lambda _: None,
        lambda _: None,
    )
    made.pipeline = ResponderPipeline(backend, PipelineSettings, lambda *_: None)
    made.backend_name = name
    return made, counts


def person(track: int, x: float, engaged: bool = False, stamp: float = 0.0, **kw) -> Asker:
    seen = addressing.Seen(track, (x, 0.2, x + 0.1, 0.4), engaged, stamp, person_id=f"p{track}")
    return Asker(seen, f"profile of {track}", kw)


def ask(made: Responder, text: str = "What do you see?", cancelled=lambda: False, **asked):
    early: list[Reply] = []
    question = made.question(text, **asked)
    reply = made.answer(question, cancelled, lambda: False, lambda *_: None, early.append)
    return reply, early


def test_questions_get_the_defaults_and_bad_ones_a_reason():
    made, _ = responder(Recording(), max_question_chars=20, max_new_tokens=7)
    question = made.question("Hi?", person_id="p1")
    assert (question.mode, question.max_new_tokens, question.person_id) == ("user_aware", 7, "p1")
    assert len(question.request_id) == 12
    assert made.problem(question) is None
    assert made.problem(made.question("  ")) == "empty question"
    assert "too long (21 characters" in made.problem(made.question("x" * 21))
    assert "unknown mode 'chat'" in made.problem(made.question("Hi?", mode="chat"))
    assert made.problem(made.question("Hi?", adapter="sft")) == (
        "unknown adapter 'sft'; loaded: base, dpo"
    )


def test_the_engaged_asker_is_answered_from_their_crop_with_an_early_sentence():
    backend = Recording()
    made, counts = responder(backend)
    made.see_image(FRAME, "stamp-1", 0.0)
    made.see_profile(person(3, 0.1))
    made.see_profile(person(8, 0.6, engaged=True, age_group="20-29"))
    reply, early = ask(made)
    assert reply.final and reply.error == "" and reply.utterance.text.startswith("You look")
    assert (reply.track_id, reply.person_id, reply.addressee) == (8, "p8", addressing.ENGAGED)
    assert reply.camera_stamp == "stamp-1" and reply.image_roi != addressing.WHOLE_FRAME
    image, _prompt, user = backend.shown[0]
    assert image.shape[1] < FRAME.shape[1]  # the asker's head and shoulders, not the frame
    assert user.labels == {"age_group": "20-29"}
    assert [r.utterance.text for r in early] == ["You look great today."]
    assert not early[0].final and early[0].track_id == 8 and counts.count("early_sentences") == 1
    assert {"queue", "question_to_first_sentence", "guard", "total"} <= set(reply.timings_ms)


def test_the_whole_frame_and_nobody_when_nobody_is_in_view():
    backend = Recording()
    made, _ = responder(backend)
    made.see_image(FRAME, None, 0.0)
    reply, _ = ask(made)
    assert (reply.track_id, reply.addressee) == (0, addressing.NONE)
    assert reply.image_roi == addressing.WHOLE_FRAME and backend.shown[0][0] is FRAME


def test_unanswerable_questions_get_one_error_reply():
    made, counts = responder(Recording())
    reply, _ = ask(made)
    assert reply.error == "no camera image received yet on /camera/image_raw"
    assert reply.final and reply.responder == "recording@base" and "queue" in reply.timings_ms
    made.see_image(FRAME, None, 0.0)
    made.see_profile(person(3, 0.1))
    reply, _ = ask(made, track_id=5)
    assert reply.error == "unknown track 5: tracked are 3" and reply.track_id == 5
    assert reply.addressee == addressing.NONE
    reply, _ = ask(made, cancelled=lambda: True)
    assert reply.error == "cancelled before generation started"

    def broken(_image):
        raise ImageConversionError("unsupported encoding 'bayer'")

    made, counts = responder(Recording(), decode=broken)
    made.see_image(object(), None, 0.0)
    reply, _ = ask(made)
    assert reply.error.startswith("the camera image is unusable: unsupported encoding")
    assert counts == ["images_rejected", "errors"]


def test_the_fallback_needs_no_image_and_an_old_profile_is_out_of_view():
    made, _ = responder(start_backend("fallback", defaults(), print, print), name="fallback")
    now = made.clock.seen(1000.0)  # the camera's clock, as a frame's stamp set it
    made.see_profile(person(4, 0.1, stamp=now - 60.0))  # a minute old: not in view
    reply, _ = ask(made, "Hello!")
    assert reply.responder == RESPONDER_ID and reply.utterance is not None
    assert reply.addressee == addressing.NONE and reply.image_roi == addressing.NO_IMAGE
    made.see_profile(person(4, 0.1))  # unstamped: seen now
    reply, _ = ask(made, "Hello!")
    assert (reply.track_id, reply.addressee) == (4, addressing.ONLY_PERSON)


def test_a_stopped_answer_is_an_error_counted_as_cancelled():
    fallback = RESPONDERS.create("fallback", FallbackOptions(), print, print)
    made, counts = responder(fallback, name="fallback")
    cancelled = iter([False, True, True, True, True])
    reply, _ = ask(made, "Hello!", cancelled=lambda: next(cancelled))
    assert reply.error.startswith("cancelled after") and reply.utterance is None
    assert "cancelled" in counts


def test_config_of_the_node_values_is_the_default_config():
    assert config_of(ResponderConfig, "", defaults()) == ResponderConfig()
    assert config_of(PipelineSettings, "", defaults()) == PipelineSettings()


@pytest.fixture
def models_server():
    """A local HTTP server whose /v1/models answers with `body` (and `status`): odd replies a
    misconfigured or non-OpenAI server may give."""
    import http.server
    import threading

    reply = {"status": 200, "body": b"{}"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(reply["status"])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply["body"])

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield reply, f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"data": 5}', "not an OpenAI-compatible model list"),
        (b'{"data": null}', "not an OpenAI-compatible model list"),
        (b"[1, 2]", "server http://127.0.0.1"),
        (b"not json", "server http://127.0.0.1"),
        (b'{"data": [{"object": "model"}]}', "not an OpenAI-compatible model list"),
        (b'{"data": [{"id": null}]}', "not an OpenAI-compatible model list"),
        (b'{"data": [{"id": 5}]}', "not an OpenAI-compatible model list"),
        (b'{"data": [{"id": "m\\u202eevil"}]}', "not an OpenAI-compatible model list"),
        (b'{"data": [{"id": "two\\nlines"}]}', "not an OpenAI-compatible model list"),
        (b'{"data": []}', "serves no model"),
        (b'{"data": [{"id": "a"}, {"id": "b"}]}', "serves a, b; name the one"),
    ],
)
def test_the_demo_server_check_refuses_odd_model_lists_in_one_line(models_server, body, error):
    from uservlm_ros.bringup.preflight import check_server
    from uservlm_ros.core.errors import UservlmError

    reply, url = models_server
    reply["body"] = body
    with pytest.raises(UservlmError) as raised:
        check_server(url)
    assert error in str(raised.value) and "\n" not in str(raised.value)


def test_the_demo_server_check_takes_the_only_base_model(models_server):
    from uservlm_ros.bringup.preflight import check_server
    from uservlm_ros.core.errors import ConfigError, ModelLoadError

    reply, url = models_server
    reply["body"] = b'{"data": [{"id": "vlm"}, {"id": "dpo", "parent": "vlm"}]}'
    assert check_server(url) == "vlm"
    assert check_server(url, "dpo") == "dpo"
    with pytest.raises(ModelLoadError, match=r"does not serve other \(it serves: vlm, dpo\)"):
        check_server(url, "other")
    with pytest.raises(ConfigError, match=r"server.model 'a\\nb' has characters"):
        check_server(url, "a\nb")
    reply["status"], reply["body"] = 401, b'{"error": "bad key"}'
    with pytest.raises(ModelLoadError, match="HTTP 401"):
        check_server(url, "vlm")
