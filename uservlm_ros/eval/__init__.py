"""Recording, replay and evaluation of uservlm sessions (rosbag2 via the `rosbags` library)."""
