"""Loading pystray, and the fixes Headway applies to its platform backends: notifications that may be missing
(GTK) and a Retina template image in the macOS menu bar."""

from __future__ import annotations

import logging
import sys
from types import ModuleType
from typing import Any, cast

__all__ = ["import_pystray"]

log = logging.getLogger("headway.tray")


def _darwin_icon_class(pystray: ModuleType) -> type:
    """pystray scales the image to the bar's height in *pixels*, losing Retina detail, and never marks it as a
    template. This subclass hands AppKit the 2x image with a 22 pt size, as a template when asked."""
    base: type = pystray.Icon

    class HeadwayDarwinIcon(base):  # type: ignore[misc]
        headway_template = False

        def _assert_image(self) -> None:
            import io

            import AppKit
            import Foundation

            points = float(self._status_bar.thickness())
            buffer = io.BytesIO()
            self._icon.save(buffer, "png")
            image = AppKit.NSImage.alloc().initWithData_(Foundation.NSData(buffer.getvalue()))
            image.setSize_((points, points))
            image.setTemplate_(bool(self.headway_template))
            self._icon_image = image
            self._status_item.button().setImage_(image)

    return HeadwayDarwinIcon


def _tolerate_missing_notifications() -> None:
    """pystray's GTK backends connect to the notification service when the icon starts and raise if it cannot be
    reached or started (no daemon, or one that fails to activate), taking the tray down. Headway treats
    notifications as optional: a failing connection is logged and notifications are skipped."""
    try:
        from pystray._util import notify_dbus
    except Exception:  # not a GTK backend, or no gi: nothing to patch
        return
    original = notify_dbus.Notifier
    if getattr(original, "headway_tolerant", False):
        return

    class TolerantNotifier(original):  # type: ignore[misc,valid-type]
        headway_tolerant = True

        def __init__(self) -> None:
            self.available = False
            try:
                super().__init__()
                self.available = True
            except Exception as exc:
                log.warning("desktop notifications are unavailable: %s", exc)

        def notify(self, title: str, message: str, icon: Any) -> None:
            if self.available:
                super().notify(title, message, icon)

        def hide(self) -> None:
            if self.available:
                try:
                    super().hide()
                except Exception as exc:
                    log.debug("closing a notification: %s", exc)

    notify_dbus.Notifier = TolerantNotifier


def import_pystray() -> ModuleType:
    import pystray

    _tolerate_missing_notifications()
    if sys.platform == "darwin":
        module = ModuleType("pystray_headway")
        module.__dict__.update(pystray.__dict__)
        module.Icon = _darwin_icon_class(pystray)  # type: ignore[attr-defined]
        return module
    return cast(ModuleType, pystray)
