"""Fixtures shared by the proxy.relay tests that set the relay up (test_setup, test_deployed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config.paths import Paths
from proxy.config.store import SettingsStore


@pytest.fixture
def store(headway_home: Path) -> SettingsStore:
    """The settings store in the test's HEADWAY_HOME, created empty."""
    paths = Paths.from_env()
    paths.ensure()
    settings = SettingsStore(paths.settings_file)
    settings.load(create=True)
    return settings
