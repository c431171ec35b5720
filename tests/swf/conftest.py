"""The Serverless Workflow corpus (schema, examples, conformance kit) read from `../shared/`, and the
local stand-in for the public services the conformance kit calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.swf.services import PublicServices

# The repository's clone sits next to a copy of shared/ (here /work/main and /work/shared).
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "serverless-workflow"
CORPUS_MISSING = f"the Serverless Workflow corpus is not at {CORPUS} (it comes with ../shared/)"


def corpus_files(folder: str, pattern: str) -> list[Path]:
    """The corpus files, or an empty list when the corpus is absent (the tests then skip)."""
    return sorted((CORPUS / folder).glob(pattern)) if CORPUS.is_dir() else []


@pytest.fixture
def public_services() -> Iterator[PublicServices]:
    services = PublicServices().start()
    yield services
    services.stop()
