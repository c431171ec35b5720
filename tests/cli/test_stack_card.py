"""The stack card `rte up` leaves in its data folder, how commands read it, and the commands the
live view hints at — without a server (the end-to-end tests start real stacks)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rte.cli._common import settings_from
from rte.cli._format import parse_since
from rte.cli.progress import unblock_hints
from rte.cli.stack import StackCard, StaleCard, card_for, card_path, read_card, remove_card, write_card
from rte.config import Settings
from workflows.state import (
    ApprovalRequest,
    DebugState,
    ExecutionState,
    ExecutionStatus,
    PauseInfo,
    StepState,
    StepStatus,
)

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
def listening() -> Iterator[str]:
    """An address something listens on, like a running stack's Temporal port."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("RTE_"):
            monkeypatch.delenv(name)


def _stack(data_dir: Path, temporal_address: str, **fields: object) -> StackCard:
    settings = Settings(
        data_dir=data_dir,
        temporal_address=temporal_address,
        temporal_ui_url="http://127.0.0.1:18233",
        api_url="http://127.0.0.1:18000",
        task_queue="stack-queue",
        **fields,
    )
    card = card_for(settings)
    write_card(card, data_dir)
    return card


def test_the_card_is_private_and_names_every_address(tmp_path: Path, listening: str) -> None:
    card = _stack(tmp_path, listening)
    path = card_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_card(tmp_path) == card
    assert (card.temporal_address, card.temporal_ui_url, card.api_url, card.task_queue) == (
        listening, "http://127.0.0.1:18233", "http://127.0.0.1:18000", "stack-queue"
    )  # fmt: skip
    assert card.data_dir == str(tmp_path.resolve()) and card.pid == os.getpid()
    assert card.store == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'rte.db'}"


def test_secrets_never_enter_the_card(tmp_path: Path, listening: str) -> None:
    _stack(
        tmp_path,
        listening,
        database_url="postgresql+asyncpg://rte:hunter2@127.0.0.1/test",
        secret_key="c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldC1rZXk=",
    )
    text = card_path(tmp_path).read_text()
    assert "hunter2" not in text and "c2VjcmV0" not in text
    card = read_card(tmp_path)
    assert card is not None and card.store == "postgresql+asyncpg://rte:***@127.0.0.1/test"
    assert card.secret_key_fingerprint is not None


def test_a_card_left_by_a_dead_stack_is_stale(tmp_path: Path, listening: str) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    card = _stack(tmp_path, listening).model_copy(update={"pid": int(gone.stdout)})
    write_card(card, tmp_path)
    with pytest.raises(StaleCard, match="no longer running"):
        read_card(tmp_path)


def test_a_card_whose_temporal_port_is_closed_is_stale(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening
        _stack(tmp_path, address)
        with pytest.raises(StaleCard):
            read_card(tmp_path)


def test_a_damaged_card_is_stale_not_a_crash(tmp_path: Path) -> None:
    card_path(tmp_path).write_text("{not json")
    with pytest.raises(StaleCard, match="not a stack card"):
        read_card(tmp_path)
    assert read_card(tmp_path / "elsewhere") is None


def test_a_stack_removes_only_its_own_card(tmp_path: Path, listening: str) -> None:
    card = _stack(tmp_path, listening)
    write_card(card.model_copy(update={"pid": card.pid + 1}), tmp_path)  # a newer stack's
    remove_card(tmp_path)
    assert card_path(tmp_path).exists()
    write_card(card, tmp_path)
    remove_card(tmp_path)
    assert not card_path(tmp_path).exists()


@pytest.mark.usefixtures("clean_env")
def test_commands_take_the_running_stacks_addresses_from_its_data_folder(
    tmp_path: Path, listening: str
) -> None:
    _stack(tmp_path, listening)
    settings = settings_from(data_dir=tmp_path)
    assert (settings.temporal_address, settings.task_queue) == (listening, "stack-queue")
    assert (settings.temporal_ui_url, settings.api_url) == (
        "http://127.0.0.1:18233",
        "http://127.0.0.1:18000",
    )
    assert settings_from().temporal_address == "127.0.0.1:7233"  # ./.rte holds no card


@pytest.mark.usefixtures("clean_env")
def test_rte_data_dir_finds_the_stack_too(
    tmp_path: Path, listening: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stack(tmp_path, listening)
    monkeypatch.setenv("RTE_DATA_DIR", str(tmp_path))
    assert settings_from().temporal_address == listening


@pytest.mark.usefixtures("clean_env")
def test_flags_and_variables_win_over_the_card(
    tmp_path: Path, listening: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stack(tmp_path, listening)
    monkeypatch.setenv("RTE_TASK_QUEUE", "from-env")
    settings = settings_from(data_dir=tmp_path, temporal_address="127.0.0.1:1")
    assert (settings.temporal_address, settings.task_queue) == ("127.0.0.1:1", "from-env")
    assert settings.api_url == "http://127.0.0.1:18000"  # what neither sets still comes from the card


@pytest.mark.usefixtures("clean_env")
def test_a_stale_card_is_ignored_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card_path(tmp_path).write_text("{}")
    assert settings_from(data_dir=tmp_path).temporal_address == "127.0.0.1:7233"
    assert "is not a stack card written by `rte up`; ignoring it" in capsys.readouterr().err


def test_since_takes_a_duration_or_a_time() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("2026-11-28T09:00:00+00:00") == T0
    with pytest.raises(ValueError, match="--since takes a duration like 30m"):
        parse_since("yesterday")


def _state(
    steps: list[StepState], status: ExecutionStatus, debug: DebugState | None = None
) -> ExecutionState:
    return ExecutionState(
        execution_id="flow-1 x",
        run_id="r",
        definition_id="flow",
        definition_version="1",
        plan_hash="h",
        trigger="manual",
        status=status,
        started_at=T0,
        steps={step.path: step for step in steps},
        debug=debug or DebugState(),
    )


def test_the_live_view_names_the_command_that_unblocks_each_wait(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    where = f"--data-dir {tmp_path.resolve()}"
    approval = StepState(
        id="sign_off",
        path="flow/sign_off",
        kind="approval",
        status=StepStatus.WAITING,
        approval=ApprovalRequest(requested_at=T0),
    )
    failed = StepState(
        id="fetch", path="flow/fetch", kind="http", status=StepStatus.PAUSED, awaiting_decision=True
    )
    paused = DebugState(
        enabled=True,
        status="paused",
        paused=PauseInfo(
            step_path="flow/fetch", when="before", reason="breakpoint bp1", breakpoint_id="bp1", paused_at=T0
        ),
    )
    hints = unblock_hints(_state([approval, failed], ExecutionStatus.PAUSED, paused), settings)
    assert hints == [
        f"fetch is paused by the debugger (breakpoint bp1): rte debug continue 'flow-1 x' {where}"
        f"   (step by step: rte debug step-over 'flow-1 x' {where})",
        f"sign_off waits for approval: rte approve 'flow-1 x' sign_off {where}"
        f"   or: rte reject 'flow-1 x' sign_off {where}",
        f"fetch failed and waits for a decision: rte recover decide 'flow-1 x' fetch retry {where}"
        "   (or skip, or fail, in place of retry)",
    ]
    assert unblock_hints(_state([approval], ExecutionStatus.COMPLETED), settings) == []


def test_hints_use_the_full_path_when_an_id_is_ambiguous(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path("/"))  # ./.rte there is the default folder: no --data-dir in the hint
    outer = StepState(
        id="ok",
        path="flow/ok",
        kind="approval",
        status=StepStatus.WAITING,
        approval=ApprovalRequest(requested_at=T0),
    )
    inner = StepState(id="ok", path="flow/each/ok", kind="approval", status=StepStatus.PENDING)
    hints = unblock_hints(_state([outer, inner], ExecutionStatus.WAITING), Settings(data_dir=Path(".rte")))
    assert hints == [
        "flow/ok waits for approval: rte approve 'flow-1 x' flow/ok   or: rte reject 'flow-1 x' flow/ok"
    ]


@pytest.mark.usefixtures("clean_env")
def test_a_command_using_another_store_or_key_than_the_stack_is_warned(
    tmp_path: Path, listening: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rte.cli._common import _check_same_store

    _stack(tmp_path, listening, secret_key="c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldC1rZXk=")
    _check_same_store(settings_from(data_dir=tmp_path))
    warned = capsys.readouterr().err
    assert "encrypts connection secrets with RTE_SECRET_KEY, this command with the key file" in warned
    assert "uses the store" not in warned  # the same SQLite file

    monkeypatch.setenv("RTE_DATABASE_URL", "postgresql+asyncpg://rte:pw@127.0.0.1/other")
    monkeypatch.setenv("RTE_SECRET_KEY", "c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldC1rZXk=")
    _check_same_store(settings_from(data_dir=tmp_path))
    warned = capsys.readouterr().err
    assert (
        f"uses the store postgresql+asyncpg://rte:***@127.0.0.1/other, but the stack running on {tmp_path}"
        in warned
    )
    assert "pw@" not in warned  # the password is never printed
    assert "encrypts connection secrets" not in warned  # the same key
