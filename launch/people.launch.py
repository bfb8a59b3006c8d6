"""Any robot: perception, persons and REP-155 topics from the robot's own camera driver.

ros2 launch uservlm people.launch.py [namespace:=robot1]
"""

from uservlm_ros.bringup.launch_description import deployment_launch_description


def generate_launch_description():
    return deployment_launch_description("people")
