"""The rehearsal's CodeBuild and CodePipeline: what a build is handed, and nothing more.

A build sees exactly the project's variables, the action's (namespace variables resolved), the
buildspec's, and CodeBuild's own; its Source is the commit as a zip, without `.git`, `.venv` or
execute bits; and the pipeline it runs is the one the pipeline stack's state holds.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from modules.pipeline_toolkit import TOOLKIT_REQUIREMENTS, PipelineToolkit
from pipelines.review import review
from tests.support.codebuild import require_mount_namespace
from tools.rehearse.codebuild import (
    Build,
    Machine,
    StandIn,
    collect_artifacts,
    run_build,
    stand_in_lines,
    toolkit_environment_stand_ins,
)
from tools.rehearse.pipeline import (
    Action,
    ApprovalAnswer,
    Definition,
    EntryCondition,
    Execution,
    Pipeline,
    Services,
    Step,
    UnresolvedVariableError,
    new_execution_id,
    read_definition,
    substitute,
)
from tools.rehearse.window import Clock
from tools.rehearse.world import MotoServer, StateLocation, World


@pytest.fixture
def mount_namespace() -> None:
    """run_build's container is `unshare --mount`: skip where that is refused (CodeBuild), as CI has it."""
    require_mount_namespace()


BUILDSPEC = """version: 0.2
env:
  shell: bash
  variables:
    FROM_BUILDSPEC: "yes"
  exported-variables:
    - HEADLINE
phases:
  build:
    commands:
      - env -0 > "$CODEBUILD_SRC_DIR/environment"
      - export HEADLINE="planned $STAGE"
      - mkdir -p handoff && echo artifact > handoff/file.txt
artifacts:
  base-directory: handoff
  files:
    - "**/*"
"""
# What CodeBuild itself adds to every build, besides the project's, action's and buildspec's variables.
CODEBUILD_OWN = {
    "PATH",
    "HOME",
    "LANG",
    "TMPDIR",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "CODEBUILD_SRC_DIR",
    "CODEBUILD_SRC_DIR_Build",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with MotoServer(tmp_path_factory.mktemp("moto") / "moto.log") as moto:
        yield World(endpoint=moto.endpoint, region="eu-west-1", accounts={"beta": "444444444444"})


@pytest.mark.req("R4.4")
def test_a_build_sees_exactly_the_variables_it_is_handed(world: World, tmp_path: Path, mount_namespace: None) -> None:
    source, secondary = tmp_path / "Source", tmp_path / "Build"
    (source / "spec").mkdir(parents=True)
    (source / "spec" / "buildspec.yml").write_text(BUILDSPEC)
    secondary.mkdir()
    world_file = tmp_path / "world.json"
    world.save(world_file)
    machine = Machine(tmp_path / "machine", world_file, world.endpoint)
    build = Build(
        project="canvalo-beta-pipeline-deploy",
        buildspec="spec/buildspec.yml",
        primary=source,
        secondary={"Build": secondary},
        environment={"CANVALO_BETA_ACCOUNT_ID": "444444444444", "STAGE": "beta"},
        credentials_url="http://127.0.0.1:1/credentials/x",
    )
    os.environ["LEAKED_FROM_THE_HOST"] = "must not reach the build"
    try:
        run_build(build, machine, tmp_path / "work-env")
    finally:
        del os.environ["LEAKED_FROM_THE_HOST"]
    assert build.status == 0, (tmp_path / "work-env" / "build.log").read_text()
    seen = dict(item.split("=", 1) for item in (source / "environment").read_text().split("\0") if item)
    # The image's own settings: the host's TLS trust, and the fake Terraform release's checksums.
    trusted = set(Machine.trusted_certificates()) | set(machine.mirror_checksums())
    # bash adds its own bookkeeping variables.
    shell = {"PWD", "SHLVL", "OLDPWD", "_"}
    assert set(seen) - shell - trusted == {"CANVALO_BETA_ACCOUNT_ID", "STAGE", "FROM_BUILDSPEC"} | CODEBUILD_OWN
    assert seen["CODEBUILD_SRC_DIR_Build"] == str(secondary)
    assert build.exported == {"HEADLINE": "planned beta"}
    collect_artifacts("spec/buildspec.yml", source, tmp_path / "out")
    assert (tmp_path / "out" / "file.txt").read_text() == "artifact\n"


@pytest.mark.req("R4.6")
def test_an_inline_buildspec_runs_as_the_project_holds_it_whatever_the_source_says(
    world: World, tmp_path: Path, mount_namespace: None
) -> None:
    source = tmp_path / "Source"
    source.mkdir()
    # The commit's file of the same name says otherwise: a pipeline-owned project never reads it.
    (source / "buildspec.yml").write_text("version: 0.2\nphases:\n  build:\n    commands:\n      - exit 9\n")
    world_file = tmp_path / "world.json"
    world.save(world_file)
    machine = Machine(tmp_path / "machine", world_file, world.endpoint)
    build = Build("p", BUILDSPEC, source, {"Build": tmp_path}, {"STAGE": "gamma"}, "http://127.0.0.1:1/c")
    run_build(build, machine, tmp_path / "work")
    assert build.status == 0 and build.exported == {"HEADLINE": "planned gamma"}
    collect_artifacts(BUILDSPEC, source, tmp_path / "out")
    assert (tmp_path / "out" / "file.txt").read_text() == "artifact\n"


@pytest.mark.req("R4.4")
def test_a_stand_in_replaces_its_command_and_says_so(world: World, tmp_path: Path, mount_namespace: None) -> None:
    source = tmp_path / "Source"
    source.mkdir()
    # A buildspec command may be a block: the stand-in replaces its line, and the rest still runs.
    block = "version: 0.2\nphases:\n  build:\n    commands:\n      - |\n        set -e\n        exit 7\n        echo after\n"
    (source / "buildspec.yml").write_text(block)
    world_file = tmp_path / "world.json"
    world.save(world_file)
    machine = Machine(tmp_path / "machine", world_file, world.endpoint)

    def build_with(stand_ins: list[StandIn], folder: str) -> Build:
        build = Build("p", "buildspec.yml", source, {}, {}, "http://127.0.0.1:1/c", stand_ins=stand_ins)
        notes = run_build(build, machine, tmp_path / folder)
        build.exported["notes"] = "; ".join(notes)
        return build

    assert build_with([], "plain").status == 7
    replaced = build_with([StandIn("test", "exit 7", "true", "why")], "replaced")
    assert replaced.status == 0 and "stand-in for `exit 7`: why" in replaced.exported["notes"]
    assert replaced.log is not None and "after" in replaced.log.read_text()


@pytest.mark.req("R4.4")
def test_the_source_artifact_is_a_zip_without_git_venv_or_execute_bits(world: World, tmp_path: Path) -> None:
    repository = tmp_path / "github"
    (repository / "pipelines").mkdir(parents=True)
    script = repository / "pipelines" / "run.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o755)
    (repository / ".gitignore").write_text(".venv/\n")
    (repository / ".venv").mkdir()
    (repository / ".venv" / "marker").write_text("ignored")
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repository, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repository, check=True)
    subprocess.run(["git", *identity, "commit", "-q", "-m", "first"], cwd=repository, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repository, capture_output=True, text=True).stdout.strip()
    with pipeline_over(world, tmp_path, repository) as pipeline:
        execution = Execution(id="e1", commit=commit)
        action = Action("Source", "Source", "Source", 1, {"BranchName": "main"}, [], ["Source"], "SourceVariables")
        ok, detail = pipeline.source(execution, action)
    delivered = execution.artifacts["Source"]
    assert ok and "first" in detail
    assert (delivered / "pipelines" / "run.sh").read_text() == "#!/bin/sh\necho ran\n"
    assert not os.access(delivered / "pipelines" / "run.sh", os.X_OK)
    assert not (delivered / ".git").exists() and not (delivered / ".venv").exists()
    assert execution.variables["SourceVariables"]["CommitId"] == commit


@contextmanager
def pipeline_over(world: World, root: Path, repository: Path) -> Iterator[Pipeline]:
    """A Pipeline over `repository` with no stand-ins, its services closed afterwards."""
    services = Services(world)
    try:
        yield Pipeline(
            world=world,
            machine=Machine(root / "machine", root / "world.json", world.endpoint),
            services=services,
            repository=repository,
            root=root,
            stand_ins=[],
            record=lambda _: None,
        )
    finally:
        services.close()


@pytest.mark.req("R4.4")
def test_the_pipeline_is_read_from_the_applied_state_not_typed_again(world: World) -> None:
    account, bucket = "444444444444", "canvalo-tfstate-444444444444-eu-west-1"
    s3 = world.client(account, "s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    stage = {
        "name": "Beta",
        "action": [
            {"name": "Apply", "category": "Build", "run_order": 2, "configuration": {"ProjectName": "deploy"}},
            {"name": "Plan", "category": "Build", "run_order": 1, "configuration": {"ProjectName": "deploy"}},
        ],
    }
    state = {
        "resources": {
            "aws_codepipeline.p": {"config": {"name": "canvalo-beta-pipeline", "stage": [stage]}},
            "aws_codebuild_project.d": {
                "config": {"name": "deploy", "service_role": "arn:aws:iam::444444444444:role/canvalo/deploy"}
            },
        }
    }
    s3.put_object(Bucket=bucket, Key="pipeline/terraform.tfstate", Body=json.dumps(state).encode())
    located = World(
        world.endpoint, world.region, states={"pipeline": StateLocation(account, bucket, "pipeline/terraform.tfstate")}
    )
    definition = read_definition(located)
    ((name, actions),) = definition.stages
    assert name == "Beta" and [a.name for a in actions] == ["Plan", "Apply"], "run order decides"
    assert definition.roles == {"deploy": "arn:aws:iam::444444444444:role/canvalo/deploy"}


WINDOW_RULE = {
    "name": "DeploymentWindow",
    "rule_type_id": {"category": "Rule", "owner": "AWS", "provider": "DeploymentWindow", "version": "1"},
    "configuration": {"Cron": "* * 8-16 ? * MON-FRI *", "TimeZone": "UTC"},
}


@pytest.mark.req("R4.2", "R4.3")
def test_a_stage_whose_window_is_closed_waits_for_it_to_open_and_is_then_entered_without_a_retry(
    world: World, tmp_path: Path
) -> None:
    """As AWS documents the DeploymentWindow rule: the entry condition waits (it does not fail the stage), on
    the rehearsal's clock, which moves to the opening instead of sleeping."""
    saturday_night = datetime.datetime(2027, 3, 6, 22, 0, tzinfo=datetime.UTC)
    monday = datetime.datetime(2027, 3, 8, 8, 0, tzinfo=datetime.UTC)
    definition = Definition(
        name="p", stages=[], projects={}, roles={}, entry={"Prod": EntryCondition("FAIL", [WINDOW_RULE])}
    )
    steps: list[Step] = []
    with pipeline_over(world, tmp_path, tmp_path) as pipeline:
        pipeline.record, pipeline.clock = steps.append, Clock(saturday_night)
        assert pipeline.enter(definition, Execution(id="e1", commit="c"), "Prod") == (True, "")
        assert monday <= pipeline.clock.now() < monday + datetime.timedelta(minutes=1)
        (waited,) = steps
        assert (waited.stage, waited.result) == ("Prod", "Waited") and "opened at Mon 2027-03-08 08:00" in waited.detail
        steps.clear()
        assert pipeline.enter(definition, Execution(id="e2", commit="c"), "Prod") == (True, ""), "open: at once"
        assert not steps


@pytest.mark.req("R4.2", "R4.3")
def test_a_window_that_never_opens_fails_the_stage_and_no_other_condition_is_guessed_at(
    world: World, tmp_path: Path
) -> None:
    """The pipeline's only entry conditions are FAIL conditions of DeploymentWindow rules: any other rule or result
    stops the rehearsal with a RuntimeError instead of being played some way AWS may not play it."""
    never = {**WINDOW_RULE, "configuration": {"Cron": "* * 8-16 ? * MON-FRI 2020", "TimeZone": "UTC"}}
    check = {
        "name": "SomeVariable",
        "rule_type_id": {"category": "Rule", "owner": "AWS", "provider": "VariableCheck", "version": "1"},
        "configuration": {"Variable": "#{Namespace.NAME}", "Value": "true", "Operator": "EQ"},
    }
    entry = {
        "Never": EntryCondition("FAIL", [never]),
        "Checked": EntryCondition("FAIL", [WINDOW_RULE, check]),
        "Skipped": EntryCondition("SKIP", [WINDOW_RULE]),
    }
    definition = Definition(name="p", stages=[], projects={}, roles={}, entry=entry)
    with pipeline_over(world, tmp_path, tmp_path) as pipeline:
        entered, why = pipeline.enter(definition, Execution(id="e1", commit="c"), "Never")
        assert not entered and "does not open" in why
        with pytest.raises(RuntimeError, match="VariableCheck: the rehearsal models DeploymentWindow rules only"):
            pipeline.enter(definition, Execution(id="e2", commit="c"), "Checked")
        with pytest.raises(RuntimeError, match="FAIL entry conditions only, not SKIP"):
            pipeline.enter(definition, Execution(id="e3", commit="c"), "Skipped")


@pytest.mark.req("R4.3")
def test_the_rehearsals_codepipeline_says_who_answered_each_approval(world: World) -> None:
    services = Services(world)
    try:
        execution = Execution(id="0b8e6f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b", commit="c0ffee")
        approver = "arn:aws:sts::444444444444:assumed-role/canvalo-release-approver/reviewer"
        execution.approvers[("Prod", "Approve")] = approver
        services.executions[execution.id] = execution
        client = boto3.client(
            "codepipeline",
            endpoint_url=services.url,
            region_name="eu-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        details = client.list_action_executions(
            pipelineName="canvalo-beta-pipeline", filter={"pipelineExecutionId": execution.id}
        )["actionExecutionDetails"]
    finally:
        services.close()
    assert [(d["stageName"], d["actionName"], d["status"], d["updatedBy"]) for d in details] == [
        ("Prod", "Approve", "Succeeded", approver)
    ]


@pytest.mark.req("R4.3")
def test_the_rehearsals_pipeline_state_shows_each_stage_as_its_latest_execution_left_it(world: World) -> None:
    services = Services(world)
    try:
        older = Execution(id="0b8e6f7a-1c2d-4e5f-8a9b-000000000001", commit="c0ffee")
        older.done_actions.update({("Beta", "Apply"), ("Prod", "Apply")})
        newer = Execution(id="0b8e6f7a-1c2d-4e5f-8a9b-000000000002", commit="decaf")
        newer.done_actions.add(("Beta", "Apply"))
        services.executions.update({older.id: older, newer.id: newer})
        client = boto3.client(
            "codepipeline",
            endpoint_url=services.url,
            region_name="eu-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        states = client.get_pipeline_state(name="canvalo-beta-pipeline")["stageStates"]
    finally:
        services.close()
    latest = {s["stageName"]: s["latestExecution"]["pipelineExecutionId"] for s in states}
    assert latest == {"Beta": newer.id, "Prod": older.id}
    # Between executions no approval is in progress (no token), as make status then reads it.
    actions = [a for s in states for a in s["actionStates"]]
    assert actions and all(a["latestExecution"] == {"status": "Succeeded"} for a in actions)


def codepipeline_client(services: Services) -> Any:
    """A boto3 CodePipeline client of the rehearsal's server, as a build's AWS_ENDPOINT_URL_CODEPIPELINE makes it."""
    return boto3.client(
        "codepipeline",
        endpoint_url=services.url,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


# Prod's run orders 2 and 3 as modules/pipeline.py defines them: Review beside Approve, then Apply.
REVIEW_SESSION = "arn:aws:sts::444444444444:assumed-role/canvalo-beta-pipeline-review/codebuild"
REVIEW = Action("Prod", "Review", "Build", 2, {"ProjectName": "canvalo-beta-pipeline-review"}, ["Source"], [], None)
APPROVE = Action(
    "Prod",
    "Approve",
    "Approval",
    2,
    {"CustomData": "Prod plan of commit #{SourceVariables.CommitId}: #{ProdPlan.PLAN_HEADLINE}."},
    [],
    [],
    None,
)
APPLY = Action("Prod", "Apply", "Build", 3, {"ProjectName": "canvalo-beta-pipeline-apply-prod"}, ["Source"], [], None)
PROD_DEFINITION = Definition(
    name="canvalo-beta-pipeline", stages=[("Prod", [REVIEW, APPROVE, APPLY])], projects={}, roles={}
)


def builds_with_review(services: Services, manifest: dict[str, Any]) -> Any:
    """Pipeline.codebuild without a build: Review runs pipelines/review.py against the rehearsal's CodePipeline as
    the Review role's session (as Pipeline.codebuild sets the caller), any other build just succeeds."""

    def build(definition: Definition, execution: Execution, action: Action) -> tuple[bool, str]:
        if action.name != "Review":
            return True, "ran"
        services.caller, services.calling_action = REVIEW_SESSION, action.name
        line = review(
            codepipeline_client(services),
            pipeline=definition.name,
            execution_id=execution.id,
            approval="Prod/Approve",
            person_approves="changes",
            manifest=manifest,
            # The token is in progress before Review runs: no wait.
            wait_seconds=0,
        )
        return True, line

    return build


def run_prod(
    world: World, root: Path, monkeypatch: pytest.MonkeyPatch, manifest: dict[str, Any], person_approves: bool
) -> tuple[Pipeline, Execution, list[Step], list[str]]:
    """Prod's Review, Approve and Apply over a plan that `manifest` describes: the pipeline, the execution, the
    steps it recorded and the messages the person was asked about."""
    steps: list[Step] = []
    asked: list[str] = []

    def person(stage: str, message: str) -> bool:
        asked.append(f"{stage}: {message}")
        return person_approves

    with pipeline_over(world, root, root) as pipeline:
        pipeline.record, pipeline.reviewer = steps.append, person
        monkeypatch.setattr(pipeline, "codebuild", builds_with_review(pipeline.services, manifest))
        execution = Execution(id=new_execution_id(), commit="c0ffee")
        execution.variables = {"SourceVariables": {"CommitId": "c0ffee"}, "ProdPlan": {"PLAN_HEADLINE": "1 to change"}}
        pipeline.services.executions[execution.id] = execution
        (stage, actions), *_ = PROD_DEFINITION.stages
        # The stage runs as the scheduler drives it (Pipeline.run_queue), move by move; every answer here is
        # given at once, so it ends within a few moves.
        moves = pipeline.run_stage(PROD_DEFINITION, execution, stage, actions)
        for _ in range(100):
            try:
                next(moves)
            except StopIteration:
                break
        else:
            raise AssertionError("the stage did not end within 100 moves")
    return pipeline, execution, steps, asked


@pytest.mark.req("R4.3")
def test_an_approval_that_review_answers_through_put_approval_result_asks_no_person(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, execution, steps, asked = run_prod(world, tmp_path, monkeypatch, {"changes": False}, True)
    assert asked == [] and pipeline.approvals["Prod"] == 0, "Review's approval is not a person's"
    assert execution.approvers == {("Prod", "Approve"): REVIEW_SESSION}
    assert [(s.action, s.result) for s in steps] == [
        ("Review", "Succeeded"),
        ("Approve", "Succeeded"),
        ("Apply", "Succeeded"),
    ]
    assert steps[1].detail.startswith(f"approved by Review ({REVIEW_SESSION}): Review: the plans")
    assert not execution.pending and not execution.stage_in_progress, "nothing left in progress after the stage"


@pytest.mark.req("R4.3")
def test_an_approval_review_leaves_alone_is_a_persons_and_counted(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, execution, steps, asked = run_prod(world, tmp_path, monkeypatch, {"changes": True}, True)
    assert asked == ["Prod: Prod plan of commit c0ffee: 1 to change."]
    assert pipeline.approvals["Prod"] == 1
    assert execution.approvers == {("Prod", "Approve"): pipeline.approver}
    assert "waits for one of the stage's approvers" in steps[0].detail
    assert steps[1].detail.startswith("approved by the rehearsal (a person): Prod plan of commit c0ffee")
    assert execution.status != "Failed" and ("Prod", "Apply") in execution.done_actions


@pytest.mark.req("R4.3")
def test_a_persons_rejection_fails_the_stage_before_its_apply(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, execution, steps, _ = run_prod(world, tmp_path, monkeypatch, {"changes": True}, False)
    assert execution.status == "Failed" and pipeline.approvals["Prod"] == 0 and not execution.approvers
    assert [(s.action, s.result) for s in steps] == [("Review", "Succeeded"), ("Approve", "Failed")]
    assert steps[-1].detail.startswith("rejected by the rehearsal (a person)")


@pytest.mark.req("R4.3")
def test_put_approval_result_answers_only_the_token_of_an_approval_in_progress(world: World) -> None:
    services = Services(world)
    token = str(uuid.uuid4())
    execution = Execution(id=new_execution_id(), commit="c0ffee", stage_in_progress="Prod")
    execution.pending[("Prod", "Approve")] = token
    answer = {
        "pipelineName": "canvalo-beta-pipeline",
        "stageName": "Prod",
        "actionName": "Approve",
        "result": {"summary": "no change", "status": "Approved"},
    }
    try:
        services.executions[execution.id] = execution
        services.pipeline_name = "canvalo-beta-pipeline"
        services.caller, services.calling_action = REVIEW_SESSION, "Review"
        client = codepipeline_client(services)
        (prod,) = client.get_pipeline_state(name="canvalo-beta-pipeline")["stageStates"]
        assert prod["latestExecution"] == {"pipelineExecutionId": execution.id, "status": "InProgress"}
        assert prod["actionStates"] == [
            {"actionName": "Approve", "latestExecution": {"status": "InProgress", "token": token}}
        ]
        status, refused = services.codepipeline("PutApprovalResult", {**answer, "token": str(uuid.uuid4())}, "")
        assert (status, refused["__type"]) == (400, "InvalidApprovalTokenException")
        with pytest.raises(ClientError, match="PipelineNotFoundException"):
            client.put_approval_result(**{**answer, "pipelineName": "another-pipeline"}, token=token)
        client.put_approval_result(**answer, token=token)
        with pytest.raises(ClientError, match="ApprovalAlreadyCompletedException"):
            client.put_approval_result(**answer, token=token)
        (prod,) = client.get_pipeline_state(name="canvalo-beta-pipeline")["stageStates"]
    finally:
        services.close()
    assert execution.answers == {
        ("Prod", "Approve"): ApprovalAnswer(token, "Approved", "no change", REVIEW_SESSION, "Review")
    }
    assert not execution.pending and prod["actionStates"] == [], "answered: no token handed out any more"


@pytest.mark.req("R4.4")
@pytest.mark.parametrize("same_requirements", [True, False])
def test_a_build_links_the_images_toolkit_environment_only_for_the_same_requirements(
    tmp_path: Path, same_requirements: bool
) -> None:
    """The build image's one toolkit environment stands in for a build's own only when the build's verified
    toolkit asks for the requirements it was made from; otherwise the build makes its own, as in CodeBuild."""
    prebuilt = tmp_path / "image-venv"
    prebuilt.mkdir()
    toolkit = tmp_path / "toolkit"
    (toolkit / "pipelines").mkdir(parents=True)
    # No requirement at all: the build's own `pip install` has nothing to fetch, and still must run.
    (toolkit / TOOLKIT_REQUIREMENTS).write_text("")
    wanted = hashlib.sha256(b"" if same_requirements else b"boto3==1.0 --hash=sha256:00\n").hexdigest()
    install = "\n".join(PipelineToolkit.install_commands().splitlines()[:2])
    notes: list[str] = []
    script = stand_in_lines(install, toolkit_environment_stand_ins(prebuilt, wanted), notes)
    subprocess.run(["bash", "-ec", script], env={**os.environ, "TOOLKIT_DIR": str(toolkit)}, check=True)
    venv = toolkit / ".venv"
    assert venv.is_symlink() is same_requirements
    assert (venv.resolve() == prebuilt) is same_requirements
    assert (venv / "pyvenv.cfg").is_file() is not same_requirements
    assert notes == []


@pytest.mark.req("R4.4")
def test_an_action_whose_variable_no_earlier_action_produced_fails_as_in_codepipeline(
    world: World, tmp_path: Path
) -> None:
    """CodePipeline fails such an action ("one or more variables could not be resolved") instead of passing ""
    on: a build that would run with an empty image digest or commit id never starts."""
    variables = [{"name": "IMAGE_DIGEST", "value": "#{BuildVariables.IMAGE_DIGEST}", "type": "PLAINTEXT"}]
    action = Action(
        "Beta", "Plan", "Build", 1, {"ProjectName": "plan", "EnvironmentVariables": json.dumps(variables)}, [], [], None
    )
    definition = Definition(
        name="p", stages=[], projects={"plan": {}}, roles={"plan": "arn:aws:iam::1:role/p"}, entry={}
    )
    with pipeline_over(world, tmp_path, tmp_path) as pipeline:
        ok, detail = pipeline.codebuild(definition, Execution(id="e1", commit="c"), action)
        assert not ok
        assert detail == (
            "An action in this pipeline failed because one or more variables could not be resolved: "
            "Action name=Plan (#{BuildVariables.IMAGE_DIGEST})"
        )
        assert pipeline.counter == 0, "no build ran"
        produced = Execution(id="e2", commit="c", variables={"BuildVariables": {"IMAGE_DIGEST": ""}})
        assert (
            substitute("#{BuildVariables.IMAGE_DIGEST}@#{codepipeline.PipelineExecutionId}", produced, "Plan") == "@e2"
        )
    with pytest.raises(UnresolvedVariableError, match=r"Action name=Approve \(#\{SourceVariables.CommitId\}\)"):
        substitute("commit #{SourceVariables.CommitId}", Execution(id="e3", commit="c"), "Approve")
