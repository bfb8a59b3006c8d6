"""rclpy glue shared by the nodes: QoS, conversions, diagnostics, parameters, lifecycle."""
