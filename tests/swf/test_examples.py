"""The spec's 66 example definitions through the compiler: those inside the supported subset compile,
the others fail with "unsupported" diagnostics (E110) only — each naming the construct, with its
line and a hint — and none crashes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.swf.conftest import CORPUS_MISSING, corpus_files
from workflows.compiler import Compilation, compile_file

EXAMPLES = corpus_files("examples", "*.yaml")
_MISSING = [pytest.param(None, marks=pytest.mark.skip(reason=CORPUS_MISSING), id="corpus-missing")]

# The examples the engine runs. Everything else needs events, containers, shells, scripts, gRPC,
# OpenAPI, AsyncAPI, MCP, OAuth2/OIDC, catalogs, extensions or schedules.
IN_SUBSET = {
    "authentication-bearer-uri-format",
    "authentication-bearer",
    "authentication-reusable",
    "call-custom-function-inline",
    "call-http-endpoint-interpolation-shorthand",
    "call-http-endpoint-interpolation",
    "call-http-query-headers-expressions",
    "call-http-query-parameters",
    "call-http-redirect",
    "conditional-task",
    "do-multiple",
    "do-single",
    "fork",
    "raise-inline",
    "raise-reusable",
    "run-subflow",
    "star-wars-homeworld",
    "switch-then-string",
    "try-catch-retry-inline",
    "try-catch-retry-reusable",
    "try-catch",
    "wait-duration-inline",
    "wait-duration-iso8601",
}


def outcome_of(compilation: Compilation) -> str:
    errors = [d for d in compilation.diagnostics if d.severity == "error"]
    if compilation.ok:
        return "compiled"
    return "unsupported" if errors and all(d.code == "E110" for d in errors) else "other"


@pytest.mark.parametrize(
    "path", EXAMPLES or _MISSING, ids=lambda path: path.stem if path else "corpus-missing"
)
def test_example_compiles_or_is_reported_unsupported(path: Path) -> None:
    compilation = compile_file(path)
    assert compilation.source_format == "swf"
    if path.stem in IN_SUBSET:
        assert outcome_of(compilation) == "compiled", compilation.diagnostics
        assert compilation.plan is not None and compilation.plan.root.mode == "sequence"
        assert compilation.artifacts is not None
    else:
        assert outcome_of(compilation) == "unsupported", compilation.diagnostics
        for diagnostic in compilation.errors:
            assert diagnostic.message.startswith("not supported: ")
            assert diagnostic.line is not None and diagnostic.hint


@pytest.mark.skipif(not EXAMPLES, reason=CORPUS_MISSING)
def test_examples_split_into_23_compiled_and_43_unsupported_and_nothing_else() -> None:
    counts = Counter(outcome_of(compile_file(path)) for path in EXAMPLES)
    assert len(EXAMPLES) == 66
    assert counts == {"compiled": 23, "unsupported": 43}


@pytest.mark.skipif(not EXAMPLES, reason=CORPUS_MISSING)
def test_unsupported_diagnostics_point_at_the_construct() -> None:
    by_name = {path.stem: path for path in EXAMPLES}
    listen = compile_file(by_name["accumulate-room-readings"])
    assert [(d.line, d.message.split(" (")[0]) for d in listen.errors] == [
        (8, "not supported: `listen` tasks"),
        (31, "not supported: `call: openapi`"),
        (37, "not supported: `call: openapi`"),
    ]
    script = compile_file(by_name["run-script-with-stdin-and-arguments"]).errors[0]
    assert "`run: script`" in script.message and "sandbox" in (script.hint or "")
    emit = compile_file(by_name["emit"]).errors[0]
    assert "signals" in (emit.hint or "") and emit.path == "/do/0/emitEvent/emit"
