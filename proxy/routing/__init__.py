"""Routing: which account serves a request — health, quota, the router, runtime state, sessions."""
