"""Where an admin binds a connection's credentials: `config.allowed_origins`, validated and stored
in canonical form, through the API and the CLI."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

from rte.config import Settings
from rte.store import Store
from rte.store.api_keys import Role
from tests.api.conftest import ApiServer

ROOT = Path(__file__).resolve().parents[2]


def new_id() -> str:
    return f"origins-{uuid.uuid4().hex[:8]}"


async def test_allowed_origins_are_stored_canonical(api_server: ApiServer) -> None:
    body = {
        "type": "bearer",
        "config": {
            "base_url": "https://api.example.com/v2",
            "allowed_origins": [
                "HTTPS://API.Example.com:443/",
                "https://eu.example.com:8443",
                "http://[::1]:9000",
            ],
        },
        "secret": {"token": "t0k3n"},
    }
    async with api_server.client(Role.ADMIN) as admin:
        put = await admin.put(f"/connections/{new_id()}", json=body)
    assert put.status_code == 200, put.text
    assert put.json()["config"]["allowed_origins"] == [
        "https://api.example.com",
        "https://eu.example.com:8443",
        "http://[::1]:9000",
    ]


@pytest.mark.parametrize(
    ("origins", "problem"),
    [
        (["https://api.example.com/path"], "no path, query or user info"),
        (["https://user@api.example.com"], "no path, query or user info"),
        (["ftp://files.example.com"], "http(s) URL with a host"),
        ([], "must list origins"),
        ("", "must list origins"),
        (["https://other.example.com"], "not among its allowed_origins"),
    ],
)
async def test_bad_allowed_origins_are_a_422_naming_the_problem(
    api_server: ApiServer, origins: object, problem: str
) -> None:
    body = {
        "type": "bearer",
        "config": {"base_url": "https://api.example.com", "allowed_origins": origins},
        "secret": {"token": "t0k3n"},
    }
    async with api_server.client(Role.ADMIN) as admin:
        put = await admin.put(f"/connections/{new_id()}", json=body)
    assert put.status_code == 422, put.text
    assert problem in put.json()["detail"]


async def test_the_cli_takes_allowed_origins_comma_separated(tmp_path: Path) -> None:
    env = os.environ | {"RTE_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rte", "connections", "set", "crm", "--type", "bearer",
        "--config", "allowed_origins=https://crm.example.com,https://eu.crm.example.com:8443",
        "--secret", "token=-", env=env, cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(b"tok-cli-secret\n"), 60)
    assert process.returncode == 0, stderr.decode()
    assert b"tok-cli-secret" not in stderr
    store = await Store.open(Settings(data_dir=tmp_path))
    try:
        info = await store.connections.get_public("crm")
    finally:
        await store.close()
    assert info is not None
    assert info.config["allowed_origins"] == ["https://crm.example.com", "https://eu.crm.example.com:8443"]
