"""Where the ``headway`` subcommands' log records go: Headway's log file, never the terminal.

The CLI tells the user what went wrong through its own messages (click exceptions, :mod:`tray.failures`). Without a
handler, Python's last-resort handler would print the same problem again as a raw log record on stderr. So the
subcommands append their records (warnings and up, redacted) to ``headway.log``, opening it only when there is
something to write: a command that logs nothing creates no file. ``headway`` / ``headway serve`` replace this handler
with the full one (:func:`proxy.logs.configure_logging`). The running instance rotates the file; this handler only
appends.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from proxy.config.paths import ensure_private_dir
from proxy.logs import LOG_FILE_NAME, LOGGER_NAME, RedactingFilter

__all__ = ["log_cli_to_file"]

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [cli %(process)d] %(message)s"


class _AppendToLogFile(logging.Handler):
    """Appends each record to the log file (0600), made on first use; a file it cannot write drops the record."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__(logging.WARNING)
        self.log_dir = log_dir
        self.setFormatter(logging.Formatter(_FORMAT))
        self.addFilter(RedactingFilter())  # also marks it as ours for configure_logging, which replaces it

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "replace")
            ensure_private_dir(self.log_dir)
            fd = os.open(self.log_dir / LOG_FILE_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except (OSError, ValueError):
            pass  # the log is a record, not the message: the command still tells the user what went wrong


def log_cli_to_file(log_dir: Path) -> None:
    """Send the ``headway`` logger's warnings and errors to ``log_dir``'s log file only (not stderr)."""
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        if isinstance(old, _AppendToLogFile):
            logger.removeHandler(old)
    logger.addHandler(_AppendToLogFile(log_dir))
    if logger.level == logging.NOTSET or logger.level > logging.WARNING:
        logger.setLevel(logging.WARNING)
    logger.propagate = False
