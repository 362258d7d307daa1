"""Runtime adapters on top of the agent: the CNI plugin's agent side and the Docker drivers."""
