"""The administrator's `CANVALO_*` settings travel with the `pipeline` stack (R4.4, R4.9, R4.10, R6.3, R6.6).

An administrator deploys the pipeline with settings in their environment; every synth inside the
pipeline runs in a CodeBuild project's environment instead. These tests synthesize the pipeline stack as
the administrator would, then as the UpdatePipeline action would from that result, and compare.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from stacks.config import ProjectConfig, load_project_config
from tests.infra.conftest import Document, resources
from tools.requirements import PROJECT_ROOT

FIXTURE_CONTEXT = PROJECT_ROOT / "tests" / "fixtures" / "context.json"
# The fake configuration, when tests/fixtures/context.json does not provide it.
CONTEXT: dict[str, Any] = {
    "region": "eu-west-1",
    "branch": "main",
    "repository": "canvalo/canvalo",
    "imageTag": "unreleased",
    "bedrockModelId": "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "stages": {
        "beta": {"account_id": "111111111111"},
        "gamma": {"account_id": "222222222222"},
        "prod": {"account_id": "333333333333", "domain_name": "canvalo.example.com"},
    },
}
ADMINISTRATOR = {
    "CANVALO_BETA_ACCOUNT_ID": "444444444444",
    "CANVALO_GAMMA_ACCOUNT_ID": "555555555555",
    "CANVALO_PROD_ACCOUNT_ID": "666666666666",
    "CANVALO_BRANCH": "release",
    "CANVALO_NOTIFICATION_EMAIL": "ops@example.com",
}
# What an administrator's shell holds besides the settings: none of it is a setting.
SHELL = {"HOME": "/home/admin", "AWS_PROFILE": "beta-admin", "CANVALO_ALLOW_DESTROY": ""}
# What CodeBuild and the UpdatePipeline action add to a build's environment.
CODEBUILD = {"PIPELINE_EXECUTION_ID": "0f1e2d3c-execution", "CODEBUILD_SRC_DIR": "/codebuild/output/src1/src"}
PREFIX = "canvalo-beta-pipeline"
FORWARDED_TO = ("update-pipeline", "build", "deploy", "smoke", "drift")

Synth = Callable[[Mapping[str, str]], Document]


def context() -> dict[str, Any]:
    if FIXTURE_CONTEXT.exists():
        loaded: dict[str, Any] = json.loads(FIXTURE_CONTEXT.read_text())
        return loaded
    return CONTEXT


def load(environ: Mapping[str, str], **overrides: Any) -> ProjectConfig:
    return load_project_config({**context(), **overrides}, environ)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Synthesize only the pipeline stack from the fixture context and `environ`; its JSON."""
    from cdktn import App

    from stacks.pipeline import PipelineStack

    target_versions = json.loads((PROJECT_ROOT / "cdktf.json").read_text())["targetVersions"]

    def run(environ: Mapping[str, str]) -> Document:
        outdir = tmp_path_factory.mktemp("pipeline-settings")
        app = App(outdir=str(outdir), context={"targetVersions": target_versions})
        PipelineStack(app, project=load(environ))
        app.synth()
        document: Document = json.loads((Path(outdir) / "stacks" / "pipeline" / "cdk.tf.json").read_text())
        return document

    return run


@pytest.fixture(scope="module")
def administered(synth: Synth) -> Document:
    """`cdktn deploy pipeline` from an administrator's shell with settings in it."""
    return synth(SHELL | ADMINISTRATOR)


def project_environment(document: Document, kind: str) -> dict[str, str]:
    (project,) = [p for p in resources(document, "aws_codebuild_project").values() if p["name"] == f"{PREFIX}-{kind}"]
    variables = project["environment"].get("environment_variable", [])
    assert all(v["type"] == "PLAINTEXT" for v in variables)
    return {v["name"]: v["value"] for v in variables}


def canvalo_variables(environment: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in environment.items() if name.startswith("CANVALO_")}


def trigger_branches(document: Document) -> list[str]:
    (pipeline,) = resources(document, "aws_codepipeline").values()
    branches: list[str] = pipeline["trigger"][0]["git_configuration"]["push"][0]["branches"]["includes"]
    return branches


@pytest.mark.req("R6.3")
def test_load_records_the_environments_settings_raw_and_sorted() -> None:
    project = load(SHELL | ADMINISTRATOR | {"CANVALO_GAMMA_MIN_TASKS": " 3", "CANVALO_REGION": "eu-west-1"})
    assert [name for name, _ in project.settings_from_environment] == sorted(
        [*ADMINISTRATOR, "CANVALO_GAMMA_MIN_TASKS", "CANVALO_REGION"]
    )
    assert project.environment_settings["CANVALO_GAMMA_MIN_TASKS"] == " 3", "the value as given, not as parsed"
    assert load({}).environment_settings == {}


@pytest.mark.req("R6.3", "R4.4")
def test_the_image_tag_and_committed_context_are_not_forwarded() -> None:
    committed = load({"CANVALO_IMAGE_TAG": "0123abcd"}, branch="release", notificationEmail="ops@example.com")
    assert committed.image_tag == "0123abcd" and committed.branch == "release"
    assert committed.environment_settings == {}, "cdktf.json comes with each commit; the tag with each build"


@pytest.mark.req("R6.3", "R4.4", "R4.9", "R6.6")
def test_every_project_that_synthesizes_gets_the_administrators_settings(administered: Document) -> None:
    for kind in FORWARDED_TO:
        environment = project_environment(administered, kind)
        assert canvalo_variables(environment) == ADMINISTRATOR, kind
    assert project_environment(administered, "drift")["STAGE"] == "prod", "a project's own variables stay"
    assert canvalo_variables(project_environment(administered, "test")) == {}, "make test runs on the fixtures"


@pytest.mark.req("R6.3", "R4.4")
def test_without_settings_no_project_gets_any(synth: Synth) -> None:
    plain = synth(SHELL)
    for kind in (*FORWARDED_TO, "test"):
        assert canvalo_variables(project_environment(plain, kind)) == {}, kind


@pytest.mark.req("R4.4", "R4.9", "R4.10", "R6.6")
def test_a_synth_inside_the_pipeline_reproduces_the_administrators_stack(synth: Synth, administered: Document) -> None:
    # CodeBuild hands `make synth` the project's variables, the action's and its own (none of them CANVALO_).
    inside = project_environment(administered, "update-pipeline") | CODEBUILD
    assert synth(inside) == administered, "a self-update would change what the administrator deployed"


@pytest.mark.req("R4.4", "R4.9", "R4.10")
def test_without_the_settings_a_self_update_would_revert_them(synth: Synth, administered: Document) -> None:
    inside = project_environment(administered, "update-pipeline") | CODEBUILD
    before = {name: value for name, value in inside.items() if name not in ADMINISTRATOR}
    reverted = synth(before)
    assert trigger_branches(administered) == ["release"]
    assert trigger_branches(reverted) == ["main"], "the committed branch would replace the administrator's"
    assert reverted["terraform"]["backend"] != administered["terraform"]["backend"], "another account's state"
