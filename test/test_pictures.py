"""Pictures people can read: the people overlay (debug image, demo frame), the latency chart and
the confusion matrices are regenerated here and checked for legibility by measurement.

Set USERVLM_PICTURES=<folder> to keep the regenerated pictures for a look.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from std_msgs.msg import Header
from uservlm.msg import AttributeEstimate, Face, FaceArray, UserProfile

from uservlm_ros.core import overlay
from uservlm_ros.core.overlay import (
    ENGAGED_COLOUR,
    ENGAGED_MARK,
    TRACK_COLOURS,
    Person,
    Style,
    contrast_ratio,
    draw_people,
    layout,
    profile_lines,
    text_colour_on,
)
from uservlm_ros.demo.scene import make_scene
from uservlm_ros.eval import report

WCAG_TEXT = 4.5
LABELS = ["Female, age 30-39", "ethnicity: ?, happy"]


@pytest.fixture
def pictures(tmp_path) -> Path:
    folder = Path(os.environ.get("USERVLM_PICTURES", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_rgb(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def scene_people(frame, engaged_track: int | None = 1) -> list[Person]:
    return [
        Person(face.box, index + 1, LABELS, engaged=index + 1 == engaged_track)
        for index, face in enumerate(frame.faces)
    ]


def inside(rect, shape) -> bool:
    x0, y0, x1, y1 = rect
    return 0 <= x0 < x1 <= shape[1] and 0 <= y0 < y1 <= shape[0]


def overlap(a, b) -> int:
    return max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)


def backgrounds(height: int = 480, width: int = 640) -> dict[str, np.ndarray]:
    """Light, dark, half-and-half and a busy photo: labels must read on each."""
    half = np.full((height, width, 3), 245, np.uint8)
    half[:, width // 2 :] = 15
    noise = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return {
        "light": np.full((height, width, 3), 250, np.uint8),
        "dark": np.full((height, width, 3), 8, np.uint8),
        "half": half,
        "noise": noise,
        "scene": make_scene(45)[30].rgb,
    }


# --- the overlay -------------------------------------------------------------------------------


def test_every_plate_colour_has_text_of_wcag_contrast():
    for colour in (*TRACK_COLOURS, ENGAGED_COLOUR):
        assert contrast_ratio(colour, text_colour_on(colour)) >= 7.0, colour  # WCAG AAA
    # Black/white choice holds for any plate colour at all (the worst case is ~4.58:1).
    for colour in itertools.product(range(0, 256, 17), repeat=3):
        assert contrast_ratio(colour, text_colour_on(colour)) >= 4.58


def test_contrast_ratio_matches_the_wcag_reference_values():
    assert contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast_ratio((118, 118, 118), (255, 255, 255)) == pytest.approx(4.54, abs=0.01)
    assert contrast_ratio((10, 20, 30), (10, 20, 30)) == pytest.approx(1.0)


@pytest.mark.parametrize("name", list(backgrounds()))
def test_drawn_labels_read_on_light_and_dark_backgrounds(name, pictures):
    """Measured on the pixels: each plate is filled with its colour, its text is drawn in the
    chosen colour, and the two contrast >= 4.5:1 whatever lies under the plate."""
    image = backgrounds()[name]
    people = scene_people(make_scene(45)[30])
    people.append(Person((300, 300, 380, 390), 3, ["Male, age: ?", "White, neutral"]))
    drawn = draw_people(image, people)
    save_rgb(pictures / f"overlay_{name}.png", drawn)
    plates = layout(image.shape, people)
    assert len(plates) == len(people)
    for plate in plates:
        x0, y0, x1, y1 = plate.rect
        region = drawn[y0:y1, x0:x1].reshape(-1, 3)
        fill = (region == plate.colour).all(axis=1).mean()
        assert fill > 0.5, f"plate #{plate.track_id} is not filled with its colour"
        # The strokes as rendered (anti-aliased): the darker third of the text pixels.
        distance = np.abs(region.astype(int) - plate.colour).sum(axis=1)
        strokes = region[distance > 0]
        assert len(strokes) > 200, f"no text on plate #{plate.track_id}"
        core = strokes[np.argsort(distance[distance > 0])[-len(strokes) // 3 :]]
        assert contrast_ratio(plate.colour, core.mean(axis=0)) >= WCAG_TEXT
        assert contrast_ratio(plate.colour, plate.text_colour) >= 7.0
    # The drawing is a new image.
    assert not np.shares_memory(drawn, image) and (drawn != image).any()


SIZES = [(480, 640), (240, 320), (1080, 1920), (96, 128), (512, 512)]


@pytest.mark.parametrize("height, width", SIZES)
def test_plates_stay_inside_the_image_for_boxes_at_every_edge(height, width):
    w, h = width / 6, height / 5
    boxes = [
        (0, 0, w, h),  # top left corner: no room above
        (width - w, 0, width, h),  # top right
        (0, height - h, w, height),  # bottom left: no room below either side of the box
        (width - w, height - h, width + 50, height + 50),  # partly outside the image
        (width / 2 - w / 2, height / 2 - h / 2, width / 2 + w / 2, height / 2 + h / 2),
        (-20, -20, width + 20, height + 20),  # the whole image
    ]
    people = [
        Person(box, index + 1, ["Latino/Hispanic, age 70+", "ethnicity: ?, surprise"])
        for index, box in enumerate(boxes)
    ]
    plates = layout((height, width, 3), people)
    assert len(plates) == len(people)
    for plate in plates:
        assert inside(plate.rect, (height, width)), plate
    draw_people(np.zeros((height, width, 3), np.uint8), people)  # and draws without error


def test_a_plate_goes_above_its_box_when_there_is_room_else_below():
    image_shape = (480, 640, 3)
    middle, top = (280, 200, 360, 290), (280, 2, 360, 90)
    (above,) = layout(image_shape, [Person(middle, 1, LABELS)])
    assert above.rect[3] <= middle[1]
    (below,) = layout(image_shape, [Person(top, 1, LABELS)])
    assert below.rect[1] >= top[3]


def test_labels_of_neighbouring_faces_do_not_overlap():
    # The demo scene, frame by frame: two people, plates apart and off every face.
    for frame in make_scene(45):
        people = scene_people(frame)
        plates = layout(frame.rgb.shape, people)
        for a, b in itertools.combinations(plates, 2):
            assert overlap(a.rect, b.rect) == 0, (frame.index, a, b)
        for plate in plates:
            for person in people:
                assert overlap(plate.rect, [round(v) for v in person.box]) == 0
    # Five faces side by side, boxes nearly touching: the labels still find free places.
    row = [Person((20 + 122 * i, 220, 130 + 122 * i, 330), i + 1, LABELS) for i in range(5)]
    plates = layout((480, 640, 3), row)
    for a, b in itertools.combinations(plates, 2):
        assert overlap(a.rect, b.rect) == 0, (a, b)


def test_the_engaged_person_is_drawn_distinctly(pictures):
    frame = make_scene(45)[30]
    drawn = draw_people(frame.rgb, scene_people(frame, engaged_track=2))
    save_rgb(pictures / "overlay_engaged.png", drawn)
    plates = {p.track_id: p for p in layout(frame.rgb.shape, scene_people(frame, 2))}
    assert ENGAGED_MARK in plates[2].lines[0] and ENGAGED_MARK not in plates[1].lines[0]
    assert plates[2].colour == ENGAGED_COLOUR and plates[1].colour != ENGAGED_COLOUR
    # Thicker box: count its colour on the left edge of the box, outside the plate.
    x0, y0, _, y1 = (round(v) for v in frame.faces[1].box)
    style = Style.for_image(*frame.rgb.shape[:2])
    band = drawn[y0 + 5 : y1 - 5, x0 - 10 : x0 + 20]
    thickness = (band == ENGAGED_COLOUR).all(axis=2).sum(axis=1).max()
    assert thickness >= 2 * style.box_thickness - 1


def test_the_font_scales_with_the_image():
    small, vga, full_hd = (Style.for_image(*s) for s in ((240, 320), (480, 640), (1080, 1920)))
    assert small.ascent < vga.ascent < full_hd.ascent
    assert vga.ascent >= 10  # cap height of about 11 px at 640x480
    assert small.ascent >= 8  # the legibility floor


def test_labels_too_long_for_the_image_are_shortened_not_cut_off():
    person = Person((10, 40, 60, 90), 7, ["a very long label " * 8])
    (plate,) = layout((120, 160, 3), [person])
    assert inside(plate.rect, (120, 160)) and plate.lines[1].endswith("..")


def test_profile_lines_show_abstentions_as_such():
    assert profile_lines(
        {"age_group": "30-39", "gender": "Female", "ethnicity": None, "emotion": "happy"}
    ) == ["Female, age 30-39", "ethnicity: ?, happy"]
    assert profile_lines({"age_group": None, "gender": None}) == ["gender: ?, age: ?"]
    assert profile_lines({"ethnicity": "Latino_Hispanic"}) == ["Latino/Hispanic"]
    assert profile_lines({}) == []


def test_bad_frames_are_refused_in_one_line_and_bad_boxes_left_out():
    with pytest.raises(ValueError, match=r"\(h, w, 3\)"):
        draw_people(np.zeros((10, 10), np.uint8), [])
    with pytest.raises(ValueError, match="uint8"):
        draw_people(np.zeros((10, 10, 3), np.float32), [])
    image = np.full((120, 160, 3), 128, np.uint8)
    people = [Person((np.nan, 0, 10, 10), 1, ["x"]), Person((20, 40, 60, 90), 2, ["y"])]
    drawn = draw_people(image, people)
    assert [p.track_id for p in layout(image.shape, people)] == [2]
    assert (image == 128).all() and (drawn != 128).any()
    assert overlay.layout((4, 4, 3), [Person((0, 0, 4, 4), 1, ["z"])]) == []  # too small


# --- the ROS side: UserProfile -> label lines, FaceArray -> people ------------------------------


def estimate(name: str, label: str, known: bool = True) -> AttributeEstimate:
    return AttributeEstimate(
        name=name,
        label=label if known else "unknown",
        known=known,
        abstain_reason="" if known else "not_supported",
        confidence=0.9 if known else 0.0,
    )


def profile_msg(track_id: int, engaged: bool = False) -> UserProfile:
    return UserProfile(
        track_id=track_id,
        engaged=engaged,
        age_group=estimate("age_group", "70+"),
        gender=estimate("gender", "Female"),
        ethnicity=estimate("ethnicity", "", known=False),
        emotion=estimate("emotion", "neutral"),
    )


def test_profile_messages_become_label_lines_and_faces_become_people():
    from uservlm_ros.ros.conversions import faces_to_people, profile_label_lines

    assert profile_label_lines(profile_msg(2)) == ["Female, age 70+", "ethnicity: ?, neutral"]
    faces = FaceArray(
        header=Header(stamp=Time(sec=1), frame_id="camera"),
        image_width=640,
        image_height=480,
        faces=[
            Face(track_id=2, xmin=0.5, ymin=0.25, xmax=0.75, ymax=0.5, landmarks=[Point(x=1.0)]),
            Face(track_id=5, xmin=0.0, ymin=0.0, xmax=0.1, ymax=0.1),
        ],
    )
    two, five = faces_to_people(faces, {2: profile_msg(2, engaged=True)})
    assert two.box == pytest.approx((320, 120, 480, 240)) and two.engaged
    assert two.lines == ["Female, age 70+", "ethnicity: ?, neutral"]
    assert list(two.landmarks) == [(1.0, 0.0)]
    assert five.track_id == 5 and not five.lines and not five.engaged  # no profile yet


def test_the_demo_report_draws_its_frames_and_chart(tmp_path, pictures):
    """write_demo_report on recorded-like messages: the frame it writes is the overlay drawing
    with the final profiles; the latency chart is written beside it."""
    from uservlm_ros.demo.run import write_demo_report
    from uservlm_ros.ros.conversions import rgb_to_image

    frame = make_scene(45)[30]
    header = Header(stamp=Time(sec=5), frame_id="camera")
    faces = FaceArray(header=header, image_width=640, image_height=480)
    for index, face in enumerate(frame.faces):
        x0, y0, x1, y1 = face.box
        faces.faces.append(
            Face(track_id=index + 1, xmin=x0 / 640, ymin=y0 / 480, xmax=x1 / 640, ymax=y1 / 480)
        )
    rng = np.random.default_rng(1)
    observer = SimpleNamespace(
        profiles={1: profile_msg(1, engaged=True), 2: profile_msg(2)},
        frames_with={2: (rgb_to_image(frame.rgb, header), faces)},
        stage_ms={
            "faces/detect": list(rng.uniform(6, 12, 40)),
            "profile/profile": list(rng.uniform(8, 15, 40)),
            "response/generate": list(rng.uniform(300, 650, 4)),
        },
        profile_latency_ms=list(rng.uniform(30, 70, 40)),
    )
    path = write_demo_report(tmp_path, observer, [], SimpleNamespace(calls=[]))
    assert "![frame with 2 face(s)](frame_2_faces.png)" in path.read_text()
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "frame_2_faces.png")), cv2.COLOR_BGR2RGB)
    people = [
        Person(
            (f.xmin * 640, f.ymin * 480, f.xmax * 640, f.ymax * 480),
            f.track_id,
            ["Female, age 70+", "ethnicity: ?, neutral"],
            f.track_id == 1,
            [],
        )
        for f in faces.faces
    ]
    assert np.array_equal(written, draw_people(frame.rgb, people))
    assert (tmp_path / "latency.png").stat().st_size > 1000
    save_rgb(pictures / "demo_frame.png", written)


# --- charts ------------------------------------------------------------------------------------


def stats(p50: float, p95: float, n: int = 30) -> dict:
    return {"p50": p50, "p95": p95, "p99": p95, "mean": p50, "n": n}


DEMO_STAGES = {
    "faces/camera_transport": stats(2.1, 4.0),
    "faces/queue": stats(0.1, 0.3),
    "faces/detect": stats(7.9, 11.2),
    "faces/track": stats(0.2, 0.4),
    "faces/crop": stats(1.1, 1.9),
    "profile/profile": stats(9.5, 14.0),
    "response/prompt": stats(0.3, 0.5, 4),
    "response/generate": stats(420.0, 650.0, 4),
    "camera -> profile (end to end)": stats(38.0, 61.0),
    "question -> first sentence": stats(210.0, 330.0, 4),
    "question -> speech start": stats(260.0, 410.0, 4),
    "never timed": {"p50": float("nan"), "p95": float("nan"), "mean": float("nan"), "n": 0},
}


def test_latency_panels_split_perception_dialogue_and_end_to_end():
    assert report.latency_panel("faces/detect") == report.PANELS[0]
    assert report.latency_panel("profile/profile") == report.PANELS[0]
    assert report.latency_panel("detect") == report.PANELS[0]
    assert report.latency_panel("response/generate") == report.PANELS[1]
    assert report.latency_panel("camera -> profile (end to end)") == report.END_TO_END
    assert report.latency_panel("camera_to_profile") == report.END_TO_END
    assert report.latency_panel("question -> speech start") == report.END_TO_END


def _bbox(artist, renderer):
    box = artist.get_window_extent(renderer)
    return (box.x0, box.y0, box.x1, box.y1)


def test_latency_chart_is_legible(pictures):
    import matplotlib.pyplot as plt

    figure = report.latency_figure(DEMO_STAGES, "per-stage latency (demo run)")
    try:
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        axes = figure.axes
        assert [a.get_title(loc="left") for a in axes] == list(report.PANELS)
        by_panel = {
            a.get_title(loc="left"): [t.get_text() for t in a.get_yticklabels()] for a in axes
        }
        assert by_panel[report.PANELS[0]][2] == "faces/detect"
        assert all("never timed" not in names for names in by_panel.values())
        # The smallest perception bar is not crushed by the dialogue's hundreds of ms.
        perception = axes[0]
        assert perception.get_xlim()[1] < 50
        # Every bar carries its numbers, and the numbers lie inside their panel.
        for axis in axes:
            texts = [t for t in axis.texts if "ms" in t.get_text()]
            assert len(texts) == len(axis.get_yticklabels())
            panel = _bbox(axis, renderer)
            for text in texts:
                x0, y0, x1, y1 = _bbox(text, renderer)
                assert panel[0] <= x0 and x1 <= panel[2] + 1 and panel[1] <= y0 and y1 <= panel[3]
                assert text.get_fontsize() >= 8
            for a, b in itertools.combinations(texts, 2):
                assert overlap(_bbox(a, renderer), _bbox(b, renderer)) == 0
        # The legend is outside every panel, so it hides no bar and no p95 marker.
        (legend,) = figure.legends
        for axis in axes:
            assert overlap(_bbox(legend, renderer), _bbox(axis, renderer)) == 0
        figure.savefig(pictures / "latency.png", dpi=110)
    finally:
        plt.close(figure)
    height, width = cv2.imread(str(pictures / "latency.png")).shape[:2]
    assert 700 <= width <= 1000 and height <= 1000  # native size, no zooming needed


def test_latency_chart_of_nothing_says_so(tmp_path):
    path = report.latency_chart({"detect": DEMO_STAGES["never timed"]}, tmp_path / "l.png", "x")
    assert path.stat().st_size > 1000


AGE_LABELS = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+", "unknown"]


def age_matrix(true_unknown: int = 0) -> list[list[int]]:
    matrix = np.zeros((10, 10), int)
    matrix[4, [3, 4, 9]] = [3, 17, 1]
    matrix[8, [7, 8, 9]] = [6, 2, 4]
    matrix[9, 9] = true_unknown
    return matrix.tolist()


def test_confusion_matrix_numbers_read_on_every_cell(pictures):
    import matplotlib.pyplot as plt

    figure = report.confusion_figure(age_matrix(), AGE_LABELS, "age_group (rows: true)")
    try:
        axis = figure.axes[0]
        (image,) = axis.get_images()
        data = image.get_array()
        assert len(axis.texts) == data.size
        for text in axis.texts:
            col, row = (round(v) for v in text.get_position())
            cell = [255 * c for c in image.cmap(image.norm(data[row, col]))[:3]]
            colour = [255 * c for c in plt.matplotlib.colors.to_rgb(text.get_color())]
            assert contrast_ratio(cell, colour) >= WCAG_TEXT, (row, col, text.get_text())
            assert text.get_text() == str(data[row, col])
        # A light map: even the fullest cell stays mid blue, not navy.
        darkest = [255 * c for c in image.cmap(1.0)[:3]]
        assert overlay.relative_luminance(darkest) > 0.1
        # The always-empty "true unknown" row is gone; the predicted "unknown" column stays.
        assert [t.get_text() for t in axis.get_yticklabels()] == AGE_LABELS[:-1]
        assert [t.get_text() for t in axis.get_xticklabels()] == AGE_LABELS
        figure.savefig(pictures / "confusion_age_group.png", dpi=110)
    finally:
        plt.close(figure)


def test_a_true_unknown_row_with_counts_is_kept():
    import matplotlib.pyplot as plt

    figure = report.confusion_figure(age_matrix(true_unknown=2), AGE_LABELS, "t")
    try:
        assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == AGE_LABELS
    finally:
        plt.close(figure)


def test_docs_pictures_are_copied_small_and_a_missing_one_is_named(tmp_path):
    from uservlm_ros.demo import pictures as docs

    run = tmp_path / "run"
    run.mkdir()
    frame = make_scene(45)[30]
    save_rgb(run / "frame_2_faces.png", draw_people(frame.rgb, scene_people(frame)))
    assert (run / "frame_2_faces.png").stat().st_size > docs.MAX_BYTES  # needs the palette
    save_rgb(run / "latency.png", backgrounds()["half"])
    frame, chart = docs.copy_pictures(run, tmp_path / "images")
    assert frame.name == "demo_frame.png" and chart.name == "demo_latency.png"
    for path in (frame, chart):
        assert path.stat().st_size <= docs.MAX_BYTES
        assert cv2.imread(str(path)).shape == (480, 640, 3)  # native size
    (run / "latency.png").unlink()
    assert docs.main(["--from", str(run), "--out", str(tmp_path / "images")]) == 1


def test_the_docs_pictures_in_the_repository_are_small_and_native_size():
    from uservlm_ros.demo import pictures as docs

    for name in docs.PICTURES.values():
        path = docs.DOCS_IMAGES / name
        assert path.stat().st_size <= docs.MAX_BYTES, name
    assert cv2.imread(str(docs.DOCS_IMAGES / "demo_frame.png")).shape == (480, 640, 3)
