"""Secrets: the OS keychain and the in-memory secret cache."""
