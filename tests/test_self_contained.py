"""The repository alone is the project: a clone (as CodeBuild gets it) has everything its tests read."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from tests.support.codebuild import require_git_history
from tools.requirements import CRITERION_ID, PROJECT_ROOT, load_criteria

# A path that climbs out of the repository into the workspace it was written in.
OUTSIDE = re.compile(r"""\.\./shared\b|\bparents?\b[^\n/]*/\s*["']shared["']""")


def tracked_files() -> list[Path]:
    # Walking the tree instead would also read what make and npm created (.venv, node_modules), and
    # .gitignore does not say what was committed. In CodeBuild the whole suite runs from such a copy.
    require_git_history()
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    # A file another change deleted but has not yet committed is not part of the repository either.
    return [PROJECT_ROOT / name for name in listed.split("\0") if name and (PROJECT_ROOT / name).is_file()]


@pytest.mark.req("R6.5")
def test_no_tracked_file_but_documentation_reads_a_path_outside_the_repository() -> None:
    for known in (
        "../shared/seed/requirements.md",
        'PROJECT_ROOT.parent / "shared" / "seed"',
        "root.parents[1] / 'shared'",
    ):
        assert OUTSIDE.search(known), f"the pattern misses {known}"
    this_file = Path(__file__).resolve()
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}: {line.strip()}"
        for path in tracked_files()
        # Documentation may mention where things came from; this file spells the patterns out.
        if path.suffix != ".md" and path.relative_to(PROJECT_ROOT).parts[0] != "docs" and path != this_file
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
        if OUTSIDE.search(line)
    ]
    assert not offenders, "\n".join(offenders)


@pytest.mark.req("R6.5")
def test_the_criteria_come_from_the_repository_each_once_in_order_with_a_summary() -> None:
    criteria = load_criteria()
    assert len(criteria) == 68
    numbers = []
    for criterion in criteria:
        match = CRITERION_ID.match(criterion.id)
        assert match, criterion
        numbers.append((int(match.group(1)), int(match.group(2))))
        assert criterion.requirement and criterion.text, criterion
    assert all(earlier < later for earlier, later in pairwise(numbers)), "not strictly increasing"
    # No criterion skipped: each requirement counts 1, 2, 3... and keeps one title.
    by_requirement: dict[int, list[int]] = {}
    titles: dict[int, set[str]] = {}
    for (requirement, item), criterion in zip(numbers, criteria, strict=True):
        by_requirement.setdefault(requirement, []).append(item)
        titles.setdefault(requirement, set()).add(criterion.requirement)
    assert list(by_requirement) == list(range(1, len(by_requirement) + 1))
    assert all(items == list(range(1, len(items) + 1)) for items in by_requirement.values()), by_requirement
    assert all(len(names) == 1 for names in titles.values()), titles


def test_a_malformed_criteria_row_is_refused_not_skipped(tmp_path: Path) -> None:
    document = tmp_path / "criteria.md"
    document.write_text(
        "| id | requirement | summary |\n|---|---|---|\n| R1.1 | Backend | fine |\n| R1.2 | Backend |\n"
    )
    with pytest.raises(ValueError, match=r"criteria\.md:4: expected \| R<n>\.<m> \|"):
        load_criteria(document)


@pytest.mark.req("R6.5")
def test_a_copy_of_the_tracked_files_alone_collects_its_tests(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    for path in tracked_files():
        target = clone / path.relative_to(PROJECT_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    # Nothing may lead the copy back to this working tree: no PYTHONPATH, no outer pytest's state.
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/pipelines"],
        cwd=clone,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^\d+ tests collected", result.stdout, re.MULTILINE), result.stdout[-1000:]
