"""What the engine keeps on disk is for the engine's user alone: folders 0700, files 0600.

The data folder holds the SQL store (every execution's data, API key hashes, encrypted connection
secrets), the secret key that decrypts them and Temporal's database. A folder that already existed
(an administrator's, a Docker volume) keeps whatever mode it had, and SQLite and Temporal create
their files 0644 under the usual umask, so anything running as another user — a `script` step runs
as `nobody` under a root worker — could read them. These helpers create and tighten instead, and
say so in the log when they had to tighten something.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("rte.files")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# SQLite's companions of a database file: they hold the same data.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """Create `path` (and its parents) with mode 0700, or tighten it to 0700 if it exists."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    _tighten(path, PRIVATE_DIR, "data folder")


def private_file(path: Path, *, create: bool = False) -> None:
    """Tighten `path` to 0600 if it exists; with `create`, make it (empty, 0600) if it does not."""
    if create:
        # Never open an existing file: closing any descriptor of a database file drops every POSIX
        # lock SQLite holds on it in this process, and another process may then checkpoint and
        # delete the WAL under our open connections ("disk I/O error", lost writes). O_EXCL fails
        # without opening when the file exists (or another process created it first).
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE))
    if path.exists():
        _tighten(path, PRIVATE_FILE, "file")


def private_sqlite_file(path: Path) -> None:
    """The database file created 0600 before SQLite opens it (SQLite gives its -wal and -shm files
    the database file's mode), and a database left wider by an earlier version tightened."""
    private_file(path, create=True)
    for suffix in SQLITE_COMPANIONS:
        private_file(path.with_name(path.name + suffix))


def _tighten(path: Path, mode: int, what: str) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if not current & 0o077:
        return
    try:
        os.chmod(path, mode)
    except OSError as err:  # not ours (e.g. a volume owned by another user): say so, carry on
        log.warning(
            "%s %s is mode %04o (other users can read it) and cannot be tightened: %s",
            what,
            path,
            current,
            err.strerror,
        )
        return
    log.warning(
        "%s %s was mode %04o (other users could read it); tightened to %04o", what, path, current, mode
    )
