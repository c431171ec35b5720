"""The data folder and every file in it are private to the engine's user, even when the folder
already existed with a wider mode (an administrator's folder, a Docker volume)."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from rte.config import Settings
from rte.store import Store
from rte.store.connections import SecretBox
from tests.test_cli import ROOT, _free_port, _wait_healthy


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most systems start processes with: files 0644, folders 0755 unless told otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


async def write_something(store: Store) -> None:
    await store.logs.add_many(
        [{"execution_id": "e", "step_path": "s", "level": "info", "message": "hello", "source": "engine"}]
    )


async def test_a_new_store_file_and_its_wal_and_shm_files_are_0600(tmp_path: Path, usual_umask) -> None:
    data = tmp_path / "data"
    async with await Store.open(Settings(data_dir=data, database_url=None)) as store:
        await write_something(store)
        files = {path.name: mode(path) for path in data.iterdir() if path.name.startswith("rte.db")}

    assert mode(data) == 0o700
    assert {"rte.db", "rte.db-wal", "rte.db-shm"} <= set(files)
    assert set(files.values()) == {0o600}, files


async def test_an_existing_wide_data_folder_and_store_are_tightened_and_the_log_says_so(
    tmp_path: Path, usual_umask, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "volume"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    async with await Store.open(Settings(data_dir=data, database_url=None)) as store:
        await write_something(store)
    for name in ("rte.db", "rte.db-wal", "rte.db-shm"):  # as an earlier version left them
        if (data / name).exists():
            os.chmod(data / name, 0o644)
    os.chmod(data, 0o755)
    caplog.clear()

    with caplog.at_level(logging.WARNING, logger="rte.files"):
        async with await Store.open(Settings(data_dir=data, database_url=None)) as store:
            await write_something(store)

    assert mode(data) == 0o700
    assert {mode(path) for path in data.glob("rte.db*") if not path.name.endswith("lock")} == {0o600}
    warnings = [record.getMessage() for record in caplog.records]
    assert f"data folder {data} was mode 0755 (other users could read it); tightened to 0700" in warnings
    assert f"file {data / 'rte.db'} was mode 0644 (other users could read it); tightened to 0600" in warnings


def test_a_new_secret_key_file_is_0600(tmp_path: Path, usual_umask) -> None:
    box = SecretBox.from_settings(Settings(data_dir=tmp_path / "data", secret_key=None))
    box.encrypt({"token": "t"})
    assert mode(tmp_path / "data" / "secret.key") == 0o600
    assert mode(tmp_path / "data") == 0o700


def test_a_wide_secret_key_file_is_tightened_before_use(
    tmp_path: Path, usual_umask, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_bytes(Fernet.generate_key() + b"\n")
    os.chmod(key_file, 0o644)
    box = SecretBox.from_settings(Settings(data_dir=tmp_path, secret_key=None))

    with caplog.at_level(logging.WARNING, logger="rte.files"):
        token = box.encrypt({"token": "t"})

    assert box.decrypt(token, connection_id="c") == {"token": "t"}
    assert mode(key_file) == 0o600
    assert any(f"file {key_file} was mode 0644" in record.getMessage() for record in caplog.records)


def test_rte_up_in_a_wide_existing_folder_keeps_everything_private(tmp_path: Path, usual_umask) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    ports = {"temporal": _free_port(), "ui": _free_port(), "api": _free_port()}
    command = [
        sys.executable, "-m", "rte", "up", "--data-dir", str(data), "--temporal-port", str(ports["temporal"]),
        "--ui-port", str(ports["ui"]), "--api-port", str(ports["api"]),
    ]  # fmt: skip
    env = os.environ | {"RTE_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}", "RTE_DATA_DIR": str(data)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{ports['api']}/health", process)
        entries = {path.relative_to(data).as_posix(): mode(path) for path in data.rglob("*")}
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)

    assert f"data folder {data} was mode 0755" in output.decode()
    assert mode(data) == 0o700
    assert entries["temporal.db"] == 0o600 and entries["rte.db"] == 0o600
    wide = {name: oct(bits) for name, bits in entries.items() if bits & 0o077}
    assert wide == {}, f"readable by other users: {wide}"



def test_an_existing_database_file_is_never_opened_beside_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing any descriptor of a database file drops every POSIX lock SQLite holds on it in this
    process (sqlite.org/howtocorrupt.html, 2.2); another process may then checkpoint and delete the
    WAL under open connections. Store.open tightens modes without ever opening an existing file."""
    from rte import private_files

    database = tmp_path / "rte.db"
    private_files.private_sqlite_file(database)  # created: the one open, before SQLite has it
    opened: list[str] = []
    real_open = os.open

    def recording_open(path: object, *args: object) -> int:
        descriptor = real_open(path, *args)  # type: ignore[arg-type]
        opened.append(str(path))  # only descriptors that were really opened
        return descriptor

    monkeypatch.setattr(os, "open", recording_open)
    private_files.private_sqlite_file(database)
    assert opened == []
    assert mode(database) == 0o600
