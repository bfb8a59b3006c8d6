"""How the node graph is described and brought up: deployments, `uservlm run`, launch files."""
