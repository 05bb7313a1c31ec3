"""What the pipeline's Test action lacks, detected rather than assumed, and how a test that needs it bows out.

The Test action gets the commit as a CODE_ZIP (no `.git`) in a non-privileged container (no
CAP_SYS_ADMIN, so no mount namespaces). A test needing either skips there with one line saying why;
CI (a real clone, as root) has both and must run it, so under CI outside CodeBuild a missing one fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tools.requirements import PROJECT_ROOT


def skip_unless(missing: str | None, *, environ: dict[str, str] | None = None) -> None:
    """Skip with `missing` as the reason when it is not None; under CI outside CodeBuild, fail instead."""
    if missing is None:
        return
    environ = dict(os.environ) if environ is None else environ
    # CodeBuild's Test action sets CI too (test.yml), and is the one CI-like place expected to lack these.
    if environ.get("CI") and not environ.get("CODEBUILD_BUILD_ID"):
        pytest.fail(f"{missing} (CI runs in a git clone as root and must have it)")
    pytest.skip(missing)


@cache
def missing_git_history(root: Path = PROJECT_ROOT) -> str | None:
    if shutil.which("git") is None:
        return "no git command: CodeBuild's CODE_ZIP source has no history to read; CI runs this"
    # Not merely "some .git": an unpacked zip inside another repository would list that one's files.
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True, timeout=30, check=False
    )
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
        return "no .git: CodeBuild's CODE_ZIP source has no history; CI runs this"
    return None


@cache
def missing_mount_namespace() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare (util-linux): the rehearsal's builds need a private mount namespace; CI runs this"
    # The rehearsal's builds run in `unshare --mount`; a container without CAP_SYS_ADMIN refuses it.
    probe = subprocess.run(
        ["unshare", "--mount", "--fork", "true"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        detail = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"exit {probe.returncode}"
        return (
            f"no mount namespace ({detail}): a non-privileged container such as CodeBuild's lacks CAP_SYS_ADMIN;"
            " CI runs this"
        )
    return None


def require_git_history() -> None:
    skip_unless(missing_git_history())


def require_mount_namespace() -> None:
    skip_unless(missing_mount_namespace())


@cache
def missing_capsh() -> str | None:
    if shutil.which("capsh") is None:
        return "no capsh: install Debian's libcap2-bin (.ci/run does)"
    # Dropping a capability from the bounding set needs CAP_SETPCAP (root).
    probe = subprocess.run(
        ["capsh", "--drop=cap_sys_admin", "--", "-c", "true"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        return f"capsh cannot drop cap_sys_admin here (not root?): {probe.stderr.strip()}"
    return None


def output_of(command: list[str]) -> str:
    """What `command`, run from the project root, prints; a failure fails the test with its own error."""
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
