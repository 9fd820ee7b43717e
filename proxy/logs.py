"""Headway's log: a rotating, owner-only file plus stderr, both scrubbed of secrets.

Only the ``headway`` logger tree is configured (the root logger is left alone) and it does not propagate, so a record
can leave through our handlers only, and every one of them carries a :class:`RedactingFilter`. The filter sits on
the handlers, not on the logger, because a logger's filters do not see records from its children.

:func:`redact` is the one place that knows what a secret looks like; request dumps reuse it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from io import TextIOWrapper
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from proxy.config.paths import ensure_private_dir

__all__ = [
    "LOGGER_NAME",
    "LOG_FILE_NAME",
    "REDACTED",
    "LogHandle",
    "RedactingFilter",
    "configure_logging",
    "redact",
]

LOGGER_NAME = "headway"
LOG_FILE_NAME = "headway.log"
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(threadName)s] %(message)s"

REDACTED = "…[redacted]"
_MARK = re.escape(REDACTED)

# Each rule: (pattern with groups <prefix> and <secret>, how many characters of the secret to keep).
# Secret bodies use possessive quantifiers and refuse to end right before the redaction mark, so running redact()
# twice changes nothing, and the rules never re-mask each other's output.
_TOKEN_RULES: tuple[tuple[re.Pattern[str], int], ...] = (
    # Anthropic API keys and OAuth tokens: sk-ant-api03-…, sk-ant-oat01-…
    (re.compile(rf"(?<![\w-])(?P<prefix>sk-ant-)(?P<secret>[\w-]{{16,}}+)(?!{_MARK})"), 5),
    # OpenAI keys: sk-…, sk-proj-…, sk-svcacct-…, sk-admin-…
    (
        re.compile(
            rf"(?<![\w-])(?P<prefix>sk-(?:proj-|svcacct-|admin-)?)(?P<secret>[\w-]{{16,}}+)(?!{_MARK})"
        ),
        4,
    ),
    # OpenAI / ChatGPT refresh tokens
    (re.compile(rf"(?<![\w-])(?P<prefix>rt_)(?P<secret>[\w.-]{{16,}}+)(?!{_MARK})"), 4),
    # JWTs (ChatGPT access and id tokens)
    (re.compile(rf"(?<![\w-])(?P<prefix>eyJ)(?P<secret>[\w-]{{4,}}\.[\w-]{{4,}}\.[\w-]*+)(?!{_MARK})"), 3),
    # The password in a URL's user part: a proxy's (HTTPS_PROXY=http://user:password@host), Redis's, any other
    (
        re.compile(
            rf"(?i)(?P<prefix>\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]*:)(?P<secret>[^\s/@'\"]++)(?<!{_MARK})(?=@)"
        ),
        0,
    ),
    # Bearer tokens in free text (other schemes only next to a header name, see _KEYED_VALUE)
    (
        re.compile(
            rf"(?i)(?<![\w-])(?P<prefix>bearer\s+)(?P<secret>[\w.~+/=-]{{16,}}+)(?![\w.~+/=-]|{_MARK})"
        ),
        4,
    ),
)

# Values of secret-bearing headers and fields in dict reprs, JSON, form bodies and header dumps.
_KEYED_VALUE = re.compile(
    r"""(?ix)
    (?P<key>
        (?<![\w-])["']?
        (?:authorization|proxy-authorization|cookie|set-cookie|[\w-]*(?:api[-_]?key|access[-_]?key|secret|password|token))
        ["']?\s*[:=]\s*
    )
    (?:
        (?P<bq>b?(?P<q>["']))(?P<quoted>.*?)(?P=q)
      | (?P<bare>(?:(?:bearer|basic|token)\s+)?[^\s,;&'"}]+)
    )
    """
)
_SCHEME = re.compile(r"(?i)^(?P<scheme>(?:bearer|basic|token)\s+)?(?P<rest>.*)$", re.DOTALL)
_ALREADY_MASKED = re.compile(rf"^(?:\w+\s+)?\S*{_MARK}$")


def redact(text: str) -> str:
    """``text`` with every secret-shaped token replaced by a short prefix and ``…[redacted]``. Idempotent."""
    for pattern, keep in _TOKEN_RULES:
        text = pattern.sub(_token_masker(keep), text)
    return _KEYED_VALUE.sub(_mask_keyed_value, text)


def _token_masker(keep: int) -> Callable[[re.Match[str]], str]:
    def mask(match: re.Match[str]) -> str:
        return match["prefix"] + _mask(match["secret"], keep)

    return mask


def _mask(secret: str, keep: int) -> str:
    return secret[: min(keep, len(secret) // 4)] + REDACTED


def _mask_keyed_value(match: re.Match[str]) -> str:
    if match["quoted"] is not None:
        return f"{match['key']}{match['bq']}{_mask_value(match['quoted'])}{match['q']}"
    return f"{match['key']}{_mask_value(match['bare'])}"


def _mask_value(value: str) -> str:
    if not value or _ALREADY_MASKED.match(value):
        return value
    parts = _SCHEME.match(value)
    assert parts is not None  # the pattern matches any string
    return (parts["scheme"] or "") + _mask(parts["rest"], 4)


class RedactingFilter(logging.Filter):
    """Renders the record's message, redacts it, and drops the args, so no handler can see them unredacted.

    Tracebacks and stack info are rendered and redacted too (exception messages often quote headers or URLs).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the secrets in its args
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class _PrivateRotatingFileHandler(RotatingFileHandler):
    """A rotating file handler whose files are created owner-only (0600), however the umask is set.

    A log file that cannot be written (a full disk) costs its lines, not a traceback each: logging's default prints
    "--- Logging error ---" and a traceback to stderr for every line. Here the first failure is one line on stderr,
    the lines after it are counted, and the first line written again is preceded by how many may be missing (the
    file's buffer may still write some of them late, or cut short).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lost = 0  # lines not written since the last one that was
        self._told = False  # stderr has been told of this run of failures
        self._noting = False

    def _open(self) -> TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if os.name == "posix":
            os.fchmod(fd, 0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def emit(self, record: logging.LogRecord) -> None:
        if self._lost:
            self._note_lost(record)
        super().emit(record)

    def _note_lost(self, record: logging.LogRecord) -> None:
        lost, self._lost = self._lost, 0
        note = logging.makeLogRecord(
            {
                "name": record.name,
                "levelno": logging.WARNING,
                "levelname": "WARNING",
                "threadName": record.threadName,
                "msg": "%d log lines may be missing or cut short above: the log file could not be written",
                "args": (lost,),
            }
        )
        self._noting = True
        try:
            super().emit(note)
        finally:
            self._noting = False
        if self._lost:  # the note failed too: still failing, and the note is not a line of its own
            self._lost = lost
        else:
            self._told = False

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        self._lost += 1
        if self._noting or self._told:
            return
        self._told = True
        if sys.stderr is not None:
            with contextlib.suppress(Exception):
                sys.stderr.write(
                    f"headway: cannot write the log file {self.baseFilename} ({error.strerror or error}); "
                    "log lines are lost until it can be written\n"
                )


class LogHandle:
    """The configured ``headway`` logger: change its level live, or take the handlers down."""

    def __init__(self, logger: logging.Logger, handlers: list[logging.Handler], log_file: Path) -> None:
        self._logger = logger
        self._handlers = handlers
        self._lock = threading.Lock()
        self._previous = (logger.level, logger.propagate)
        self.log_file = log_file

    @property
    def level(self) -> str:
        return logging.getLevelName(self._logger.level)

    def set_level(self, level: str) -> None:
        """Change the level of the logger and every handler at once. Raises ValueError for an unknown level."""
        number = _parse_level(level)
        with self._lock:
            self._logger.setLevel(number)
            for handler in self._handlers:
                handler.setLevel(number)

    def close(self) -> None:
        """Remove and close the handlers and restore the logger as it was. Safe to call twice."""
        with self._lock:
            handlers, self._handlers = self._handlers, []
            for handler in handlers:
                self._logger.removeHandler(handler)
                handler.close()
            if handlers:
                self._logger.setLevel(self._previous[0])
                self._logger.propagate = self._previous[1]


def configure_logging(
    log_dir: Path,
    level: str,
    *,
    max_bytes: int = 5 * 1024 * 1024,
    backup_count: int = 3,
) -> LogHandle:
    """Send the ``headway`` logger tree to ``log_dir/headway.log`` (rotated) and to stderr, at ``level``.

    ``log_dir`` is created owner-only (0700); log files are 0600. Handlers a previous call installed are replaced.
    """
    number = _parse_level(level)
    ensure_private_dir(log_dir)
    log_file = log_dir / LOG_FILE_NAME
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        if any(isinstance(f, RedactingFilter) for f in old.filters):  # installed by an earlier call
            logger.removeHandler(old)
            old.close()

    formatter = logging.Formatter(_FORMAT)
    redacting = RedactingFilter()
    handlers: list[logging.Handler] = [
        _PrivateRotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
    ]
    if sys.stderr is not None:  # windowed (pythonw / frozen) builds have no stderr
        handlers.append(logging.StreamHandler(sys.stderr))
    handle = LogHandle(logger, handlers, log_file)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redacting)
        handler.setLevel(number)
        logger.addHandler(handler)
    logger.setLevel(number)
    logger.propagate = False
    return handle


def _parse_level(level: str) -> int:
    number = logging.getLevelNamesMapping().get(level.strip().upper())
    if number is None or level.strip().upper() == "NOTSET":
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning, error or critical")
    return number
