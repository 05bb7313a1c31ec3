"""The acceptance criteria of the requirements document, read from the document itself."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS_DOCUMENT = PROJECT_ROOT.parent / "shared" / "seed" / "requirements.md"
CRITERION_ID = re.compile(r"^R(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Criterion:
    id: str
    requirement: str
    text: str


def load_criteria(document: Path = REQUIREMENTS_DOCUMENT) -> list[Criterion]:
    """Every numbered acceptance criterion, as R<requirement>.<criterion>, in document order."""
    criteria: list[Criterion] = []
    requirement_number, requirement_title, in_criteria = "", "", False
    for line in document.read_text().splitlines():
        heading = re.match(r"^### Requirement (\d+): (.+)$", line)
        if heading:
            requirement_number, requirement_title, in_criteria = heading.group(1), heading.group(2), False
            continue
        if line.startswith("#### Acceptance Criteria"):
            in_criteria = True
            continue
        item = re.match(r"^(\d+)\. (.+)$", line)
        if in_criteria and item and requirement_number:
            criteria.append(Criterion(f"R{requirement_number}.{item.group(1)}", requirement_title, item.group(2)))
    return criteria
