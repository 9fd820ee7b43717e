"""Files shipped with Headway, found the same way from a source checkout, a pip install and a frozen bundle.

Package data keeps its package-relative path everywhere: ``web_ui/templates/index.html`` sits next to
``web_ui/__init__.py`` in a checkout and in site-packages, and PyInstaller's spec copies it to the same relative
path under the bundle's ``sys._MEIPASS``. So one root is enough: the bundle's, or the folder holding the packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["is_frozen", "resource_path", "resource_root"]


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def resource_root() -> Path:
    """The folder that holds the ``proxy``, ``tray`` and ``web_ui`` packages' data."""
    if is_frozen():
        return Path(getattr(sys, "_MEIPASS", "."))
    return Path(__file__).resolve().parent.parent


def resource_path(relative: str | Path) -> Path:
    """The absolute path of a shipped file, e.g. ``resource_path("web_ui/templates/index.html")``."""
    relative = Path(relative)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"resource paths are relative to the packages' folder: {relative}")
    return resource_root() / relative
