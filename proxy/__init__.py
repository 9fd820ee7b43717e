"""Headway engine: the local gateway, accounts, routing, quota and settings."""

__version__ = "0.1.0"
