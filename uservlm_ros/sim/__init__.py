"""Simulated NAOqi services for running and testing the graph without a Pepper."""
