"""A recorded bag as the camera: perception and the responder on replayed frames.

ros2 launch uservlm replay.launch.py bag:=<bag folder> [rate:=1.0]
"""

from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration

from uservlm_ros.bringup.launch_description import deployment_launch_description


def generate_launch_description():
    description = deployment_launch_description("replay")
    description.add_action(DeclareLaunchArgument("bag", description="rosbag2 folder to play"))
    description.add_action(
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor")
    )
    description.add_action(
        ExecuteProcess(
            cmd=[
                "uservlm",
                "replay",
                LaunchConfiguration("bag"),
                "--rate",
                LaunchConfiguration("rate"),
            ],
            output="screen",
        )
    )
    return description
