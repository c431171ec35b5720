"""`rte compile` and `rte schema` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rte.cli.compile_cmd import register

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def run(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, list(args))


def test_compile_prints_a_summary_and_exits_0(app: typer.Typer) -> None:
    result = run(app, "compile", str(EXAMPLES / "orders.yaml"))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "compiled" in result.stdout and "5 steps, 4 levels, parallel width 2" in result.stdout
    assert "critical path: fetch → score → route → notify" in result.stdout
    assert "plan hash: sha256:" in result.stdout
    for stage in ("parse", "schema", "references", "expressions", "graph", "plan", "preview"):
        assert stage in result.stdout


def test_compile_prints_diagnostics_like_a_compiler_and_exits_1(app: typer.Typer) -> None:
    path = FIXTURES / "unknown_need_and_bad_jq.yaml"
    result = run(app, "compile", str(path))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path}:10:13: error E103: step 'total' needs unknown step 'fetsh'"
    assert lines[1] == "    hint: did you mean 'fetch'?"
    assert lines[2].startswith(f"{path}:13:12: error E201: invalid jq: syntax error")
    assert "failed: 2 errors, 0 warnings" in result.stdout


def test_warnings_alone_do_not_fail(app: typer.Typer) -> None:
    result = run(app, "compile", str(FIXTURES / "unused_output.yaml"))
    assert result.exit_code == 0
    assert "warning W301" in result.stderr
    assert "0 errors, 1 warning" in result.stdout


def test_json_output_is_the_whole_compilation(app: typer.Typer) -> None:
    result = run(app, "compile", str(EXAMPLES / "hello.yaml"), "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["source_format"] == "native"
    assert [stage["name"] for stage in data["stages"]] == [
        "parse", "schema", "references", "expressions", "graph", "plan", "preview"
    ]  # fmt: skip
    assert data["plan"]["root"]["steps"][0]["with"] == {
        "text": "Hello, ${ .inputs.name }", "length": "${ .inputs.name | length }"
    }  # fmt: skip
    assert data["artifacts"]["plan_hash"] == data["plan"]["hash"]
    assert data["artifacts"]["mermaid"].startswith("flowchart TD")


def test_json_output_of_a_failed_compile_exits_1(app: typer.Typer) -> None:
    result = run(app, "compile", str(FIXTURES / "cycle_of_three.yaml"), "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["plan"] is None
    assert [d["code"] for d in data["diagnostics"]] == ["E301", "E302"]
    assert data["diagnostics"][0]["line"] == 10


def test_missing_file_exits_2_with_a_clear_message(app: typer.Typer, tmp_path: Path) -> None:
    result = run(app, "compile", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"rte compile: cannot read '{tmp_path / 'nope.yaml'}': No such file or directory"
    )


def test_a_directory_is_not_a_definition(app: typer.Typer, tmp_path: Path) -> None:
    result = run(app, "compile", str(tmp_path))
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_binary_file_is_reported_not_crashed_on(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_bytes(b"id: x\n\xff\xfe\x00")
    result = run(app, "compile", str(path))
    assert result.exit_code == 1
    assert "error E001: the file is not UTF-8 text" in result.stderr


def test_schema_prints_the_published_schema(app: typer.Typer) -> None:
    result = run(app, "schema")
    assert result.exit_code == 0
    published = (Path(__file__).resolve().parents[2] / "schemas" / "rte-workflow.schema.json").read_text()
    assert result.stdout == published
