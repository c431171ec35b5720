"""A small Gherkin reader for the conformance kit's feature files: features, scenarios, steps and
doc strings (`\"\"\"yaml … \"\"\"`). It refuses what it does not understand (Background, Scenario
Outline, tables) instead of guessing, so a new kind of scenario cannot pass unnoticed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

STEP_KEYWORDS = ("Given", "When", "Then", "And", "But", "*")
_DOC_DELIMITER = re.compile(r'^(\s*)("""|```)\s*([\w-]*)\s*$')


class GherkinError(ValueError):
    pass


@dataclass(frozen=True)
class Step:
    keyword: str
    text: str
    line: int
    doc: str | None = None
    doc_type: str | None = None


@dataclass
class Scenario:
    name: str
    line: int
    feature: str
    path: Path
    steps: list[Step] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.path.stem}: {self.name}"


@dataclass
class Feature:
    name: str
    path: Path
    scenarios: list[Scenario] = field(default_factory=list)


def parse_feature(text: str, path: Path) -> Feature:
    lines = text.splitlines()
    feature: Feature | None = None
    scenario: Scenario | None = None
    index = 0
    while index < len(lines):
        raw = lines[index]
        line = raw.strip()
        number = index + 1
        index += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("Feature:"):
            feature = Feature(line.removeprefix("Feature:").strip(), path)
            continue
        if feature is None:
            raise GherkinError(f"{path}:{number}: text before `Feature:`")
        if line.startswith(
            ("Background:", "Scenario Outline:", "Scenario Template:", "Examples:", "Rule:", "|")
        ):
            raise GherkinError(f"{path}:{number}: `{line.split(':')[0]}` is not supported by this reader")
        if line.startswith(("Scenario:", "Example:")):
            scenario = Scenario(line.split(":", 1)[1].strip(), number, feature.name, path)
            feature.scenarios.append(scenario)
            continue
        keyword = next((k for k in STEP_KEYWORDS if line == k or line.startswith(k + " ")), None)
        if keyword is None:
            if scenario is None:
                continue  # the feature's free-text description
            raise GherkinError(f"{path}:{number}: expected a step, found {line!r}")
        if scenario is None:
            raise GherkinError(f"{path}:{number}: a step outside a scenario")
        doc, doc_type, index = _doc_string(lines, index, path)
        scenario.steps.append(Step(keyword, line[len(keyword) :].strip(), number, doc, doc_type))
    if feature is None:
        raise GherkinError(f"{path}: no `Feature:`")
    return feature


def _doc_string(lines: list[str], index: int, path: Path) -> tuple[str | None, str | None, int]:
    """The doc string that follows a step, if any: its text (the opening delimiter's indentation
    removed from every line), its content type, and the index of the line after it."""
    while index < len(lines) and not lines[index].strip():
        index += 1
    opening = _DOC_DELIMITER.match(lines[index]) if index < len(lines) else None
    if opening is None:
        return None, None, index
    indent, delimiter, content_type = opening.group(1), opening.group(2), opening.group(3) or None
    body: list[str] = []
    for position in range(index + 1, len(lines)):
        if lines[position].strip() == delimiter:
            return "\n".join(body), content_type, position + 1
        line = lines[position]
        body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
    raise GherkinError(f"{path}:{index + 1}: the doc string is not closed")


def load_features(folder: Path) -> list[Feature]:
    return [parse_feature(path.read_text(), path) for path in sorted(folder.glob("*.feature"))]
