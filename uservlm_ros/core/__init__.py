"""Pure logic of uservlm. Nothing under this package imports rclpy or message types."""
