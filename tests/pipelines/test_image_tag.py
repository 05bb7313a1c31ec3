"""`bash pipelines/image_tag.sh`: the backend image's tag names its content, so unchanged content reuses the image."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tools.requirements import PROJECT_ROOT

# publish_image.sh's test for an immutable tag, and stacks/config.py's for CANVALO_IMAGE_TAG.
TAG = re.compile(r"^app-[0-9a-f]{64}$")


def checkout(target: Path) -> Path:
    """The files image_tag.sh reads, as a clean checkout holds them, and one the image never gets."""
    (target / "pipelines").mkdir(parents=True)
    shutil.copy2(PROJECT_ROOT / "pipelines" / "image_tag.sh", target / "pipelines" / "image_tag.sh")
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy2(PROJECT_ROOT / name, target / name)
    shutil.copytree(PROJECT_ROOT / "app", target / "app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".env"))
    (target / "docs").mkdir()
    (target / "docs" / "pipeline.md").write_text("# docs\n")
    return target


def tag_of(root: Path, base_image: str | None = None) -> str:
    environment = {"PATH": os.environ["PATH"], **({"BASE_IMAGE": base_image} if base_image is not None else {})}
    result = subprocess.run(
        ["bash", str(root / "pipelines" / "image_tag.sh")], capture_output=True, text=True, env=environment, check=True
    )
    return result.stdout.strip()


def write(path: str, text: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)

    return change


SAME_IMAGE = {
    "a docs change": write("docs/pipeline.md", "# docs, edited\n"),
    "an infrastructure change": write("stacks/network.py", "# new\n"),
    "bytecode of the app": write("app/__pycache__/main.cpython-311.pyc", "bytes"),
    "a local .env": write("app/.env", "SUPABASE_URL=http://localhost\n"),
}
NEW_IMAGE = {
    "a change to the app": write("app/main.py", "# changed\n"),
    "a new module": write("app/extra.py", "VALUE = 1\n"),
    "a dependency": write("uv.lock", "# another lock\n"),
    "the Dockerfile": write("app/Dockerfile", "FROM scratch\n"),
}


@pytest.mark.req("R1.1")
@pytest.mark.parametrize("what", list(SAME_IMAGE))
def test_what_the_image_does_not_contain_keeps_its_tag(tmp_path: Path, what: str) -> None:
    root = checkout(tmp_path / "repo")
    before = tag_of(root)
    assert TAG.match(before)
    SAME_IMAGE[what](root)
    assert tag_of(root) == before


@pytest.mark.req("R1.1")
@pytest.mark.parametrize("what", list(NEW_IMAGE))
def test_what_the_image_contains_changes_its_tag(tmp_path: Path, what: str) -> None:
    root = checkout(tmp_path / "repo")
    before = tag_of(root)
    NEW_IMAGE[what](root)
    assert tag_of(root) != before


@pytest.mark.req("R1.1")
def test_another_base_image_is_another_tag(tmp_path: Path) -> None:
    root = checkout(tmp_path / "repo")
    pinned = "public.ecr.aws/docker/library/python@sha256:" + "0" * 64
    assert tag_of(root, pinned) != tag_of(root) == tag_of(root, "")


def test_the_tag_is_one_the_publisher_and_the_configuration_accept() -> None:
    from stacks.config import IMAGE_TAG

    tag = tag_of(PROJECT_ROOT)
    assert TAG.match(tag) and IMAGE_TAG.match(tag)
