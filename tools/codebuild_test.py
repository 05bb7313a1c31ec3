"""Run the Test buildspec's commands the way CodeBuild hands them the commit, to prove they pass there.

CodeBuild's Source for the Test action is a CODE_ZIP: the tracked files alone, no `.git`, no execute
bits, nothing beside the folder, in a container without CAP_SYS_ADMIN (no mount namespaces) and with
CODEBUILD_BUILD_ID set. This copies the tracked files into a fresh temporary folder with those
properties and runs pipelines/buildspecs/test.yml's commands there under `capsh --drop=cap_sys_admin`,
exiting with their status. `make codebuild-test` runs it; `.ci/run` calls that after `make test`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tools.requirements import PROJECT_ROOT

TEST_BUILDSPEC = PROJECT_ROOT / "pipelines" / "buildspecs" / "test.yml"
# CodeBuild runs the phases in this order; a phase the buildspec leaves out is skipped.
PHASES = ("install", "pre_build", "build", "post_build")
# What the build container lacks: with it dropped from the bounding set, `unshare --mount` fails as it
# does in a non-privileged CodeBuild project.
DROPPED_CAPABILITY = "cap_sys_admin"
BUILD_ID = "canvalo-beta-pipeline-test:00000000-0000-4000-8000-codebuildtest"
# The copy installs from the caches the `make test` before it filled; offline, a missing package fails
# the proof instead of fetching from the internet (this machine and CI have none).
OFFLINE = {"UV_OFFLINE": "1", "npm_config_offline": "true"}
# Kept from the caller's environment: what a CodeBuild image also sets (PATH is filtered below).
INHERITED = ("HOME", "LANG", "LC_ALL", "TERM", "TZ", "PYENV_ROOT")


def read_buildspec(path: Path = TEST_BUILDSPEC) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a buildspec mapping")
    return document


def buildspec_commands(document: dict[str, Any]) -> list[str]:
    phases = document.get("phases") or {}
    return [str(command) for phase in PHASES for command in (phases.get(phase) or {}).get("commands", [])]


def buildspec_variables(document: dict[str, Any]) -> dict[str, str]:
    return {str(name): str(value) for name, value in ((document.get("env") or {}).get("variables") or {}).items()}


def shell_script(commands: list[str]) -> str:
    # CodeBuild runs a buildspec's commands in one shell (`env: shell: bash`) and stops at the first failure.
    return "\n".join(["set -e", *commands])


def capsh_command(commands: list[str]) -> list[str]:
    return ["capsh", f"--drop={DROPPED_CAPABILITY}", "--", "-c", shell_script(commands)]


def tracked_files(root: Path = PROJECT_ROOT) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    # The working tree's content of each tracked file (what a commit of it would hold); a tracked file
    # deleted but not yet committed is not there to copy.
    return [name for name in listed.split("\0") if name and (root / name).is_file()]


def code_zip_copy(root: Path, names: list[str], destination: Path) -> None:
    """`names` (relative to `root`) copied into `destination`, every execute bit cleared, as a CODE_ZIP unpacks."""
    for name in names:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / name, target, follow_symlinks=True)
        mode = stat.S_IMODE((root / name).stat().st_mode)
        target.chmod(mode & ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))


def build_environment(source: Path, variables: dict[str, str], environ: dict[str, str]) -> dict[str, str]:
    # Nothing of this working tree may leak in: its .venv/bin on PATH (the Makefile prepends it), MAKEFLAGS,
    # UV_PROJECT_ENVIRONMENT, JSII_NODE, VIRTUAL_ENV. A build starts from the image's environment.
    path = [
        entry
        for entry in environ.get("PATH", os.defpath).split(os.pathsep)
        if not Path(entry).is_relative_to(PROJECT_ROOT)
    ]
    inherited = {name: environ[name] for name in INHERITED if name in environ}
    return inherited | {
        "PATH": os.pathsep.join(path),
        "CODEBUILD_BUILD_ID": BUILD_ID,
        "CODEBUILD_SRC_DIR": str(source),
        "AWS_EC2_METADATA_DISABLED": "true",
        **OFFLINE,
        **variables,
    }


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.codebuild_test", description=__doc__)
    parser.add_argument("--print", action="store_true", help="print the command it would run, shell-quoted, and stop")
    parser.add_argument(
        "--buildspec", type=Path, default=TEST_BUILDSPEC, help="the buildspec to run (default: %(default)s)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the copy afterwards (its path is printed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    document = read_buildspec(arguments.buildspec)
    command = capsh_command(buildspec_commands(document))
    if arguments.print:
        print(shlex.join(command))
        return 0
    if shutil.which("capsh") is None:
        print("codebuild-test: needs capsh (Debian's libcap2-bin; .ci/run installs it)", file=sys.stderr)
        return 2
    # A fresh folder holding only the source: no sibling folder for a path climbing out of it to find.
    workspace = Path(tempfile.mkdtemp(prefix="canvalo-codebuild-"))
    source = workspace / "src"
    try:
        code_zip_copy(PROJECT_ROOT, tracked_files(), source)
        environ = build_environment(source, buildspec_variables(document), dict(os.environ))
        print(
            f"codebuild-test: {arguments.buildspec} in {source} without .git, execute bits or {DROPPED_CAPABILITY}",
            flush=True,
        )
        started = time.monotonic()
        status = subprocess.run(command, cwd=source, env=environ, check=False).returncode
        print(f"codebuild-test: exit {status} after {time.monotonic() - started:.0f} s", flush=True)
        return status
    finally:
        if arguments.keep:
            print(f"codebuild-test: kept {workspace}")
        else:
            shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
