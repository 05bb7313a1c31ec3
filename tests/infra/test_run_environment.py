"""Stage data is read once, at synth: the pipeline stack hands each privileged project the values its scripts
read (stacks/run_environment.py), and those scripts find there what the configuration says."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from names import OWN_ROLE, STAGE_RUN_VALUES
from pipelines.stage_credentials import main as stage_credentials
from stacks.config import with_stage
from stacks.run_environment import run_environment, stage_run_values
from tests.infra.conftest import Document, resources, synth_pipeline_stack
from tests.support.config import fixture_project

PREFIX = "canvalo-beta-pipeline"
# The projects whose scripts read stage data, and the stages each works in.
STAGES_OF = {"plan": ("beta", "gamma", "prod"), "deploy": ("beta",), "apply-gamma": ("gamma",), "apply-prod": ("prod",)}


@pytest.fixture(scope="module")
def pipeline(stacks: dict[str, Document]) -> Document:
    return stacks["pipeline"]


def environment_of(document: Document, kind: str) -> dict[str, str]:
    (project,) = [p for p in resources(document, "aws_codebuild_project").values() if p["name"] == f"{PREFIX}-{kind}"]
    return {v["name"]: v["value"] for v in project["environment"]["environment_variable"]}


def test_each_stage_hands_on_exactly_the_values_the_scripts_read() -> None:
    project = fixture_project()
    for stage in project.stages:
        assert tuple(stage_run_values(project, stage)) == STAGE_RUN_VALUES, stage.name


@pytest.mark.req("R4.6", "R4.8")
def test_each_privileged_project_holds_the_run_values_of_the_stages_it_works_in(pipeline: Document) -> None:
    project = fixture_project()
    for kind, stage_names in STAGES_OF.items():
        expected = run_environment(project, [project.stage(name) for name in stage_names])
        environment = environment_of(pipeline, kind)
        assert {name: environment.get(name) for name in expected} == expected, kind
        others = {"BETA", "GAMMA", "PROD"} - {name.upper() for name in stage_names}
        assert not [name for name in environment if name.split("_")[0] in others], f"{kind}: another stage's values"
    plan = environment_of(pipeline, "plan")
    assert plan["GAMMA_PLAN_ROLE_ARN"] == "arn:aws:iam::222222222222:role/canvalo/canvalo-plan"
    assert plan["PROD_DEPLOY_ROLE_ARN"] == "arn:aws:iam::333333333333:role/canvalo/canvalo-deploy"
    assert plan["BETA_PLAN_ROLE_ARN"] == plan["BETA_DEPLOY_ROLE_ARN"] == OWN_ROLE, "beta: the action's own role"
    assert plan["PROD_ALARM_PREFIX"] == "canvalo-prod-" and plan["PROD_REGION"] == "eu-west-1"


@pytest.mark.req("R4.6")
def test_the_scripts_find_the_stage_roles_in_the_environment_the_stack_synthesized(
    pipeline: Document, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environment = environment_of(pipeline, "plan")
    for stage, expected in (("prod", "arn:aws:iam::333333333333:role/canvalo/canvalo-plan"), ("beta", "")):
        argv = ["--stage", stage, "--role", "plan", "--arn", "--config-file", str(tmp_path / "c")]
        assert stage_credentials(argv, environ=environment) == 0
        assert capsys.readouterr().out == expected + "\n"


def test_a_stage_data_edit_changes_the_projects_environment_not_the_pinned_buildspecs(
    pipeline: Document, tmp_path: Path
) -> None:
    """An account id is data: it changes what the projects are told (an administrator applies a project
    change, as for the pipeline policies that name the account), never the pinned buildspecs and toolkit hash."""
    project = fixture_project()
    moved = with_stage(project, replace(project.stage("gamma"), account_id="444444444444"))
    edited = synth_pipeline_stack(tmp_path, moved)
    deploy_role = environment_of(edited, "apply-gamma")["GAMMA_DEPLOY_ROLE_ARN"]
    assert deploy_role == "arn:aws:iam::444444444444:role/canvalo/canvalo-deploy"
    for kind in STAGES_OF:
        (before,) = [
            p for p in resources(pipeline, "aws_codebuild_project").values() if p["name"] == f"{PREFIX}-{kind}"
        ]
        (after,) = [p for p in resources(edited, "aws_codebuild_project").values() if p["name"] == f"{PREFIX}-{kind}"]
        assert after["source"]["buildspec"] == before["source"]["buildspec"], kind
