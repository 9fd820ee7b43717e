"""How a wait for the keychain is told: once in the log (the terminal), and once as a desktop notification when it
lasts; and how long `headway` and `headway serve` wait. The wait itself, in a real process against a real
gnome-keyring that comes up late, is tests/tray/test_keychain_wait.py."""

from __future__ import annotations

import logging

import pytest

import tray.alert
from proxy.secrets.keychain import KeychainError
from tray.keychain_wait import NOTIFY_AFTER, KeychainWaitNotice, keychain_wait

NOT_THERE = KeychainError(
    "No secure keychain is available on this machine (keyring chose keyring.backends.fail.Keyring)."
)


@pytest.fixture
def alerts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(tray.alert, "desktop_alert", lambda title, text: shown.append((title, text)) or True)
    return shown


def test_told_once_in_the_log_and_notified_once_when_it_lasts(
    alerts: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    notice = KeychainWaitNotice(120, display=True)
    with caplog.at_level(logging.WARNING, logger="headway.tray"):
        for waited in (0.0, 1.0, NOTIFY_AFTER - 0.5):
            notice(NOT_THERE, waited)
        assert alerts == []  # a keychain a few seconds late is not worth a notification
        for waited in (NOTIFY_AFTER, NOTIFY_AFTER + 1, 60.0):
            notice(NOT_THERE, waited)
    lines = [r.getMessage() for r in caplog.records if "Waiting for the keychain" in r.getMessage()]
    assert lines == ["Waiting for the keychain (up to 120 s; Ctrl+C stops): no secure keychain on this machine "
                     "(keyring found none: keyring.backends.fail.Keyring)"]  # fmt: skip
    assert len(alerts) == 1
    title, text = alerts[0]
    assert title == "Headway is waiting for the keychain"
    assert "no secure keychain" in text and "gives up after 120 s" in text


def test_no_notification_without_a_display(alerts: list[tuple[str, str]]) -> None:
    notice = KeychainWaitNotice(120, display=False)
    notice(NOT_THERE, 0.0)
    notice(NOT_THERE, 100.0)
    assert alerts == [] and notice.told


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        (None, 120.0, 120.0),  # `headway`: two minutes
        (None, 0.0, 0.0),  # `headway serve`: at once
        ("30", 0.0, 30.0),
        (" 0 ", 120.0, 0.0),
        ("2.5", 120.0, 2.5),
        ("soon", 120.0, 120.0),  # not a number: the default, with a warning
        ("-1", 0.0, 0.0),
        ("99999", 120.0, 120.0),
    ],
)
def test_how_long_to_wait(value: str | None, default: float, expected: float) -> None:
    environ = {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus"}
    if value is not None:
        environ["HEADWAY_KEYCHAIN_WAIT"] = value
    assert keychain_wait(environ, default, "linux") == expected


def test_nothing_to_wait_for_without_a_session_bus() -> None:
    """A Secret Service only comes up on a session bus, and a process started without one never gets one."""
    assert keychain_wait({}, 120.0, "linux") == 0.0
    assert keychain_wait({"HEADWAY_KEYCHAIN_WAIT": "30"}, 120.0, "linux") == 0.0
    assert keychain_wait({}, 120.0, "darwin") == 120.0  # no bus there: the login keychain is the system's
