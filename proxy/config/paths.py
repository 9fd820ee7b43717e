"""Every folder and file Headway writes.

By default the folders follow the platform's conventions (platformdirs). ``HEADWAY_HOME=<dir>`` moves all of them
under one folder — the test profile and portable mode — and also gives the keychain entries a service name of their
own, so a test run never reads or writes the user's real secrets.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from filelock import FileLock

__all__ = [
    "APP_NAME",
    "Paths",
    "ensure_private_dir",
    "private_file_lock",
    "remove_stale_temp_files",
    "tighten",
    "write_private_file",
]

APP_NAME = "headway"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    log_dir: Path
    run_dir: Path
    keychain_service: str
    home: Path | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Paths:
        env = os.environ if environ is None else environ
        home = env.get("HEADWAY_HOME")
        if home:
            root = Path(home).expanduser().resolve()
            digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
            return cls(
                config_dir=root / "config",
                data_dir=root / "data",
                log_dir=root / "logs",
                run_dir=root / "run",
                keychain_service=f"{APP_NAME}-{digest}",
                home=root,
            )
        return cls(
            config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
            data_dir=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
            log_dir=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
            run_dir=Path(platformdirs.user_state_dir(APP_NAME, appauthor=False)) / "run",
            keychain_service=APP_NAME,
        )

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "state.json"

    @property
    def request_log(self) -> Path:
        return self.data_dir / "requests.sqlite3"

    @property
    def members_file(self) -> Path:
        """Member keys (hashed) for a shared gateway: proxy/secrets/members.py."""
        return self.data_dir / "members.json"

    @property
    def dumps_dir(self) -> Path:
        return self.data_dir / "dumps"

    @property
    def secrets_file(self) -> Path:
        """The opt-in plain file keychain for machines without a secure one."""
        return self.data_dir / "secrets.json"

    @property
    def settings_last_good(self) -> Path:
        """A copy of the last settings file that loaded or was written fine.

        Its presence is also the durable mark that a settings file existed in this home: from then on a missing,
        empty or unreadable settings file is an error, never a first run (see proxy/config/store.py).
        """
        return self.data_dir / "settings.last-good.json"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "headway.lock"

    @property
    def runtime_file(self) -> Path:
        """Where a running instance writes its pid and ports, for the CLI to find it."""
        return self.run_dir / "runtime.json"

    def ensure(self) -> None:
        """Create every folder owner-only, and tighten ones an older version left open (home, run, lock files)."""
        if self.home is not None:
            ensure_private_dir(self.home)
        for folder in (self.config_dir, self.data_dir, self.log_dir, self.run_dir):
            ensure_private_dir(folder)
        if self.home is None:
            # The run folder sits in a folder of ours under the platform's state folder.
            tighten(self.run_dir.parent, 0o700)
        for lock in (self.lock_file, self.settings_file.with_name(self.settings_file.name + ".lock")):
            tighten(lock, 0o600)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it owner-only."""
    path.mkdir(parents=True, exist_ok=True)
    if os.name == "posix":
        os.chmod(path, 0o700)


def tighten(path: Path, mode: int) -> None:
    """Make an existing file or folder of ours no more open than ``mode``; a missing one is fine."""
    if os.name != "posix":
        return
    try:
        info = os.lstat(path)
    except OSError:
        return
    if info.st_uid == os.getuid() and not os.path.islink(path) and info.st_mode & 0o777 & ~mode:
        os.chmod(path, info.st_mode & 0o777 & mode)


def private_file_lock(path: Path, timeout: float) -> FileLock:
    """A lock file only this user can open (0600); an existing, more open one is tightened."""
    tighten(path, 0o600)
    return FileLock(str(path), timeout=timeout, mode=0o600)


def write_private_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` atomically to ``path`` with owner-only permissions (temp file, fsync, replace).

    ``mode`` may drop owner bits (a read-only file stays read-only); group and other bits are always cleared.
    """
    mode &= 0o700
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    except OSError as exc:
        # The temp file's name means nothing to the user (a read-only folder, say): name the file not written.
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if os.name == "posix":
            os.chmod(tmp, mode)  # exactly this, whatever the umask took away
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        # A failed write (a full disk) names no file: name the one that was not written.
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temp_files(path: Path) -> None:
    """Remove temp files of :func:`write_private_file` for ``path`` left by processes that no longer run (kill -9)."""
    try:
        candidates = list(path.parent.glob(f".{path.name}.*.tmp"))
    except OSError:
        return
    for tmp in candidates:
        pid_text = tmp.name[len(path.name) + 2 : -len(".tmp")]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        try:
            tmp.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows; leave its temp files be
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
