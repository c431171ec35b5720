"""Each fixture is a small definition named for the problem it shows; its `# expect:` lines list
every diagnostic a user sees, as `CODE LINE:COLUMN message | hint`."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflows.compiler import compile_file
from workflows.diagnostics import format_diagnostic

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.yaml"))


def expectations(path: Path) -> list[tuple[str, str, str]]:
    found = []
    for line in path.read_text().splitlines():
        if line.startswith("# expect: "):
            code, position, text = line.removeprefix("# expect: ").split(" ", 2)
            found.append((code, position, text))
    return found


@pytest.mark.parametrize("path", FIXTURES, ids=[path.stem for path in FIXTURES])
def test_fixture_reports_exactly_the_expected_diagnostics(path: Path) -> None:
    compilation = compile_file(path)
    expected = expectations(path)
    assert expected, f"{path.name} has no `# expect:` lines"
    actual = [
        (d.code, f"{d.line}:{d.column}", d.message + (f" | {d.hint}" if d.hint else ""))
        for d in compilation.diagnostics
    ]
    assert [(code, position) for code, position, _ in actual] == [(c, p) for c, p, _ in expected]
    for (_, _, text), (_, _, wanted) in zip(actual, expected, strict=True):
        assert wanted in text
    errors = [d for d in compilation.diagnostics if d.severity == "error"]
    assert compilation.ok is not bool(errors)
    assert (compilation.plan is None) is bool(errors)


def test_fixture_lines_print_like_a_compiler() -> None:
    compilation = compile_file(FIXTURES[0])
    printed = format_diagnostic(compilation.diagnostics[0], "flow.yaml")
    code, position, _ = expectations(FIXTURES[0])[0]
    assert printed.startswith(f"flow.yaml:{position}: error {code}: ")
