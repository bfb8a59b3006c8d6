"""Pepper: its camera (NAOqi), perception, responder and the speech/gesture bridge.

ros2 launch uservlm pepper.launch.py robot_ip:=<pepper address> [device:=cuda]
"""

from uservlm_ros.bringup.launch_description import deployment_launch_description


def generate_launch_description():
    return deployment_launch_description("pepper")
