"""The production stack (docker-compose.yml, the Dockerfile, deploy/): no Docker engine runs here, so
its invariants are checked statically, and the parts that can run without Docker run for real — the
worker healthcheck against a real worker, the Temporal setup script against a real server, the
PostgreSQL init script against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import signal
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from ruamel.yaml import YAML
from temporalio.client import Client

from rte.config import Settings
from rte.store import Store
from rte.store.api_keys import Role
from rte.temporal import SEARCH_ATTRIBUTES, find_temporal_binary
from tests.store.conftest import POSTGRES_URL, SKIP_POSTGRES, _asyncpg_dsn
from tests.support.processes import engine_env, start_worker, stop, wait_until
from worker.main import DRAIN_MARGIN_S

ROOT = Path(__file__).resolve().parents[1]
# Free slots of Temporal's SQL visibility store (PostgreSQL v12 schema) per attribute type.
SQL_VISIBILITY_SLOTS = {"Keyword": 10, "Int": 3, "Bool": 3, "Double": 3, "Datetime": 3, "Text": 3}
INTERPOLATION = re.compile(r"(?<!\$)\$\{([^}]*)\}")
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|_KEY$", re.IGNORECASE)


def _compose() -> dict[str, Any]:
    return YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())


def _services() -> dict[str, Any]:
    return _compose()["services"]


def _engine_services() -> dict[str, Any]:
    return {name: service for name, service in _services().items() if service.get("build") == "."}


def _temporal_versions() -> dict[str, str]:
    """What the tests run: `temporal version 1.9.1 (Server 1.32.0, UI 2.54.1)`."""
    out = subprocess.run(
        [find_temporal_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"(Server|UI) (\d+\.\d+\.\d+)", out))


def _tag(image: str) -> str:
    return image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""


def _scalars(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [text for value in node.values() for text in _scalars(value)]
    if isinstance(node, list):
        return [text for value in node for text in _scalars(value)]
    return [node] if isinstance(node, str) else []


def test_the_file_parses_and_every_dependency_names_a_service() -> None:
    services = _services()
    assert {
        "postgres",
        "temporal-schema",
        "temporal",
        "temporal-setup",
        "temporal-ui",
        "worker",
        "api",
    } <= set(services)
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert spec["condition"] in {"service_healthy", "service_completed_successfully"}, name
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"


def test_every_image_is_pinned_to_a_version() -> None:
    project_version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in _services().items():
        image = service.get("image")
        assert image, f"{name} names no image"
        assert "@sha256:" in image or re.fullmatch(r"\d+\.\d+(\.\d+)?(-[\w.-]+)?", _tag(image)), (
            f"{name}: {image} is not pinned to a full version"
        )
        if service.get("build"):
            assert _tag(image) == project_version, f"{name}: the built image is tagged {image}"
    base = re.search(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert base and re.fullmatch(r"\d+\.\d+\.\d+(-[\w.-]+)?", _tag(base.group(1))), base  # Python's patch too


def test_temporal_images_are_the_versions_the_tests_run_against() -> None:
    versions = _temporal_versions()
    images = {service["image"].rsplit(":", 1)[0]: _tag(service["image"]) for service in _services().values()}
    assert images["temporalio/server"] == versions["Server"]
    assert images["temporalio/admin-tools"] == versions["Server"]
    assert images["temporalio/ui"] == versions["UI"]
    # Production images only: auto-setup is for development and testing.
    assert "temporalio/auto-setup" not in images


def test_nothing_is_published_beyond_localhost_without_a_reason() -> None:
    for name, service in _services().items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else _host_ip(str(port))
            if host_ip not in ("127.0.0.1", "::1"):
                assert service.get("x-public-reason"), f"{name} publishes {port} beyond localhost"


def _host_ip(port: str) -> str | None:
    parts = port.split(":")
    return parts[0] if len(parts) == 3 else None  # HOST_IP:HOST_PORT:CONTAINER_PORT


def test_every_service_has_a_healthcheck_and_one_shot_jobs_gate_their_dependents() -> None:
    services = _services()
    gated = {
        dependency
        for service in services.values()
        for dependency, spec in (service.get("depends_on") or {}).items()
        if spec["condition"] == "service_completed_successfully"
    }
    for name, service in services.items():
        if service.get("restart") == "no":
            # A job: its exit code is its health, and what needs it waits for its success.
            assert name in gated, f"{name} is a one-shot job nothing waits for"
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "rte", "worker", "--check"]
    assert services["script-worker"]["healthcheck"]["test"] == ["CMD", "rte", "worker", "--check"]


def test_no_credentials_in_the_file_and_every_variable_is_required() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    variables = INTERPOLATION.findall(text)
    assert variables, "secrets come from the environment"
    for variable in variables:
        assert re.fullmatch(r"[A-Z_]+:\?.+", variable), f"${{{variable}}} must be required with :?"
    for name, service in _services().items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (
                    f"{name}: {key} is not from the environment"
                )
    for scalar in _scalars(_compose()):
        for userinfo in re.findall(r"://([^/@\s]+)@", scalar):
            password = userinfo.partition(":")[2]
            assert INTERPOLATION.fullmatch(password), f"a literal password in {scalar}"


def test_temporal_and_the_engine_use_separate_database_users() -> None:
    services = _services()
    temporal_user = services["temporal"]["environment"]["POSTGRES_USER"]
    engine_user = re.match(
        r"postgresql\+asyncpg://([^:]+):", services["api"]["environment"]["RTE_DATABASE_URL"]
    ).group(1)  # type: ignore[union-attr]
    assert len({temporal_user, engine_user, "postgres"}) == 3
    assert services["temporal-schema"]["command"][0].count(f"-u {temporal_user}") == 2
    mounted = [volume.split(":")[0] for volume in services["postgres"]["volumes"]]
    assert "./deploy/postgres-init.sh" in mounted


def test_setup_steps_fail_when_they_fail() -> None:
    setup = _services()["temporal-setup"]
    texts = [
        (ROOT / "docker-compose.yml").read_text(),
        *(path.read_text() for path in (ROOT / "deploy").iterdir()),
    ]
    for text in texts:
        assert "|| true" not in text and "tctl" not in text
    assert setup["entrypoint"] == ["/bin/sh", "/deploy/temporal-setup.sh"]
    assert "set -eu" in (ROOT / "deploy" / "temporal-setup.sh").read_text()
    assert _services()["temporal-schema"]["entrypoint"] == ["/bin/sh", "-euc"]
    for volume in (volume for service in _services().values() for volume in service.get("volumes", [])):
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).is_file(), f"{source} is mounted but missing"
            if source.endswith(".sh"):
                assert os.access(ROOT / source, os.X_OK), f"{source} must be executable"


def test_search_attributes_registered_match_the_engine_and_fit_sql_visibility() -> None:
    registered = dict(pair.split("=") for pair in _services()["temporal-setup"]["command"])
    types = {"KEYWORD": "Keyword", "INT": "Int", "TEXT": "Text", "BOOL": "Bool"}
    expected = {
        key.name: types[key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")]
        for key in SEARCH_ATTRIBUTES
    }
    assert registered == expected
    for kind in set(registered.values()):
        used = sum(1 for value in registered.values() if value == kind)
        assert used <= SQL_VISIBILITY_SLOTS[kind], (
            f"{used} {kind} attributes; SQL visibility has {SQL_VISIBILITY_SLOTS[kind]}"
        )


def test_engine_environment_names_only_real_settings() -> None:
    fields = {f"RTE_{name.upper()}" for name in Settings.model_fields}
    for name, service in _engine_services().items():
        environment = service["environment"]
        assert set(environment) <= fields, (name, set(environment) - fields)
        assert environment["RTE_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert str(environment.get("RTE_API_AUTH", "true")).lower() != "false", name
    # Only the processes that decrypt connection secrets hold the key.
    assert "RTE_SECRET_KEY" not in _services()["script-worker"]["environment"]
    routed = Settings(
        **{
            "task_queue": "rte",
            "script_task_queue": _services()["api"]["environment"]["RTE_SCRIPT_TASK_QUEUE"],
        }
    )
    assert routed.step_task_queues() == {"script": "rte-scripts"}
    assert "--kinds" in _services()["script-worker"]["command"]


def test_the_outbound_allow_list_opens_no_loopback_or_private_range() -> None:
    for name, service in _engine_services().items():
        assert "RTE_OUTBOUND_ALLOW" in service["environment"], f"{name}: state the outbound policy"
        allowed = str(service["environment"]["RTE_OUTBOUND_ALLOW"])
        for entry in filter(None, (part.strip() for part in allowed.split(","))):
            network = _allowed_network(entry)
            assert network is not None, f"{name} allows {entry}: name an address or range the test can check"
            assert not (network.is_loopback or network.is_private or network.is_link_local), (
                f"{name} allows {entry}"
            )


def _allowed_network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The range of an allow-list entry (`10.0.0.0/8`, `127.0.0.1:8080`, `[::1]:80`, `::1`)."""
    if entry.startswith("["):
        host = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        host = entry.partition(":")[0]
    else:
        host = entry
    try:
        return ipaddress.ip_network(host, strict=False)
    except ValueError:
        return None  # a host name: it could resolve anywhere


def test_workers_get_time_to_drain_before_docker_kills_them() -> None:
    for name in ("worker", "script-worker"):
        service = _services()[name]
        grace = int(re.fullmatch(r"(\d+)s", service["stop_grace_period"]).group(1))  # type: ignore[union-attr]
        assert grace >= float(service["environment"]["RTE_WORKER_DRAIN_S"]) + DRAIN_MARGIN_S, name


def test_image_contains_every_package_and_runs_as_a_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) ", dockerfile, re.MULTILINE))
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"
    ]
    assert {pattern.rstrip("*") for pattern in packages} <= copied
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)


def test_the_first_api_key_step_is_documented() -> None:
    step = "docker compose exec api rte keys create"
    assert step in (ROOT / "docs" / "deployment.md").read_text()
    assert step in (ROOT / "docker-compose.yml").read_text()


# The parts that run without Docker.


async def test_worker_healthcheck_reports_a_real_worker_and_fails_once_it_is_gone(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    health = tmp_path / "worker.health"
    env = engine_env(
        client.service_client.config.target_host,
        settings.data_dir,
        f"health-{uuid.uuid4()}",
        RTE_WORKER_HEALTH_FILE=str(health),
    )
    command = _services()["worker"]["healthcheck"]["test"][1:]  # ["rte", "worker", "--check"]

    async def check(*extra: str) -> subprocess.CompletedProcess[str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            *command,
            *extra,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        return subprocess.CompletedProcess(command, process.returncode or 0, out.decode(), "")

    assert (await check()).returncode == 1  # nothing runs yet
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        healthy = await wait_until(lambda: _passes(check()), 90, "the worker reporting healthy")
        assert f"pid {worker.pid}" in healthy.stdout
        worker.send_signal(signal.SIGKILL)  # a dead worker leaves its last report behind…
        worker.wait()
        await asyncio.sleep(3)
        stale = await check("--max-age", "2")
        assert stale.returncode == 1 and "stuck or gone" in stale.stdout  # …which goes stale
        worker = start_worker(env, tmp_path / "worker.log")
        await wait_until(
            lambda: _passes(check(), f"pid {worker.pid}"), 90, "the new worker reporting healthy"
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
        assert (await check()).returncode == 1  # a stopped worker withdraws its report
    finally:
        stop(worker)


async def _passes(result: Any, saying: str = "") -> subprocess.CompletedProcess[str] | None:
    done = await result
    return done if done.returncode == 0 and saying in done.stdout else None


async def test_temporal_setup_registers_idempotently_and_fails_on_a_conflict(client: Client) -> None:
    namespace = f"setup-{uuid.uuid4().hex[:8]}"
    pairs = _services()["temporal-setup"]["command"]
    env = os.environ | {
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "NAMESPACE": namespace,
        "PATH": f"{Path(find_temporal_binary()).parent}{os.pathsep}{os.environ['PATH']}",
        "RETRY_DELAY_S": "1",
    }
    script = str(ROOT / "deploy" / "temporal-setup.sh")
    first = await _sh(script, *pairs, env=env)
    assert first.returncode == 0, first.stdout
    assert f"namespace {namespace}: created" in first.stdout
    again = await _sh(script, *pairs, env=env)
    assert again.returncode == 0, again.stdout
    assert again.stdout.count("already registered") == len(pairs)
    listed = await _sh(
        find_temporal_binary(), "operator", "search-attribute", "list", "--namespace", namespace, env=env
    )
    assert all(pair.split("=")[0] in listed.stdout for pair in pairs)
    conflict = await _sh(script, "RteItemsTotal=Keyword", env=env | {"RETRIES": "2"})
    assert conflict.returncode == 1
    assert "RteItemsTotal is registered as INT, but the engine needs Keyword" in conflict.stdout
    unreachable = await _sh(script, *pairs, env=env | {"TEMPORAL_ADDRESS": "127.0.0.1:9", "RETRIES": "2"})
    assert unreachable.returncode != 0 and "failed after 2 attempts" in unreachable.stdout


async def _sh(*command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    program = ["sh", *command] if command[0].endswith(".sh") else list(command)
    process = await asyncio.create_subprocess_exec(
        *program, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    return subprocess.CompletedProcess(program, process.returncode or 0, out.decode(), "")


@pytest.mark.skipif(SKIP_POSTGRES, reason="RTE_TEST_SKIP_POSTGRES=1")
async def test_postgres_init_makes_two_users_that_cannot_reach_each_others_databases(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    names = {
        "TEMPORAL_DB_USER": f"temporal_{suffix}",
        "TEMPORAL_DB_NAME": f"temporal_{suffix}",
        "TEMPORAL_VISIBILITY_DB_NAME": f"temporal_visibility_{suffix}",
        "RTE_DB_USER": f"rte_{suffix}",
        "RTE_DB_NAME": f"rte_{suffix}",
    }
    admin_dsn = _asyncpg_dsn(POSTGRES_URL)
    env = (
        os.environ
        | names
        | {
            "TEMPORAL_DB_PASSWORD": 'it\'s "quoted"; DROP ROLE x; --',  # quoting holds
            "RTE_DB_PASSWORD": f"pw{suffix}",
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": "test",
            "PGHOST": "127.0.0.1",
        }
    )
    try:
        created = await _sh(str(ROOT / "deploy" / "postgres-init.sh"), env=env)
        assert created.returncode == 0, created.stdout
        admin = await asyncpg.connect(admin_dsn)
        try:
            roles = await admin.fetch(
                "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = ANY($1)",
                [names["TEMPORAL_DB_USER"], names["RTE_DB_USER"]],
            )
        finally:
            await admin.close()
        assert len(roles) == 2 and not any(
            role["rolsuper"] or role["rolcreatedb"] or role["rolcreaterole"] for role in roles
        )
        rte_dsn = f"postgresql://{names['RTE_DB_USER']}@127.0.0.1:5432/{names['RTE_DB_NAME']}"
        for user, database in (
            (names["RTE_DB_USER"], names["TEMPORAL_DB_NAME"]),
            (names["TEMPORAL_DB_USER"], names["RTE_DB_NAME"]),
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await asyncpg.connect(f"postgresql://{user}@127.0.0.1:5432/{database}")
        # The engine's store migrates and works as its own user in its own database.
        store = await Store.open(
            Settings(
                _env_file=None,
                data_dir=tmp_path,
                database_url=rte_dsn.replace("postgresql://", "postgresql+asyncpg://"),
            )
        )
        try:
            assert (await store.api_keys.create("deploy check", Role.ADMIN)).key
        finally:
            await store.close()
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            for database in (
                names["TEMPORAL_DB_NAME"],
                names["TEMPORAL_VISIBILITY_DB_NAME"],
                names["RTE_DB_NAME"],
            ):
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for role in (names["TEMPORAL_DB_USER"], names["RTE_DB_USER"]):
                await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await admin.close()
