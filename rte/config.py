"""Settings shared by the CLI, the worker and the API.

Every value comes from an `RTE_`-prefixed environment variable (or a flag that overrides it); the
defaults match what `rte up` starts, so a newcomer never has to set anything.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".rte")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTE_", extra="ignore")

    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="Folder for the Temporal database, the SQL store and keys."
    )
    temporal_address: str = Field("127.0.0.1:7233", description="host:port of the Temporal frontend.")
    namespace: str = "default"
    task_queue: str = "rte"
    script_task_queue: str | None = Field(
        None,
        description="Task queue of `script` steps, so sandbox-heavy work runs on workers of its own "
        "(`rte worker --kinds script`); unset: the main task queue.",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; defaults to a SQLite file in the data folder."
    )
    secret_key: str | None = Field(
        None,
        repr=False,
        description="Fernet key that encrypts connection secrets; defaults to a key file in the data folder.",
    )
    function_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Python modules the worker imports to register `python` step functions.",
    )
    max_concurrent_activities: int = 64
    worker_drain_s: float = Field(
        10.0,
        ge=0,
        description="On SIGTERM a worker stops polling and gives in-flight steps this long to finish; "
        "the rest are handed back to Temporal (retried on another worker).",
    )
    worker_health_file: Path | None = Field(
        None,
        description="Where a worker writes its health every few seconds, for `rte worker --check` "
        "(a container healthcheck); unset: no report.",
    )
    worker_metrics_address: str | None = Field(
        None,
        pattern=r"^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$",
        description="host:port where a worker serves the Temporal SDK's Prometheus metrics "
        "(`temporal_*`: polls, task latencies, slots), e.g. 127.0.0.1:9464; unset: none.",
        examples=["127.0.0.1:9464"],
    )
    temporal_ui_url: str = "http://127.0.0.1:8233"
    api_url: str = Field(
        "http://127.0.0.1:8000",
        description="Where the engine's API listens; http and ai steps may never call it.",
    )
    # The outbound policy of http and ai steps (activities/outbound_policy.py). Entries: an address
    # or CIDR, optionally with a port (`127.0.0.1:8080`, `[::1]:80`), or a host name[:port].
    outbound_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Loopback and private targets http/ai steps may reach (RTE_OUTBOUND_ALLOW, "
        "comma-separated); empty: public addresses only. Link-local and metadata addresses need an "
        "entry inside their own range.",
    )
    outbound_deny: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Targets http/ai steps may never reach, whatever else allows them (RTE_OUTBOUND_DENY).",
    )
    api_auth: bool = Field(
        True, description="Require API keys. Turn off (RTE_API_AUTH=false) only for local development."
    )
    api_max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Larger request bodies are refused with a 413."
    )
    payload_offload_bytes: int = Field(
        128 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Run parameters, step inputs and outputs larger than this are kept in the SQL store "
        "and carried through Temporal history as a reference (Temporal refuses payloads over 2 MB).",
    )
    # The script sandbox.
    sandbox_memory_mb: int = 256
    sandbox_cpu_seconds: int = 10
    sandbox_wall_seconds: float = 30.0
    sandbox_isolate_network: bool = True

    @field_validator("function_modules", "outbound_allow", "outbound_deny", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def step_task_queues(self) -> dict[str, str]:
        """Step kind → task queue, for the kinds that do not run on the main task queue (recorded in
        each execution's input at start)."""
        routed = {"script": self.script_task_queue}
        return {kind: queue for kind, queue in routed.items() if queue and queue != self.task_queue}

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'rte.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
