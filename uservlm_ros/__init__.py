"""uservlm: user-aware perception and personalized VLM dialogue for Pepper on ROS 2."""

__version__ = "0.1.0"
