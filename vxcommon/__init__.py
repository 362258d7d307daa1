"""Rules shared by the controller, the host agent and the CNI plugin (no dependencies)."""
