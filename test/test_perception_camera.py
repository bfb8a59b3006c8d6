"""camera_node and its sources: image folder, video file, Pepper's camera over simulated NAOqi."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import qi
from harness import wait_until
from perception_graph import NODE, subscribe_diagnostics, wait_for_counter
from perception_images import astronaut, grace_hopper
from sensor_msgs.msg import CameraInfo, Image

from uservlm_ros.backends.camera_sources import CameraError, FolderSource, decode_naoqi_image
from uservlm_ros.core.errors import ConfigError
from uservlm_ros.ros.conversions import image_to_rgb
from uservlm_ros.ros.qos import SENSOR_QOS
from uservlm_ros.sim.video_device import K_RGB, K_YUV422, SimulatedVideoDevice


def start_camera(processes, *params: str):
    args = ["-m", NODE.format("camera_node"), "--ros-args"]
    for param in params:
        args += ["-p", param]
    return processes.start_python("camera_node", *args)


def write_folder(folder, images) -> None:
    folder.mkdir()
    for index, rgb in enumerate(images):
        cv2.imwrite(str(folder / f"{index:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_folder_source_reads_in_order_and_reports_its_end(tmp_path):
    write_folder(tmp_path / "images", [astronaut(), grace_hopper()])
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    source = FolderSource(str(tmp_path / "images"), loop=False)
    first, second = source.read(), source.read()
    np.testing.assert_array_equal(first, astronaut())
    assert second.shape == grace_hopper().shape
    assert source.read() is None
    with pytest.raises(ConfigError, match="does not exist"):
        FolderSource(str(tmp_path / "missing"))


def test_naoqi_images_decode_and_bad_ones_raise():
    device = SimulatedVideoDevice([astronaut()])
    handle = device.subscribeCamera("test", 0, 1, K_RGB, 5)
    rgb = decode_naoqi_image(device.getImageRemote(handle))
    expected = cv2.resize(astronaut(), (320, 240), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(rgb, expected)
    yuv_handle = device.subscribeCamera("test", 0, 1, K_YUV422, 5)
    yuv = decode_naoqi_image(device.getImageRemote(yuv_handle))
    assert np.abs(yuv.astype(int) - expected.astype(int)).mean() < 6
    truncated = list(device.getImageRemote(handle))
    truncated[6] = truncated[6][:100]
    with pytest.raises(CameraError, match="carries 100 bytes"):
        decode_naoqi_image(truncated)
    with pytest.raises(CameraError, match="malformed"):
        decode_naoqi_image(None)
    assert device.unsubscribe(handle) and not device.unsubscribe(handle)


@pytest.mark.graph
def test_camera_node_streams_a_looped_folder_with_camera_info(ros, processes, tmp_path):
    write_folder(tmp_path / "images", [astronaut()])
    images = ros.subscribe(Image, "/camera/image_raw", SENSOR_QOS)
    infos = ros.subscribe(CameraInfo, "/camera/camera_info", SENSOR_QOS)
    node = start_camera(
        processes,
        "source:=folder",
        f"path:={tmp_path / 'images'}",
        "width:=320",
        "height:=240",
        "frame_id:=head_camera",
        "rate_hz:=20.0",
    )
    node.wait_for_output("camera_node streaming folder", timeout=30)
    got = images.wait_for(3, timeout=20)
    info = infos.wait_for(1, timeout=5)[0]
    first = got[0]
    assert (first.width, first.height, first.encoding) == (320, 240, "rgb8")
    assert first.header.frame_id == "head_camera"
    expected = cv2.resize(astronaut(), (320, 240), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(image_to_rgb(first), expected)
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in got[:3]]
    assert stamps[0] < stamps[1] < stamps[2]  # real, increasing capture times
    assert (info.width, info.height) == (320, 240) and info.k[2] == 160.0 and info.k[0] > 0


@pytest.mark.graph
def test_camera_node_reports_the_end_of_a_video_file(ros, processes, tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for shade in range(0, 250, 50):
        writer.write(np.full((120, 160, 3), shade, np.uint8))
    writer.release()
    diagnostics = subscribe_diagnostics(ros)
    node = start_camera(processes, "source:=video", f"path:={path}", "loop:=false")
    node.wait_for_output(f"end of video {path} after 5 frames", timeout=30)
    wait_until(
        lambda: any(s.message == "end of source" for m in diagnostics.messages for s in m.status),
        10,
        "end of source in the diagnostics",
    )
    assert node.popen.poll() is None  # still alive, just idle


@pytest.mark.graph
def test_camera_node_fails_clearly_on_a_missing_folder(processes, tmp_path):
    node = start_camera(processes, "source:=folder", f"path:={tmp_path / 'nope'}")
    assert node.popen.wait(timeout=30) == 1
    assert f"image folder '{tmp_path / 'nope'}' does not exist" in node.output()


@pytest.mark.graph
@pytest.mark.parametrize("colour_space", ["yuv422", "rgb"])
def test_camera_node_streams_peppers_camera_over_naoqi(ros, processes, colour_space):
    robot = qi.Session()
    robot.listenStandalone("tcp://127.0.0.1:0")
    port = int(robot.endpoints()[0].rsplit(":", 1)[1])
    device = SimulatedVideoDevice([astronaut(), grace_hopper()])
    robot.registerService("ALVideoDevice", device)
    images = ros.subscribe(Image, "/camera/image_raw", SENSOR_QOS)
    diagnostics = subscribe_diagnostics(ros)
    node = start_camera(
        processes,
        "source:=naoqi",
        f"naoqi.port:={port}",
        f"naoqi.colour_space:={colour_space}",
        "naoqi.resolution:=2",
    )
    node.wait_for_output("camera_node streaming NAOqi camera 0", timeout=30)
    got = images.wait_for(2, timeout=20)
    assert (got[0].width, got[0].height) == (640, 480)
    references = [
        cv2.resize(p(), (640, 480), interpolation=cv2.INTER_AREA) for p in (astronaut, grace_hopper)
    ]
    tolerance = 6 if colour_space == "yuv422" else 0.01
    for msg in got[:2]:
        rgb = image_to_rgb(msg).astype(int)
        assert min(np.abs(rgb - r).mean() for r in references) < tolerance
    assert device.getSubscribers()  # subscribed through the qi protocol

    # The robot goes away: the node logs, counts and keeps running.
    robot.close()
    node.wait_for_output("no frame:", timeout=15)
    assert wait_for_counter(diagnostics, "camera_node", "read_errors", 1) >= 1
    assert node.popen.poll() is None
