"""`make codebuild-test`: the Test buildspec's commands in a copy as CodeBuild hands it over, wired into CI."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.codebuild import (
    missing_capsh,
    output_of,
    require_git_history,
    skip_unless,
)
from tools.codebuild_test import (
    PHASES,
    build_environment,
    buildspec_variables,
    code_zip_copy,
    main,
    read_buildspec,
    tracked_files,
)
from tools.requirements import PROJECT_ROOT

TEST_BUILDSPEC = PROJECT_ROOT / "pipelines" / "buildspecs" / "test.yml"


def make_recipe(target: str) -> list[str]:
    lines = (PROJECT_ROOT / "Makefile").read_text().splitlines()
    start = next(number for number, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


@pytest.mark.req("R10.1", "R10.4")
def test_ci_runs_the_codebuild_proof_after_make_test_and_before_the_rehearsal() -> None:
    ci_run = (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
    steps = [line.strip() for line in ci_run]
    test, proof, rehearse = (steps.index(f"make {target}") for target in ("test", "codebuild-test", "rehearse"))
    assert test < proof < rehearse
    # Inside CodeBuild .ci/run is the Test action itself: it stops before the proof, which would recurse.
    stop = steps.index("exit 0")
    assert test < stop < proof and "CODEBUILD_BUILD_ID" in ci_run[stop - 2]
    installs = next(number for number, line in enumerate(steps) if line.startswith("command -v capsh"))
    assert "missing+=(libcap2-bin)" in steps[installs] and installs < test
    assert any("apt-get install -y" in line and '"${missing[@]}"' in line for line in steps[installs:test])


@pytest.mark.req("R10.1", "R10.2", "R10.3", "R10.4")
def test_the_target_runs_exactly_the_test_buildspecs_commands_without_cap_sys_admin() -> None:
    assert make_recipe("codebuild-test") == ["python -m tools.codebuild_test"]
    document = yaml.safe_load(TEST_BUILDSPEC.read_text())
    commands = [command for phase in PHASES for command in document["phases"].get(phase, {}).get("commands", [])]
    assert commands, "test.yml runs nothing"
    printed = output_of([sys.executable, "-m", "tools.codebuild_test", "--print"])
    assert shlex.split(printed) == ["capsh", "--drop=cap_sys_admin", "--", "-c", "\n".join(["set -e", *commands])]
    # ...and in the environment the buildspec gives them, as CodeBuild would.
    environ = build_environment(Path("/src"), buildspec_variables(read_buildspec()), {"PATH": "/usr/bin"})
    assert document["env"]["variables"] and all(
        environ[name] == str(value) for name, value in document["env"]["variables"].items()
    )


@pytest.mark.req("R10.1")
def test_the_build_environment_is_codebuilds_not_this_working_trees() -> None:
    caller = {
        "PATH": os.pathsep.join([str(PROJECT_ROOT / ".venv" / "bin"), "/usr/local/bin", "/usr/bin"]),
        "HOME": "/root",
        "MAKEFLAGS": "-j2",
        "VIRTUAL_ENV": str(PROJECT_ROOT / ".venv"),
        "UV_PROJECT_ENVIRONMENT": str(PROJECT_ROOT / ".venv"),
        "CANVALO_BRANCH": "leaked",
    }
    environ = build_environment(Path("/tmp/x/src"), {"CI": "true"}, caller)
    assert environ["PATH"] == "/usr/local/bin:/usr/bin" and environ["HOME"] == "/root"
    assert environ["CODEBUILD_BUILD_ID"] and environ["CODEBUILD_SRC_DIR"] == "/tmp/x/src" and environ["CI"] == "true"
    assert not {"MAKEFLAGS", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "CANVALO_BRANCH"} & set(environ)
    # Offline: the copy installs from the caches `make test` filled, and never reaches the internet.
    assert environ["UV_OFFLINE"] == "1" and environ["npm_config_offline"] == "true"


@pytest.mark.req("R10.1")
def test_the_copy_holds_the_tracked_files_only_without_git_or_execute_bits(tmp_path: Path) -> None:
    skip_unless(None if shutil.which("git") else "no git command to make a repository with")
    repository = tmp_path / "repository"
    (repository / "pipelines").mkdir(parents=True)
    (repository / "pipelines" / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (repository / "pipelines" / "run.sh").chmod(0o755)
    (repository / ".gitignore").write_text("ignored/\n")
    (repository / "ignored").mkdir()
    (repository / "ignored" / "file").write_text("made by a build")
    (repository / "untracked").write_text("not added")
    subprocess.run(["git", "init", "-q"], cwd=repository, check=True)
    subprocess.run(["git", "add", ".gitignore", "pipelines"], cwd=repository, check=True)
    names = tracked_files(repository)
    assert sorted(names) == [".gitignore", "pipelines/run.sh"]
    copy = tmp_path / "src"
    code_zip_copy(repository, names, copy)
    assert sorted(str(path.relative_to(copy)) for path in copy.rglob("*") if path.is_file()) == sorted(names)
    assert (copy / "pipelines" / "run.sh").read_text() == "#!/bin/sh\necho ran\n"
    assert not os.access(copy / "pipelines" / "run.sh", os.X_OK)
    assert os.access(repository / "pipelines" / "run.sh", os.X_OK), "the original keeps its bits"


# Each check exits 1 if it fails; only when all hold does the build reach its own failing `exit 3`.
PROBE = """version: 0.2
env:
  shell: bash
  variables:
    FROM_BUILDSPEC: "yes"
phases:
  build:
    commands:
      - test ! -e .git && test -f .ci/run && test ! -x .ci/run
      - test "$(ls -A ..)" = src && test "$CODEBUILD_SRC_DIR" = "$PWD" && test -n "$CODEBUILD_BUILD_ID"
      - if unshare --mount --fork true 2>/dev/null; then exit 1; fi
      - test "$FROM_BUILDSPEC" = yes
      - exit 3
"""


@pytest.mark.req("R10.4")
def test_the_proof_runs_without_git_execute_bits_neighbours_or_mount_namespaces_and_fails_with_its_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_git_history()
    skip_unless(missing_capsh())
    buildspec = tmp_path / "probe.yml"
    buildspec.write_text(PROBE)
    assert main(["--buildspec", str(buildspec)]) == 3, capsys.readouterr()
    assert "codebuild-test: exit 3" in capsys.readouterr().out
