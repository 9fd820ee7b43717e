from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from collections.abc import Iterator
from logging.handlers import RotatingFileHandler
from pathlib import Path

import pytest

from proxy.logs import LogHandle, RedactingFilter, configure_logging, redact

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")

ANTHROPIC_KEY = "sk-ant-api03-R2D2c3poBB8xWingT65bLukeSkywalker0123456789abcdefghijKLMNOPQRSTUV-AAAAAAAA"
ANTHROPIC_OAUTH = "sk-ant-oat01-Z9y8X7w6V5u4T3s2R1q0PonMlKjIhGfEdCbA-zyxwvutsr"
OPENAI_KEY = "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678Stu901Vwx234Yz_-ExtraLongTail"
OPENAI_LEGACY_KEY = "sk-T3BlbkFJabcdefghijklmnopqrstuvwxyz0123456789AB"
JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjE5MzQ0ZTY1In0"
    ".eyJodHRwczovL2FwaS5vcGVuYWkuY29tL2F1dGgiOnsiY2hhdGdwdF9hY2NvdW50X2lkIjoiYWJjIn19"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
REFRESH_TOKEN = "rt_9fK2LmN4pQ7sT1vW3xY6zA8bC0dE5gH.Jk2Lm3No4Pq5Rs6Tu7Vw8Xy9Za"
OPAQUE_BEARER = "ya29OpaqueBearerTokenValue0123456789abcdef"
OPAQUE_API_KEY = "opaque-gateway-access-key-77777777"

# (what to log, the secret that must not appear)
SECRET_MESSAGES: list[tuple[str, str]] = [
    (f"using key {ANTHROPIC_KEY}", ANTHROPIC_KEY),
    (f"oauth token {ANTHROPIC_OAUTH}", ANTHROPIC_OAUTH),
    (f"openai key {OPENAI_KEY}", OPENAI_KEY),
    (f"legacy key {OPENAI_LEGACY_KEY}", OPENAI_LEGACY_KEY),
    (f"access token {JWT}", JWT),
    (f"refreshing with {REFRESH_TOKEN}", REFRESH_TOKEN),
    (f"Authorization: Bearer {OPAQUE_BEARER}", OPAQUE_BEARER),
    (f"headers={{'x-api-key': '{OPAQUE_API_KEY}', 'anthropic-version': '2023-06-01'}}", OPAQUE_API_KEY),
    (f'{{"authorization": "Bearer {OPAQUE_BEARER}"}}', OPAQUE_BEARER),
    (f"x-api-key: {OPAQUE_API_KEY}", OPAQUE_API_KEY),
    (f"form grant_type=refresh_token&refresh_token={OPAQUE_API_KEY}&client_id=app_x", OPAQUE_API_KEY),
    (f'token response {{"access_token": "{OPAQUE_API_KEY}", "expires_in": 3600}}', OPAQUE_API_KEY),
]


def _secret_bodies(secret: str) -> list[str]:
    """Pieces of ``secret`` that must not survive: everything past a short visible prefix."""
    return [secret[12:], secret[-16:]]


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def handle(log_dir: Path) -> Iterator[LogHandle]:
    h = configure_logging(log_dir, "debug")
    yield h
    h.close()


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _our_handlers() -> list[logging.Handler]:
    """The handlers configure_logging installed (pytest attaches its own to non-propagating loggers)."""
    return [
        h
        for h in logging.getLogger("headway").handlers
        if any(isinstance(f, RedactingFilter) for f in h.filters)
    ]


def _read_log(handle: LogHandle) -> str:
    for handler in logging.getLogger("headway").handlers:
        handler.flush()
    return handle.log_file.read_text(encoding="utf-8")


# -- redact() -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "secret"), SECRET_MESSAGES)
def test_redact_masks_each_secret_shape(text: str, secret: str) -> None:
    redacted = redact(text)

    assert "…[redacted]" in redacted
    for body in _secret_bodies(secret):
        assert body not in redacted
    assert redact(redacted) == redacted  # idempotent: handlers may see the same record twice


def test_redact_keeps_a_recognisable_prefix() -> None:
    assert redact(ANTHROPIC_KEY) == "sk-ant-api03…[redacted]"
    assert redact(OPENAI_KEY) == "sk-proj-Abc1…[redacted]"
    assert redact(f"Bearer {OPAQUE_BEARER}") == "Bearer ya29…[redacted]"
    assert redact(f"{{'x-api-key': '{ANTHROPIC_KEY}'}}") == "{'x-api-key': 'sk-ant-api03…[redacted]'}"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (
            "407, message='Proxy Authentication Required', url='http://bob:Hunter2@proxy.corp:3128'",
            "407, message='Proxy Authentication Required', url='http://bob:…[redacted]@proxy.corp:3128'",
        ),
        (
            "HTTPS_PROXY=http://bob:p%40ss%3Aword@10.0.0.1:8080",
            "HTTPS_PROXY=http://bob:…[redacted]@10.0.0.1:8080",
        ),
        (
            "shared state at redis://:s3cret-pw@redis.lan:6379/0",
            "shared state at redis://:…[redacted]@redis.lan:6379/0",
        ),
    ],
)
def test_redact_masks_the_password_in_a_urls_user_part(text: str, redacted: str) -> None:
    """A proxy's URL from the environment carries its password; aiohttp quotes that URL in its proxy errors."""
    assert redact(text) == redacted
    assert redact(redacted) == redacted


@pytest.mark.parametrize(
    "text",
    [
        "usage {'input_tokens': 12, 'max_tokens': 4096, 'prompt_cache_key': 'sess-1'}",
        "upstream http://proxy.corp:8080 and https://host:8443/path/a@b, ssh://git@github.com/x",
        "mailto:someone@example.com",
        "task-abcdefghijklmnopqrstuvwxyz0123 finished",
        "POST /v1/messages?beta=true 200 in 812 ms",
        "client_id=app_EMoamEEZ73f0CkXaXp7hrann",
        "invalid token response from upstream",
    ],
)
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


# -- the log file ---------------------------------------------------------------------------------------------------


def test_secrets_never_reach_the_file(handle: LogHandle) -> None:
    logger = logging.getLogger("headway.proxy.gateway.forward")
    for text, _secret in SECRET_MESSAGES:
        logger.info(text)  # in the message itself
        logger.warning("upstream said %s", text)  # in an arg
        logger.debug("headers %r", {"authorization": f"Bearer {OPAQUE_BEARER}", "x-api-key": ANTHROPIC_KEY})
    try:
        raise RuntimeError(f"refresh failed for {REFRESH_TOKEN} with Bearer {OPAQUE_BEARER}")
    except RuntimeError:
        logger.exception("token refresh crashed")

    content = _read_log(handle)

    assert "token refresh crashed" in content
    assert "RuntimeError: refresh failed for rt_9fK2…[redacted]" in content
    assert content.count("…[redacted]") >= 2 * len(SECRET_MESSAGES)
    for _text, secret in SECRET_MESSAGES:
        for body in _secret_bodies(secret):
            assert body not in content, secret


def test_secrets_never_reach_stderr(handle: LogHandle, capsys: pytest.CaptureFixture[str]) -> None:
    handle.close()  # re-configure so the stream handler binds to the captured stderr
    h = configure_logging(handle.log_file.parent, "info")
    try:
        logging.getLogger("headway").info("key %s", ANTHROPIC_KEY)
    finally:
        h.close()

    err = capsys.readouterr().err
    assert "sk-ant-api03…[redacted]" in err
    assert ANTHROPIC_KEY not in err


def test_only_the_headway_tree_is_configured(handle: LogHandle) -> None:
    root = logging.getLogger()
    root_handlers = list(root.handlers)
    spy = _ListHandler()
    root.addHandler(spy)
    try:
        logging.getLogger("headway.engine").warning("from headway %s", OPENAI_KEY)
        logging.getLogger("someone.else").warning("not ours")
    finally:
        root.removeHandler(spy)

    content = _read_log(handle)
    assert "from headway sk-proj-Abc1…[redacted]" in content
    assert "not ours" not in content
    assert root.handlers == root_handlers
    # no propagation: nothing of ours leaves through the root logger's (unredacted) handlers
    assert [r.name for r in spy.records] == ["someone.else"]


def test_live_level_change(handle: LogHandle) -> None:
    logger = logging.getLogger("headway.router")
    handle.set_level("warning")
    logger.info("quiet info")
    logger.warning("loud warning")
    handle.set_level("DEBUG")
    logger.debug("now debug shows")

    content = _read_log(handle)
    assert "quiet info" not in content
    assert "loud warning" in content
    assert "now debug shows" in content
    assert handle.level == "DEBUG"


def test_level_changes_race_safely_with_logging(handle: LogHandle) -> None:
    logger = logging.getLogger("headway.race")
    stop = threading.Event()
    errors: list[BaseException] = []

    def spam() -> None:
        try:
            while not stop.is_set():
                logger.info("tick")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=spam)
    thread.start()
    for _ in range(200):
        handle.set_level("warning")
        handle.set_level("info")
    stop.set()
    thread.join(timeout=5)

    assert errors == []
    assert {h.level for h in _our_handlers()} == {logging.INFO}


def test_unknown_level_is_rejected(handle: LogHandle, log_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        handle.set_level("chatty")
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(log_dir, "notset")


def test_rotation_is_5mb_times_3(handle: LogHandle) -> None:
    [file_handler] = [h for h in _our_handlers() if isinstance(h, RotatingFileHandler)]

    assert file_handler.maxBytes == 5 * 1024 * 1024
    assert file_handler.backupCount == 3
    assert Path(file_handler.baseFilename).name == "headway.log"


@posix_only
def test_files_are_owner_only_even_after_rotation(log_dir: Path) -> None:
    previous_umask = os.umask(0o022)
    try:
        h = configure_logging(log_dir, "info", max_bytes=2_000, backup_count=3)
        try:
            logger = logging.getLogger("headway.rotation")
            for i in range(200):
                logger.info("line %04d with a key %s", i, OPENAI_KEY)
        finally:
            h.close()
    finally:
        os.umask(previous_umask)

    files = sorted(p.name for p in log_dir.iterdir())
    assert files == ["headway.log", "headway.log.1", "headway.log.2", "headway.log.3"]
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
    for path in log_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert OPENAI_KEY[12:] not in path.read_text(encoding="utf-8")


def test_close_restores_the_logger_and_reconfigure_does_not_duplicate(log_dir: Path) -> None:
    logger = logging.getLogger("headway")
    before = (logger.level, logger.propagate, list(logger.handlers))

    first = configure_logging(log_dir, "info")
    second = configure_logging(log_dir, "info")
    assert len(_our_handlers()) == 2  # file + stderr, not four
    logger.info("once")
    second.close()
    first.close()

    assert (logger.level, logger.propagate, list(logger.handlers)) == before
    assert (log_dir / "headway.log").read_text(encoding="utf-8").count("once") == 1


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_log_file_that_cannot_be_written_costs_lines_not_tracebacks(
    handle: LogHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    """/dev/full fails every write with the kernel's "No space left on device". Before, each line printed
    "--- Logging error ---" and a traceback to stderr; nothing said afterwards that lines were missing."""
    [file_handler] = [h for h in _our_handlers() if isinstance(h, RotatingFileHandler)]
    log = logging.getLogger("headway.test")
    log.warning("before the disk filled")
    file_handler.flush()
    capsys.readouterr()
    real = file_handler.stream
    full = open("/dev/full", "a", encoding="utf-8")
    file_handler.stream = full
    try:
        for n in range(3):
            log.warning("while full %d", n)
    finally:
        file_handler.stream = real
        with contextlib.suppress(OSError):
            full.close()
    log.warning("space again")
    file_handler.flush()
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    assert err.count("cannot write the log file") == 1 and "No space left on device" in err
    lines = Path(file_handler.baseFilename).read_text().splitlines()
    assert "before the disk filled" in lines[-3]
    assert "3 log lines may be missing or cut short above: the log file could not be written" in lines[-2]
    assert lines[-1].endswith("space again")
