"""Packaging tests build the frozen bundle; the ``bundle`` marker lets a quick run leave them out."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "bundle: builds the PyInstaller bundle and smoke-tests it (about a minute)"
    )
