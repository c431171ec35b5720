"""Static checks of the production-shaped stack (no Docker engine here): docker-compose.yml and the
Dockerfile must agree with the code they deploy."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ruamel.yaml import YAML

from rte.config import Settings
from rte.temporal import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())


def test_every_dependency_names_a_service_and_conditions_are_valid() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert spec["condition"] in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"


def test_engine_environment_names_only_real_settings() -> None:
    compose = _compose()
    fields = {f"RTE_{name.upper()}" for name in Settings.model_fields}
    for name in ("worker", "api"):
        environment = compose["services"][name]["environment"]
        assert set(environment) <= fields, set(environment) - fields
        assert environment["RTE_DATABASE_URL"].startswith("postgresql+asyncpg://")


def test_search_attributes_registered_match_the_engine() -> None:
    command = " ".join(_compose()["services"]["temporal-setup"]["command"])
    registered = dict(re.findall(r"(Rte\w+)=(\w+)", command))
    expected = {key.name for key in SEARCH_ATTRIBUTES}
    assert set(registered) == expected


def test_image_contains_every_package_the_project_installs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) ", dockerfile, re.MULTILINE))
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"
    ]
    assert {pattern.rstrip("*") for pattern in packages} <= copied
    for name in ("worker", "api"):
        assert _compose()["services"][name]["build"] == "."
