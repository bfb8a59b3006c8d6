"""Desktop: a webcam as the camera, perception and the responder, speech on /speech only.

ros2 launch uservlm webcam.launch.py [device:=cuda]
"""

from uservlm_ros.bringup.launch_description import deployment_launch_description


def generate_launch_description():
    return deployment_launch_description("webcam")
