"""A second process for transport tests: echoes uservlm messages and serves the Respond action.

    python test/peers/interface_peer.py

Echo: /peer/faces_in -> /peer/faces_out (FaceArray), /peer/profile_in -> /peer/profile_out
(UserProfile, reliable + transient-local). Action /peer/respond: answers a goal with the question
upper-cased, sending one feedback per word first.
"""

from __future__ import annotations

import time

import rclpy
from rclpy.action import ActionServer
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from uservlm.action import Respond
from uservlm.msg import FaceArray, Response, UserProfile

LATCHED = QoSProfile(
    depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


class InterfacePeer(Node):
    def __init__(self) -> None:
        super().__init__("interface_peer")
        faces_out = self.create_publisher(FaceArray, "/peer/faces_out", 10)
        self.create_subscription(FaceArray, "/peer/faces_in", faces_out.publish, 10)
        profile_out = self.create_publisher(UserProfile, "/peer/profile_out", LATCHED)
        self.create_subscription(UserProfile, "/peer/profile_in", profile_out.publish, LATCHED)
        ActionServer(self, Respond, "/peer/respond", self._respond)

    def _respond(self, goal_handle):
        words = goal_handle.request.question.split()
        for count in range(1, len(words) + 1):
            goal_handle.publish_feedback(
                Respond.Feedback(
                    partial_text=" ".join(words[:count]).upper(), tokens_generated=count
                )
            )
            time.sleep(0.05)
        goal_handle.succeed()
        return Respond.Result(
            response=Response(
                request_id="peer",
                track_id=goal_handle.request.track_id,
                question=goal_handle.request.question,
                text=goal_handle.request.question.upper(),
                final=True,
                mode=goal_handle.request.mode,
                responder="interface_peer",
            )
        )


def main() -> None:
    rclpy.init()
    node = InterfacePeer()
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    print("interface_peer ready", flush=True)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
