"""The operator console: a web page showing the graph live (server, page state, access rules).

Pure Python plus aiohttp, no ROS: nodes/console_node.py connects it to the graph.
"""
