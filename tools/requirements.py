"""The acceptance criteria this project is held to, read from the repository's own table of them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CRITERIA_DOCUMENT = PROJECT_ROOT / "docs" / "criteria.md"
CRITERION_ID = re.compile(r"^R(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Criterion:
    id: str
    requirement: str
    text: str


def load_criteria(document: Path = CRITERIA_DOCUMENT) -> list[Criterion]:
    """Every row `| R<requirement>.<criterion> | <requirement> | <summary> |` of the table, in file order."""
    criteria: list[Criterion] = []
    for number, line in enumerate(document.read_text().splitlines(), start=1):
        if not line.startswith("| R"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        # A malformed row would silently drop a criterion, and with it the tests that cite it.
        if len(cells) != 3 or not CRITERION_ID.match(cells[0]) or not all(cells):
            raise ValueError(f"{document}:{number}: expected | R<n>.<m> | <requirement> | <summary> |, got {line!r}")
        criteria.append(Criterion(*cells))
    return criteria
