"""Every buildspec the pipeline's projects run parses, and every command it calls exists in this repository."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from modules.pipeline import (
    BAKE_RESULT_VARIABLE,
    BUILD_ARTIFACT,
    BUILDSPECS,
    PIPELINE_OWNED,
    PLAN_HEADLINE_VARIABLE,
    PLAN_SHA256_VARIABLE,
    PLAN_SUMMARY_URL_VARIABLE,
)
from modules.pipeline_toolkit import PipelineToolkit
from stacks.config import POST_DEPLOY_TESTS
from tools.requirements import PROJECT_ROOT

MAKE_COMMAND = re.compile(r"\bmake\s+([a-z][a-z-]*)((?:\s+[A-Z_]+=(?:\"[^\"]*\"|\S+))*)")
PYTHON_MODULE = re.compile(r"\bpython -m (pipelines\.[a-z_]+)")
SCRIPT = re.compile(r"(?<![\w/.-])(pipelines/[a-z_]+\.sh)\b")
# Tools a buildspec must reach through a make target or a pipelines/ script, so that it also runs locally.
DIRECT_TOOL = re.compile(r"(?:^|[;&|(]|\$\(|then|do)\s*(terraform|aws|docker|npm|npx|pip|uv|curl)\s", re.MULTILINE)


@cache
def buildspec(kind: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / BUILDSPECS[kind]).read_text())
    return document


def commands(kind: str) -> list[str]:
    phases = buildspec(kind)["phases"]
    return [command for phase in phases.values() for command in phase.get("commands", [])]


def script_text(kind: str) -> str:
    """The buildspec's commands, followed by the text of each script it runs with `bash <path>`."""
    text = "\n".join(commands(kind))
    # pipelines/*.sh are the scripts the buildspecs delegate tools to; any other script is read as the buildspec's own.
    scripts = [
        PROJECT_ROOT / path for path in re.findall(r"^bash (\S+)$", text, re.MULTILINE) if not SCRIPT.fullmatch(path)
    ]
    return "\n".join([text, *(script.read_text() for script in scripts)])


@pytest.mark.parametrize("kind", list(BUILDSPECS))
def test_each_buildspec_is_a_version_0_2_document_with_commands(kind: str) -> None:
    document = buildspec(kind)
    assert document["version"] == 0.2
    assert document["env"]["shell"] == "bash", "the commands use bash (${STAGE^}, ${!name})"
    assert commands(kind), "a buildspec that runs nothing"
    assert set(document["phases"]) <= {"install", "pre_build", "build", "post_build"}


@pytest.mark.parametrize("kind", list(BUILDSPECS))
def test_every_make_target_a_buildspec_calls_exists(kind: str) -> None:
    calls = MAKE_COMMAND.findall(script_text(kind))
    # A pipeline-owned buildspec installs the toolkit, not the commit's environment (modules/pipeline_toolkit.py).
    assert calls or kind in PIPELINE_OWNED
    for target, assignments in calls:
        variables = [a.replace('"', "") for a in shlex.split(assignments)]
        # Values from the build's environment are given as harmless samples.
        variables = [re.sub(r"=\$.*", "=sample", v) for v in variables]
        result = subprocess.run(
            ["make", "-n", "--no-print-directory", target, *variables],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{BUILDSPECS[kind]}: make {target}: {result.stderr}"


@pytest.mark.parametrize("kind", list(BUILDSPECS))
def test_every_pipelines_module_and_script_a_buildspec_calls_exists(kind: str) -> None:
    text = script_text(kind)
    for module in PYTHON_MODULE.findall(text):
        result = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        )
        assert result.returncode == 0, f"{BUILDSPECS[kind]}: python -m {module}: {result.stderr}"
    for script in SCRIPT.findall(text):
        assert (PROJECT_ROOT / script).is_file(), f"{BUILDSPECS[kind]}: {script} does not exist"
    # CodePipeline's CODE_ZIP source keeps no file modes: a script run as `pipelines/x.sh` is "Permission denied".
    run_directly = re.findall(r"(?:^|[;&|]\s*|\n\s*)(pipelines/[a-z_]+\.sh)", text)
    assert not run_directly, f"{BUILDSPECS[kind]} runs {run_directly} directly: run it as `bash {run_directly[0]}`"
    assert not DIRECT_TOOL.findall(text), f"{BUILDSPECS[kind]} calls tools directly; use a make target or a script"


def bash_syntax_error(text: str) -> str:
    result = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, timeout=30, check=False)
    return result.stderr


@pytest.mark.parametrize("kind", list(BUILDSPECS))
def test_every_command_is_valid_bash(kind: str) -> None:
    for command in commands(kind):
        assert bash_syntax_error(command) == "", command


def test_the_pipeline_scripts_are_valid_bash() -> None:
    for script in sorted((PROJECT_ROOT / "pipelines").glob("*.sh")):
        assert bash_syntax_error(script.read_text()) == "", script


@pytest.mark.req("R10.1", "R10.2", "R10.3", "R10.4")
def test_the_test_stage_runs_exactly_what_ci_runs() -> None:
    # `.ci/run` installs Chromium and runs `make test`: pytest (unit, per-criterion, snapshot, checkov,
    # browser) plus the frontend's tsc and Vitest; CodeBuild fails the action on a non-zero exit, and the
    # pipeline stops there.
    assert commands("test") == ["bash .ci/run"]
    assert buildspec("test")["env"]["variables"]["CI"] == "true"
    ci_run = (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
    assert "set -euo pipefail" in ci_run
    assert "make test" in ci_run
    # Inside CodeBuild it stops after `make test`: the steps after it are CI's (see tests/tools/test_codebuild_test.py).
    stop = ci_run.index("  exit 0")
    assert ci_run.index("make test") < stop and "CODEBUILD_BUILD_ID" in ci_run[stop - 2]
    assert stop < ci_run.index("make rehearse")


@pytest.mark.req("R4.3", "R4.6")
def test_the_deploy_buildspec_hands_the_plans_from_plan_to_apply_and_exports_the_approval_text() -> None:
    document = buildspec("deploy")
    assert document["env"]["exported-variables"] == [
        PLAN_HEADLINE_VARIABLE,
        PLAN_SUMMARY_URL_VARIABLE,
        PLAN_SHA256_VARIABLE,
        BAKE_RESULT_VARIABLE,
    ]
    text = script_text("deploy")
    assert f'build_dir="$CODEBUILD_SRC_DIR_{BUILD_ARTIFACT}"' in text
    handoff = document["artifacts"]["base-directory"]
    assert f'terraform_stage plan --stage "$STAGE" --cdktf-out "$build_dir/cdktf.out" --plans {handoff}' in text
    # The plan compares the frontend build with the live release: an empty plan then means nothing changes.
    assert '--frontend-dist "$build_dir/frontend/dist-$STAGE"' in mode_branch(text, "plan")
    # The previous stage's bake is part of the summary the manifest binds, not appended after it.
    assert '--bake-result "${BAKE_RESULT:-}"' in mode_branch(text, "plan")
    assert "summary.md;" not in text and ">> handoff/summary.md" not in text
    assert f'export {PLAN_SHA256_VARIABLE}="$(cat {handoff}/manifest.sha256)"' in mode_branch(text, "plan")
    # The Apply action's third input is the `<Stage>Plan` artifact (modules/pipeline.py).
    assert 'plan_input="CODEBUILD_SRC_DIR_${STAGE^}Plan"' in text
    # Apply applies the stage's one saved plan, and only if its manifest is the one Plan recorded.
    apply = (
        'terraform_stage apply --stage "$STAGE" --cdktf-out "$build_dir/cdktf.out" --plans "${!plan_input}" '
        f'--outputs {handoff} --manifest-sha256 "$APPROVED_MANIFEST_SHA256"'
    )
    assert apply in mode_branch(text, "apply")
    assert "--deferred" not in text and "DEFERRED" not in text, "no stack of a stage waits for another"
    assert f'export {PLAN_HEADLINE_VARIABLE}="$(head -c 300 {handoff}/headline.txt)"' in text
    # The approval's link opens the whole summary, put in the artifact bucket as the action itself.
    publish = (
        'export PLAN_SUMMARY_URL="$(env -u AWS_PROFILE -u AWS_CONFIG_FILE python -m pipelines.publish_summary '
        f'--summary {handoff}/summary.md --bucket "$ARTIFACT_BUCKET" --stage "$STAGE")"'
    )
    assert publish in mode_branch(text, "plan")
    assert "python -m pipelines.deploy_frontend" in text and '--dist "$build_dir/frontend/dist-$STAGE"' in text
    assert text.index('pipelines.stage_credentials --stage "$STAGE"') < text.index("pipelines.deploy_frontend")
    assert "set -euo pipefail" in text, "a failing step fails the action"


def mode_branch(text: str, mode: str) -> str:
    """The commands of one `case "$MODE"` branch of deploy.yml."""
    start = text.index(f"  {mode})\n")
    return text[start : text.index(";;", start)]


@pytest.mark.req("R4.6", "R4.8")
@pytest.mark.parametrize(
    ("mode", "role", "command"),
    [("plan", "plan", "terraform_stage plan"), ("apply", "deploy", "terraform_stage apply")],
)
def test_each_mode_chooses_the_stage_role_terraform_runs_as(mode: str, role: str, command: str) -> None:
    branch = mode_branch(script_text("deploy"), mode)
    select = f'eval "$(python -m pipelines.stage_credentials --stage "$STAGE" --role {role})"'
    assert branch.count(select) == 1 and branch.index(select) < branch.index(command)
    assert "--role deploy" not in branch or mode == "apply", "Plan never holds the stage's write role"


@pytest.mark.req("R4.6")
def test_the_preflight_checks_the_stage_as_its_plan_role_and_the_image_as_the_action() -> None:
    branch = mode_branch(script_text("deploy"), "plan")
    arn = 'plan_role="$(python -m pipelines.stage_credentials --stage "$STAGE" --role plan --arn)"'
    preflight = (
        'python -m pipelines.preflight --stage "$STAGE" --cdktf-out "$build_dir/cdktf.out" '
        '--expect-image-digest "$IMAGE_DIGEST" ${plan_role:+--role-arn "$plan_role"}'
    )
    assert branch.index(arn) < branch.index(preflight) < branch.index("eval"), "the image is checked before the profile"


@pytest.mark.req("R4.6")
def test_every_apply_first_checks_who_gave_its_approval_as_the_action_itself() -> None:
    branch = mode_branch(script_text("deploy"), "apply")
    check = (
        'python -m pipelines.approval_check --approval "$APPROVAL" --approver-roles "$APPROVER_ROLES" '
        '--review-role "$REVIEW_ROLE" --person-approves "$PERSON_APPROVES"'
    )
    assert "APPROVAL:-" not in branch, "no Apply goes on without checking its approval"
    assert branch.index(check) < branch.index("stage_credentials") < branch.index("terraform_stage apply")


@pytest.mark.req("R4.6")
def test_the_deployed_commit_is_recorded_in_the_pipeline_account_not_the_stage() -> None:
    branch = mode_branch(script_text("deploy"), "apply")
    (line,) = [line for line in branch.splitlines() if "pipelines.drift record" in line]
    assert line.strip().startswith("env -u AWS_PROFILE -u AWS_CONFIG_FILE python -m pipelines.drift record")
    # With what make status shows: the image, read before as the stage's deploy role, and the execution.
    assert '--image "$image" --execution-id "${PIPELINE_EXECUTION_ID:-}" --outputs handoff' in line
    image = 'image="$(python -m pipelines.release image --outputs handoff)"'
    assert branch.index("terraform_stage apply") < branch.index(image) < branch.index("pipelines.drift record")
    # The restore's two ends read and write the same record in the same account.
    for step in ("pipelines.drift previous", "pipelines.drift restored"):
        (line,) = [line for line in branch.splitlines() if step in line]
        assert line.strip().startswith(f"env -u AWS_PROFILE -u AWS_CONFIG_FILE python -m {step}")


@pytest.mark.req("R4.6")
def test_only_a_verified_release_stores_the_stack_it_applied_for_the_drift_check() -> None:
    """The exact JSON the Apply applied (the Build artifact's, which apply checked against the approved manifest)
    goes to the artifact bucket as the action itself, after the smoke check and before the commit is recorded."""
    branch = mode_branch(script_text("deploy"), "apply")
    (line,) = [line for line in branch.splitlines() if "pipelines.drift store-applied" in line]
    assert line.strip() == (
        'env -u AWS_PROFILE -u AWS_CONFIG_FILE python -m pipelines.drift store-applied --stage "$STAGE" '
        '--stack-json "$build_dir/cdktf.out/stacks/$STAGE/cdk.tf.json" --commit "$CODEBUILD_RESOLVED_SOURCE_VERSION"'
    )
    (apply,) = [line for line in branch.splitlines() if "pipelines.terraform_stage apply" in line]
    assert '--cdktf-out "$build_dir/cdktf.out"' in apply, "the cdktf.out whose stack the apply applied"
    smoke_failed = branch.index("if ! python -m pipelines.smoke_check check")
    failed_branch_end = branch.index("exit 1", smoke_failed)
    assert failed_branch_end < branch.index(line.strip()) < branch.index("python -m pipelines.drift record")


@pytest.mark.req("R10.5", "R10.6", "R10.7", "R10.8")
def test_the_post_deploy_buildspec_runs_the_deployed_tests_against_the_stage_outputs() -> None:
    text = script_text("smoke")
    assert 'outputs_input="CODEBUILD_SRC_DIR_${STAGE^}Outputs"' in text
    assert 'make deployed-test SUITE="$TEST_SUITE"' in text
    assert "EXPECT_AUTH=true" in text
    # /health must report the tag Build gave the image (its exported IMAGE_TAG), never recomputed from source.
    assert "image_tag.sh" not in text
    assert text.index('expected_version="${EXPECT_VERSION:?') < text.index('EXPECT_VERSION="$expected_version"')
    assert "set -euo pipefail" in text
    for suite in POST_DEPLOY_TESTS:
        result = subprocess.run(
            ["make", "-n", "deployed-test", f"SUITE={suite}", "BACKEND_URL=http://b", "FRONTEND_URL=http://f"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0 and "tests/deployed" in result.stdout, result.stderr


def test_the_build_artifact_holds_what_the_later_stages_read() -> None:
    files = buildspec("build")["artifacts"]["files"]
    assert "cdktf.out/**/*" in files
    text = script_text("build")
    for stage in ("beta", "gamma", "prod"):
        assert f"make frontend STAGE={stage}" in text
        assert f"frontend/dist-{stage}/**/*" in files
    synth = 'CANVALO_IMAGE_TAG="$IMAGE_TAG" CANVALO_IMAGE_DIGEST="$IMAGE_DIGEST" make synth'
    tag = text.index('export IMAGE_TAG="$(bash pipelines/image_tag.sh)"')
    publish = text.index("IMAGE_DIGEST_FILE=image.digest bash pipelines/publish_image.sh")
    assert tag < publish < text.index('export IMAGE_DIGEST="$(cat image.digest)"') < text.index(synth)
    # Both are pipeline variables (BuildVariables): each Plan and post-deploy test receives them.
    assert buildspec("build")["env"]["exported-variables"] == ["IMAGE_TAG", "IMAGE_DIGEST"]


@pytest.mark.req("R4.4")
def test_the_update_stage_runs_the_self_update_on_what_build_synthesized_and_no_code_of_the_commit() -> None:
    assert commands("update-pipeline") == [
        'python -m pipelines.self_update --cdktf-out "$CODEBUILD_SRC_DIR_Build/cdktf.out" --work-dir self-update'
    ]


def test_every_terraform_project_is_pipeline_owned_and_installs_the_pinned_terraform_from_the_toolkit() -> None:
    for kind in ("update-pipeline", "deploy", "drift"):
        assert kind in PIPELINE_OWNED
        assert not any("make env" in command or "install_terraform" in command for command in commands(kind))
    assert 'bash "$TOOLKIT_DIR/pipelines/install_terraform.sh"' in PipelineToolkit.install_commands()
    assert Path(PROJECT_ROOT / "pipelines" / "install_terraform.sh").exists()


@pytest.mark.req("R10.7", "R10.8")
def test_the_apply_restores_the_previous_release_when_its_own_smoke_check_fails_and_then_fails() -> None:
    branch = mode_branch(script_text("deploy"), "apply")
    order = [
        "pipelines.restore record",
        "pipelines.terraform_stage apply",
        "pipelines.verify_rollout",
        "pipelines.restore snapshot",
        "pipelines.deploy_frontend",
        "pipelines.smoke_check version",
        "if ! python -m pipelines.smoke_check check",
        "pipelines.restore back",
    ]
    assert [branch.index(step) for step in order] == sorted(branch.index(step) for step in order)
    failed = branch[branch.index("if ! python -m pipelines.smoke_check check") :]
    lines = [line.strip() for line in failed.splitlines()]
    restore = next(i for i, line in enumerate(lines) if "pipelines.restore back" in line)
    # `restore back` always exits 1: `|| true` lets the record of what it restored be written before the stage fails.
    assert lines[restore].endswith("|| true")
    assert "pipelines.drift restored" in lines[restore + 2], "the record names the release the restore put back"
    assert lines[restore + 3 : restore + 5] == ["exit 1", "fi"], "the stage fails even when the restore succeeds"


def apply_commands() -> str:
    """deploy.yml's apply branch, as the one bash command of the build phase runs it."""
    return "\n".join(commands("deploy"))


# Which pipelines module a fake `python -m` call fails as, and the calls the apply makes, one a line.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [ "$2" = "$FAIL_MODULE" ] && { [ -z "$FAIL_COMMAND" ] || [ "$3" = "$FAIL_COMMAND" ]; }; then
  echo "error: $2 $3 failed" >&2; exit 1
fi
if [ "$2 $3" = "pipelines.restore back" ]; then exit 1; fi
"""


def run_apply(tmp_path: Path, fail: str = "") -> list[str]:
    """Runs the apply branch with every `python -m pipelines.*` faked (FAIL_MODULE fails); returns the calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    module, _, command = fail.partition(" ")
    environment = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(calls),
        "FAIL_MODULE": module,
        "FAIL_COMMAND": command,
        "MODE": "apply",
        "STAGE": "prod",
        "CODEBUILD_SRC_DIR_Build": str(tmp_path),
        "CODEBUILD_SRC_DIR_ProdPlan": str(tmp_path / "plans"),
        "CODEBUILD_RESOLVED_SOURCE_VERSION": "0" * 40,
        "APPROVED_MANIFEST_SHA256": "0" * 64,
        "PLAN_SUMMARY_URL": "https://eu-west-1.console.aws.amazon.com/s3/object/b?prefix=plan-summaries%2Fprod%2Fx.md",
        # The Apply project's own environment (stacks/pipeline.py _who_approves).
        "APPROVAL": "Prod/Approve",
        "APPROVER_ROLES": "canvalo-release-approver",
        "REVIEW_ROLE": "canvalo-beta-pipeline-review",
        "PERSON_APPROVES": "changes",
        # What `terraform_stage env` exports from the outputs (faked here, so given).
        "FRONTEND_BUCKET": "canvalo-prod-frontend",
        "FRONTEND_DISTRIBUTION_ID": "E1",
        "BACKEND_URL": "https://api.example.com",
        "FRONTEND_URL": "https://example.com",
    }
    subprocess.run(
        ["bash", "-c", apply_commands()], cwd=tmp_path, env=environment, capture_output=True, timeout=60, check=False
    )
    return [" ".join(line.split()[:3]) for line in calls.read_text().splitlines()]


@pytest.mark.req("R10.7", "R10.8")
@pytest.mark.parametrize(
    "failing",
    [
        "pipelines.terraform_stage apply",
        "pipelines.verify_rollout",
        "pipelines.deploy_frontend",
        "pipelines.smoke_check check",
    ],
)
def test_a_release_is_recorded_only_after_its_rollout_is_verified_and_its_smoke_check_passed(
    tmp_path: Path, failing: str
) -> None:
    """The phase is one bash command (CodeBuild's stop after a failed command of a phase does not reach into
    it): set -e is what stops it, and it is run here as CodeBuild runs it, with each step failing in turn."""
    calls = run_apply(tmp_path, failing)
    assert not any(call.startswith("-m pipelines.drift record") for call in calls), calls
    restored = [call for call in calls if call.startswith("-m pipelines.drift restored")]
    assert restored == (["-m pipelines.drift restored"] if failing.endswith("smoke_check check") else [])


@pytest.mark.req("R10.7", "R10.8")
def test_a_release_that_passed_everything_is_recorded_last_and_the_restore_starts_from_the_record(
    tmp_path: Path,
) -> None:
    calls = [call.removeprefix("-m ") for call in run_apply(tmp_path)]
    steps = [
        "pipelines.drift previous",
        "pipelines.restore record",
        "pipelines.terraform_stage apply",
        "pipelines.verify_rollout --outputs",
        "pipelines.smoke_check check",
        "pipelines.release image",
        "pipelines.drift record",
    ]
    found = [next(i for i, call in enumerate(calls) if call.startswith(step)) for step in steps]
    assert found == sorted(found), calls
    assert calls[-1].startswith("pipelines.drift record"), "nothing that can fail runs after the record"
    # Parsed as YAML: the record is after the verify and smoke commands in the buildspec's own text as well.
    text = apply_commands()
    assert text.index("pipelines.verify_rollout") < text.index("pipelines.smoke_check check")
    assert text.index("pipelines.smoke_check check") < text.index("pipelines.drift record")
