"""The operator console in a real browser (headless Chromium) against a running demo graph.

The demo deployment (simulated Pepper on loopback, camera over NAOqi, BlazeFace, the attribute
profiler, the labelled fallback responder, the speech bridge and console_node) runs as node
processes; the console is bound to 0.0.0.0, so it must insist on its token. The page must list
the two demo people with their person ids and profiles, stream the answer to a typed question,
turn an attribute to `disabled` with its privacy switch, and forget everyone. The screenshot in
the README comes from here.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "images" / "console.png"
CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by `make test`
# Chromium as root in a container: no sandbox, and nothing that phones home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUESTION = "Hello robot, what can you do for me?"
PERSON_ID = re.compile(r"^([a-z]{5}|anonymous_person_f\d+)$")  # known, or not (yet)


def _status(url: str, method: str = "GET", body: bytes | None = None) -> int:
    request = urllib.request.Request(url, method=method, data=body)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class _Idle:
    """The page's actions, for a console that only shows a state (the layout tests)."""

    def ask(self, question, track_id, person_id):
        raise AssertionError("the layout tests ask nothing")

    set_privacy = forget = ask


def _layout_state():
    """Two people, an answered question, the robot hearing itself, a noise drop."""
    from uservlm_ros.console.state import ConsoleState
    from uservlm_ros.core import labels
    from uservlm_ros.core.message_data import (
        AttributeData,
        ProfileData,
        ResponseData,
        TranscriptData,
    )

    state = ConsoleState()
    for track, person in ((3, "kqzxt"), (4, "abcde")):
        estimates = tuple(AttributeData(n, "30-39", True, "", 0.6) for n in labels.ATTRIBUTES)
        state.on_profile(
            ProfileData(
                track_id=track,
                person_id=person,
                visits=1,
                roi=(0.1,) * 4,
                engagement=0.8,
                engagement_state=3,
                engaged=track == 3,
                attributes=estimates,
                age_years=33.0,
                observations=12,
                seconds_since_first_seen=3.0,
                profile_text="A person.",
                model_id="attributes@1",
            )
        )
    state.asked("r1", QUESTION, 0, "console")
    state.on_response(
        ResponseData(
            request_id="r1",
            question=QUESTION,
            track_id=3,
            person_id="kqzxt",
            addressee="engaged",
            final=True,
            text="I can answer questions.",
            gesture="hey",
            mode="user_aware",
            responder="fallback-template",
        )
    )
    for second in range(3):
        state.on_transcript(TranscriptData((second, 0), dropped="robot_speaking"))
    state.on_transcript(TranscriptData((9, 0), "Thank you.", 0.3, dropped="noise"))
    return state


@pytest.fixture
def layout_page():
    """A function that opens the console page at a window width in headless Chromium."""
    from playwright.sync_api import sync_playwright

    from uservlm_ros.console.server import ConsoleServer

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: `make test` installs it (apt)"
    server = ConsoleServer(_layout_state(), _Idle(), port=0, log=lambda text: None)
    server.start()
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

    def open_at(width, height=900):
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(server.url)
        page.wait_for_selector("#people .person", state="attached")
        page.wait_for_selector("#conversation li", state="attached")
        return page

    try:
        yield open_at
    finally:
        browser.close()
        playwright.stop()
        server.stop()


# measured in the page: the placeholder's text width in the input's font, and the boxes
_MEASURE_ASK = """() => {
    const input = document.getElementById('question');
    const style = getComputedStyle(input);
    const context = document.createElement('canvas').getContext('2d');
    context.font = style.font;
    const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const box = (id) => document.getElementById(id).getBoundingClientRect().toJSON();
    return {placeholder: context.measureText(input.placeholder).width, room: room,
            input: box('question'), button: box('ask-button')};
}"""


@pytest.mark.parametrize("width", [1400, 1280])
def test_the_ask_box_fits_its_placeholder_and_button_on_a_wide_screen(layout_page, width):
    page = layout_page(width)
    ask = page.evaluate(_MEASURE_ASK)
    assert ask["placeholder"] <= ask["room"], ask  # the whole placeholder is visible
    button, box = ask["button"], ask["input"]
    assert abs(button["top"] - box["top"]) < 4, ask  # the button on the input's line
    assert button["left"] >= box["right"], ask


def test_on_a_tablet_people_and_conversation_come_before_health(layout_page):
    page = layout_page(800, 1200)
    top = {
        name: page.locator(f"#{name}-panel").bounding_box()["y"]
        for name in ("camera", "people", "conversation", "privacy", "health")
    }
    assert top["people"] < top["health"] and top["conversation"] < top["health"], top
    assert top["camera"] < top["people"] < top["conversation"], top
    ask = page.evaluate(_MEASURE_ASK)
    assert ask["placeholder"] <= ask["room"], ask


def test_the_robot_hearing_itself_is_one_line_with_its_reason(layout_page):
    page = layout_page(1400)
    entries = page.locator("#conversation li")
    assert entries.count() == 2  # the question and the noise; the robot's own voice is not
    noise = page.locator('#conversation li[data-status="not_asked"]')
    assert "not asked: noise" in noise.inner_text()
    assert noise.locator(".answer").count() == 0  # no empty answer bar
    counter = page.locator("#not-asked")
    assert "3 while the robot spoke" in counter.inner_text()


@pytest.mark.graph
def test_console_in_a_browser_on_the_demo_graph(ros, processes, tmp_path):
    from harness import wait_until
    from playwright.sync_api import expect, sync_playwright

    from uservlm_ros.demo.pictures import save_small_png
    from uservlm_ros.demo.scene import make_scene
    from uservlm_ros.ros import topics
    from uservlm_ros.sim.pepper import SimulatedPepper

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: `make test` installs it (apt)"
    token = "console-test-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    scene = make_scene(45)
    pepper = SimulatedPepper(port=0, frames=[f.rgb for f in scene] + [f.rgb for f in scene[::-1]])
    pepper.start()
    try:
        graph = processes.start_python(
            "uservlm_run",
            "-m",
            "uservlm_ros.cli",
            "run",
            "--config",
            "demo",
            f"--set=camera_node.naoqi.port={pepper.port}",
            f"--set=naoqi_bridge_node.robot.port={pepper.port}",
            f"--set=speech_node.naoqi.port={pepper.port}",
            # slower streaming, so the page shows the answer growing
            "--set=vlm_responder_node.responder.fallback_word_delay_s=0.15",
            "--set=console_node.host=0.0.0.0",
            "--set=console_node.port=0",
            f"--set=console_node.token_file={tmp_path / 'token'}",
        )
        graph.wait_for_output("console at http://", timeout=90)
        # the address without the token: a token never reaches a log (the file's owner has it)
        base = re.search(r"console at (http://[^?\s]+)", graph.output()).group(1).rstrip("/")
        assert token not in graph.output()
        url = f"{base}/?token={token}"

        # Bound to 0.0.0.0: nothing without the token, not even the page or its script.
        assert _status(base + "/") == 401
        assert _status(base + "/static/app.js") == 401
        assert _status(base + "/ws") == 401
        assert _status(base + "/api/ask", "POST", b'{"question": "Hi"}') == 401
        assert _status(f"{base}/api/state?token={token}") == 200

        def console_takes_camera() -> bool:
            subscribed = ros.node.get_subscriber_names_and_types_by_node("console_node", "/")
            return any(name == topics.absolute(topics.IMAGE) for name, _ in subscribed)

        wait_until(lambda: "console_node" in ros.node.get_node_names(), 60, "console_node")
        assert not console_takes_camera()  # no page, no camera frames to carry

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),  # a fresh profile
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 800},  # Pepper's tablet
            )
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(url)
                assert page.url == base + "/"  # the token moved into a cookie
                expect(page.locator("#link")).to_have_text("live")

                # The two demo people, each with a profile and every attribute.
                people = page.locator("#people .person")
                expect(people.filter(has=page.locator(".profile-text"))).to_have_count(
                    2, timeout=90_000
                )
                for index in range(2):
                    rows = people.nth(index).locator("tr[data-attribute]")
                    expect(rows).to_have_count(4)
                    # a card is a person: its id (anonymous until recognised), with a Forget
                    card = people.nth(index)
                    expect(card).to_have_attribute("data-person", PERSON_ID)
                    expect(card.locator(".person-id")).to_have_text(PERSON_ID)
                    expect(card.locator("button.forget")).to_have_count(1)
                expect(page.locator('#people tr[data-reason="not_supported"]')).to_have_count(2)
                expect(page.locator("#camera-note")).to_contain_text("fps to this page")
                # Seen in this process's graph once discovery carries it (late under load).
                wait_until(console_takes_camera, 15, "the console's camera subscription")
                expect(page.locator("#robot")).to_have_text("robot: connected", timeout=30_000)

                # A typed question: record every text the answer shows while it streams.
                page.evaluate(
                    """() => {
                        window.streamed = [];
                        new MutationObserver(() => {
                            document.querySelectorAll('li[data-status="streaming"] .answer')
                                .forEach((a) => window.streamed.push(a.textContent));
                        }).observe(document.getElementById('conversation'),
                                   {childList: true, subtree: true});
                    }"""
                )
                page.fill("#question", QUESTION)
                page.click("#ask-button")
                asked = page.locator("#conversation li", has_text=QUESTION)
                expect(asked).to_have_attribute("data-status", "answered", timeout=60_000)
                final = asked.locator(".answer").inner_text()
                streamed = [t for t in dict.fromkeys(page.evaluate("window.streamed")) if t]
                assert len(streamed) >= 2, f"no streaming seen: {streamed}"
                assert all(final.startswith(t.strip()) for t in streamed), (streamed, final)
                expect(asked.locator(".details")).to_contain_text("responder fallback-template")
                expect(asked.locator(".who")).to_contain_text("console")
                expect(page.locator("#question")).to_have_value("")

                # The privacy switch: gender is no longer estimated, for everybody in view.
                switch = page.locator("#enable-gender")
                expect(switch).to_be_enabled(timeout=30_000)
                switch.click()
                expect(page.locator("#privacy-error")).to_have_text("")
                gender = page.locator('#people tr[data-attribute="gender"]')
                expect(gender.first).to_have_attribute("data-reason", "disabled", timeout=30_000)
                expect(gender.last).to_have_attribute("data-reason", "disabled", timeout=30_000)
                expect(switch).not_to_be_checked()

                # every node of the demo in the picture (speech_node loads its models first)
                expect(page.locator('#health tr[data-node="/speech_node"]')).to_have_count(
                    1, timeout=30_000
                )
                page.wait_for_timeout(500)  # the next camera frame, for the picture
                shot = tmp_path / "console.png"
                shot.write_bytes(page.screenshot(full_page=True))
                assert shot.stat().st_size > 10_000  # a page, not a blank
                if os.environ.get("USERVLM_UPDATE_DOCS_IMAGES"):  # the docs' screenshot
                    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                    save_small_png(shot, SCREENSHOT)

                # "Forget everyone" (confirmed) reaches the profiler; the people come back as
                # they are seen again.
                page.once("dialog", lambda dialog: dialog.accept())
                page.click("#forget-everyone")
                expect(page.locator("#forget-result")).to_contain_text(
                    re.compile(r"^everyone: forgot \d+ person"), timeout=15_000
                )
                expect(people.filter(has=page.locator(".profile-text"))).to_have_count(
                    2, timeout=60_000
                )
                assert not errors, errors
            finally:
                browser.close()
        # the last page gone, the camera and the faces are dropped again
        wait_until(lambda: not console_takes_camera(), 15, "the camera subscription to go")
    finally:
        pepper.stop()
