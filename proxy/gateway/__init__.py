"""The agent-facing gateway: the ASGI app and its guards, errors, the listener and the forwarding loop."""
