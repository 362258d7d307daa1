"""The agent's local HTTP surface: request schemas, routes and the unix-socket server."""
