"""A test needing what the pipeline's Test action lacks (git history, mount namespaces) skips only there."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.codebuild import (
    missing_capsh,
    missing_git_history,
    missing_mount_namespace,
    output_of,
    skip_unless,
)


@pytest.mark.req("R10.1")
def test_a_missing_capability_skips_in_codebuild_and_locally_but_fails_under_other_ci() -> None:
    skip_unless(None, environ={"CI": "true"})
    with pytest.raises(pytest.skip.Exception, match=r"no \.git"):
        skip_unless("no .git", environ={"CI": "true", "CODEBUILD_BUILD_ID": "canvalo-beta-pipeline-test:1"})
    with pytest.raises(pytest.skip.Exception, match=r"no \.git"):
        skip_unless("no .git", environ={})
    with pytest.raises(pytest.fail.Exception, match="CI runs in a git clone"):
        skip_unless("no .git", environ={"CI": "true"})


@pytest.mark.req("R10.1")
def test_git_history_is_detected_only_at_the_repositorys_own_top(tmp_path: Path) -> None:
    skip_unless(None if shutil.which("git") else "no git command to make a repository with")
    # Separate folders: the answer is cached per folder, as the checkout does not change under a run.
    (tmp_path / "plain").mkdir()
    assert missing_git_history(tmp_path / "plain") is not None, "a folder without .git"
    repository = tmp_path / "repository"
    (repository / "unpacked").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repository, check=True)
    assert missing_git_history(repository) is None
    assert missing_git_history(repository / "unpacked") is not None, "a zip unpacked inside another repository"


@pytest.mark.req("R10.1")
def test_without_cap_sys_admin_the_mount_namespace_is_reported_missing() -> None:
    skip_unless(missing_mount_namespace())
    skip_unless(missing_capsh())
    probe = "from tests.support.codebuild import missing_mount_namespace as m; print(m())"
    dropped = output_of(
        ["capsh", "--drop=cap_sys_admin", "--", "-c", f"{shlex.quote(sys.executable)} -c {shlex.quote(probe)}"]
    )
    assert dropped.startswith("no mount namespace (") and "CAP_SYS_ADMIN" in dropped, dropped
