"""Thin rclpy nodes: each converts messages to core dataclasses and calls a backend."""
