"""Compiler tests: definitions in, diagnostics, plans and artifacts out. No server needed."""

from __future__ import annotations

import textwrap

from workflows.compiler import Compilation, compile_source
from workflows.diagnostics import Diagnostic


def compile_yaml(text: str, filename: str = "flow.yaml") -> Compilation:
    return compile_source(textwrap.dedent(text).lstrip("\n"), filename)


def codes(compilation: Compilation) -> list[str]:
    return [diagnostic.code for diagnostic in compilation.diagnostics]


def the(compilation: Compilation, code: str) -> Diagnostic:
    """The one diagnostic with this code."""
    found = [d for d in compilation.diagnostics if d.code == code]
    assert len(found) == 1, compilation.diagnostics
    return found[0]
