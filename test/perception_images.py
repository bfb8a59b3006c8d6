"""Real face photos for the perception tests (see uservlm_ros.sim.photos)."""

from uservlm_ros.sim.photos import astronaut, frame_with_faces, grace_hopper, moving_faces_frames

__all__ = ["astronaut", "frame_with_faces", "grace_hopper", "moving_faces_frames"]
