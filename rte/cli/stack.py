"""The running stack's address card: `rte up` writes it into the data folder, every command reads it.

Without it, a command in another terminal talks to the default addresses and the store in `./.rte`
— a stray store with a secret key of its own — whenever `rte up` was started with `--data-dir` or
other ports. The card (`<data dir>/stack.json`, mode 0600) records where the stack listens; it is
removed on a clean stop, and one left behind by a stack that died (its process is gone, or nothing
listens on its Temporal port any more) is recognised as stale and ignored.

Secrets are never written to the card: when the stack was started with RTE_DATABASE_URL or
RTE_SECRET_KEY, the card holds a fingerprint of each, so a command using another store or another
key can say so instead of silently writing where the stack never looks.
"""

from __future__ import annotations

import hashlib
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import make_url

from rte.config import Settings

STACK_FILE_NAME = "stack.json"
# The settings a running stack decides and its clients must share (each an RTE_* variable).
SHARED_FIELDS = (
    "temporal_address",
    "namespace",
    "task_queue",
    "script_task_queue",
    "temporal_ui_url",
    "api_url",
)


class StackCard(BaseModel):
    pid: int
    started_at: datetime
    data_dir: str
    temporal_address: str
    namespace: str
    task_queue: str
    script_task_queue: str | None = None
    temporal_ui_url: str
    api_url: str
    store: str  # the store's URL, password hidden
    store_fingerprint: str
    secret_key_fingerprint: str | None = None  # set when the stack's key came from RTE_SECRET_KEY


class StaleCard(Exception):
    """The card names a stack that is no longer running (or cannot be read)."""


def card_path(data_dir: Path) -> Path:
    return data_dir / STACK_FILE_NAME


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def store_label(settings: Settings) -> str:
    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


def card_for(settings: Settings) -> StackCard:
    return StackCard(
        pid=os.getpid(),
        started_at=datetime.now(UTC),
        data_dir=str(settings.data_dir.resolve()),
        **{name: getattr(settings, name) for name in SHARED_FIELDS},
        store=store_label(settings),
        store_fingerprint=fingerprint(settings.resolved_database_url),
        secret_key_fingerprint=fingerprint(settings.secret_key) if settings.secret_key else None,
    )


def write_card(card: StackCard, data_dir: Path) -> Path:
    """Write atomically, 0600 from the start (a reader never sees half a card)."""
    path = card_path(data_dir)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(card.model_dump_json(indent=2) + "\n")
    os.replace(temporary, path)
    return path


def remove_card(data_dir: Path) -> None:
    """Remove the card this process wrote (not one a newer stack wrote over it)."""
    path = card_path(data_dir)
    try:
        card = StackCard.model_validate_json(path.read_text())
    except (OSError, ValidationError):
        return
    if card.pid == os.getpid():
        path.unlink(missing_ok=True)


def read_card(data_dir: Path) -> StackCard | None:
    """The live stack's card; None when there is none; StaleCard when one is left from a dead stack."""
    path = card_path(data_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StaleCard(f"{path} cannot be read: {error.strerror or error}") from None
    try:
        card = StackCard.model_validate_json(text)
    except ValidationError:
        raise StaleCard(f"{path} is not a stack card written by `rte up`") from None
    if not _process_alive(card.pid) or not _listening(card.temporal_address):
        raise StaleCard(f"{path} is left from an `rte up` (pid {card.pid}) that is no longer running")
    return card


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    try:  # a zombie (exited, not yet reaped by its parent) is gone too
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _listening(address: str) -> bool:
    """Whether something accepts connections at host:port (a recycled pid alone proves nothing)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=1):
            return True
    except (OSError, ValueError):
        return False
