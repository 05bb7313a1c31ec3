"""`pipeline`: the CodePipeline in the beta account, its CodeBuild projects and their roles (R4, R6.6, R10)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import yaml
from cdktn import App, TerraformStack
from cdktn_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement

from modules.container_registry import MIN_KEPT_IMAGES, ContainerRegistry
from modules.iam import statement
from modules.pipeline import BAKE_RESULT_VARIABLE, BUILDSPECS, PIPELINE_OWNED, TERRAFORM_VERSION
from modules.pipeline_roles import KMS_ACTIONS_WITHOUT_RESOURCE_SCOPE, boundary_statements
from modules.pipeline_toolkit import PipelineToolkit, toolkit_sha256
from stacks.config import ConfigError
from stacks.pipeline import BAKE_MARGIN_MINUTES
from tests.infra.conftest import Document, data_sources, one, policy_statements, resources, synth_pipeline_stack
from tests.support.config import fixture_project
from tests.support.iam_policy import Stack
from tools.requirements import PROJECT_ROOT

BETA, GAMMA, PROD = "111111111111", "222222222222", "333333333333"
PIPELINE_ARN = f"arn:aws:codepipeline:eu-west-1:{BETA}:canvalo-beta-pipeline"
DEPLOY_ROLE = "canvalo-pipeline-deploy"
PLAN_ROLE = "canvalo-beta-pipeline-plan"
STAGE_DEPLOY_ROLES = [
    f"arn:aws:iam::{GAMMA}:role/canvalo/canvalo-deploy",
    f"arn:aws:iam::{PROD}:role/canvalo/canvalo-deploy",
]
EXPECTED_STAGES = [
    "Source",
    "Test",
    "Build",
    "UpdatePipeline",
    # Each holds its plan, approval and apply: QUEUED mode locks stages, so no other execution interleaves.
    *("Beta", "Gamma", "Prod"),
]
DEPLOY_STAGES = {"Beta": "beta", "Gamma": "gamma", "Prod": "prod"}
# Verbs of the actions that read; anything else the plan role holds is listed in PLAN_ROLE_WRITES.
READS = ("Describe", "Get", "List", "Head", "BatchGet", "Decrypt")
PLAN_ROLE_WRITES = [
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "s3:PutObject",
    "kms:Encrypt",
    "kms:GenerateDataKey*",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    "s3:DeleteObject",
    "sts:AssumeRole",
    "sns:Publish",
    "ssm:PutParameter",
    "codestar-connections:UseConnection",
    "codeconnections:UseConnection",
]


@pytest.fixture(scope="module")
def pipeline(stacks: dict[str, Document]) -> Document:
    return stacks["pipeline"]


def codepipeline(document: Document) -> Document:
    return one(document, "aws_codepipeline")


def stage(document: Document, name: str) -> Document:
    return next(s for s in codepipeline(document)["stage"] if s["name"] == name)


def action_environment(action: Document) -> dict[str, str]:
    variables = json.loads(action["configuration"].get("EnvironmentVariables", "[]"))
    return {variable["name"]: variable["value"] for variable in variables}


def pinned_buildspec(kind: str) -> str:
    """What a pipeline-owned project runs: its repository buildspec, inlined after the check of this checkout's toolkit."""
    toolkit = PipelineToolkit(toolkit_sha256(PROJECT_ROOT))
    inline = toolkit.inline_buildspec((PROJECT_ROOT / BUILDSPECS[kind]).read_text(), source=BUILDSPECS[kind])
    # As Terraform JSON holds it: `${` and `%{` escaped, or Terraform would read `${STAGE^}` as an expression.
    return inline.replace("${", "$${").replace("%{", "%%{")


@pytest.mark.req("R4.6")
def test_an_inline_buildspec_reaches_codebuild_as_written(pipeline: Document) -> None:
    for kind in PIPELINE_OWNED:
        held = project_named(pipeline, f"canvalo-beta-pipeline-{kind}")["source"]["buildspec"]
        assert not re.search(r"(?<!\$)\$\{|(?<!%)%\{", held), f"{kind}: an unescaped interpolation"
    deploy = project_named(pipeline, "canvalo-beta-pipeline-deploy")["source"]["buildspec"]
    assert 'plan_input="CODEBUILD_SRC_DIR_$${STAGE^}Plan"' in deploy, "bash's ${STAGE^}, not a Terraform expression"


def test_every_project_running_the_pinned_toolkit_is_told_the_terraform_version_its_install_checks(
    pipeline: Document,
) -> None:
    for kind in sorted(PIPELINE_OWNED | {"apply-gamma", "apply-prod"}):
        project = project_named(pipeline, f"canvalo-beta-pipeline-{kind}")
        environment = {v["name"]: v["value"] for v in project["environment"]["environment_variable"]}
        assert environment.get("TERRAFORM_VERSION") == TERRAFORM_VERSION, kind


def project_named(document: Document, name: str) -> Document:
    (found,) = [p for p in resources(document, "aws_codebuild_project").values() if p["name"] == name]
    return found


def role_of_project(document: Document, project_name: str) -> Document:
    reference = project_named(document, project_name)["service_role"]
    logical = reference.removeprefix("${aws_iam_role.").removesuffix(".arn}")
    return resources(document, "aws_iam_role")[logical]


def role_named(document: Document, name: str) -> tuple[str, Document]:
    (found,) = [(k, r) for k, r in resources(document, "aws_iam_role").items() if r["name"] == name]
    return found


def role_statements(document: Document, role_name: str) -> list[Document]:
    logical, _ = role_named(document, role_name)
    (policy,) = [
        p
        for p in resources(document, "aws_iam_role_policy").values()
        if p["role"] == f"${{aws_iam_role.{logical}.name}}"
    ]
    return policy_statements(document, policy["policy"])


def allowed_actions(statements: list[Document]) -> list[str]:
    return [action for s in statements if s["effect"] == "Allow" for action in s["actions"]]


def deploy_actions(document: Document) -> Iterator[tuple[str, Document]]:
    for stage_document in codepipeline(document)["stage"]:
        for action in stage_document["action"]:
            if action["configuration"].get("ProjectName") == "canvalo-beta-pipeline-deploy":
                yield stage_document["name"], action


@pytest.mark.req("R4.7", "R4.8")
def test_pipeline_lives_in_the_beta_account_with_its_own_state(pipeline: Document) -> None:
    (provider,) = pipeline["provider"]["aws"]
    assert provider["allowed_account_ids"] == [BETA]
    assert "assume_role" not in provider, "the pipeline stack is applied with the beta account's own credentials"
    backend = pipeline["terraform"]["backend"]["s3"]
    assert backend["key"] == "pipeline/terraform.tfstate"
    assert backend["bucket"] == f"canvalo-tfstate-{BETA}-eu-west-1"


@pytest.mark.req("R4.1", "R4.9")
def test_pipeline_is_v2_queued_and_started_by_a_push_to_the_branch(pipeline: Document) -> None:
    resource = codepipeline(pipeline)
    assert resource["pipeline_type"] == "V2"
    assert resource["execution_mode"] == "QUEUED", "two executions must never apply to the same state at once"
    (trigger,) = resource["trigger"]
    assert trigger["provider_type"] == "CodeStarSourceConnection"
    assert trigger["git_configuration"] == {
        "source_action_name": "Source",
        # A push that changes only documentation starts nothing (excludes win over includes).
        "push": [
            {"branches": {"includes": ["main"]}, "file_paths": {"includes": ["**"], "excludes": ["docs/**", "**.md"]}}
        ],
    }
    (source,) = stage(pipeline, "Source")["action"]
    assert source["provider"] == "CodeStarSourceConnection"
    assert source["configuration"]["BranchName"] == "main"
    assert source["configuration"]["FullRepositoryId"] == "canvalo/canvalo"


@pytest.mark.req("R4.2", "R4.4")
def test_stages_run_in_order_update_test_build_then_beta_gamma_prod(pipeline: Document) -> None:
    assert [s["name"] for s in codepipeline(pipeline)["stage"]] == EXPECTED_STAGES
    order = [DEPLOY_STAGES[name] for name, _ in deploy_actions(pipeline)]
    assert order == sorted(order, key=["beta", "gamma", "prod"].index), "a later stage deploys before an earlier one"


@pytest.mark.req("R4.4")
def test_update_stage_applies_only_the_pipeline_stack_and_may_restart_the_pipeline(pipeline: Document) -> None:
    (action,) = stage(pipeline, "UpdatePipeline")["action"]
    project = project_named(pipeline, action["configuration"]["ProjectName"])
    assert project["source"]["buildspec"] == pinned_buildspec("update-pipeline")
    # The toolkit from the commit (checked against the pinned hash), the stack as Build synthesized it.
    assert action["input_artifacts"] == ["Source", "Build"]
    assert action_environment(action) == {"PIPELINE_EXECUTION_ID": "#{codepipeline.PipelineExecutionId}"}
    environment = {v["name"]: v["value"] for v in project["environment"]["environment_variable"]}
    assert environment == {"PIPELINE_NAME": "canvalo-beta-pipeline", "TERRAFORM_VERSION": TERRAFORM_VERSION}
    statements = role_statements(pipeline, role_of_project(pipeline, project["name"])["name"])
    by_sid = {s["sid"]: s for s in statements}
    assert by_sid["ManageThePipelineAndRestartIt"]["resources"] == [PIPELINE_ARN]
    assert by_sid["PipelineStackState"]["resources"] == [f"arn:aws:s3:::canvalo-tfstate-{BETA}-eu-west-1/pipeline/*"]
    assert not any(a.startswith("sts:") for a in allowed_actions(statements))
    # Its state rights reach the pipeline stack's state only, never a stage's stacks'.
    objects = [
        r
        for s in statements
        for r in s["resources"]
        if r.startswith("arn:aws:s3:::canvalo-tfstate-") and "/" in r and s["effect"] == "Allow"
    ]
    assert objects == [f"arn:aws:s3:::canvalo-tfstate-{BETA}-eu-west-1/pipeline/*"]
    assert by_sid["PipelineStackStateList"]["condition"][0]["values"] == ["pipeline/*"]


@pytest.mark.req("R10.1", "R10.2", "R10.3", "R10.4")
def test_make_test_runs_before_anything_is_built_or_deployed(pipeline: Document) -> None:
    (action,) = stage(pipeline, "Test")["action"]
    project = project_named(pipeline, action["configuration"]["ProjectName"])
    assert project["source"]["buildspec"] == "pipelines/buildspecs/test.yml"
    names = [s["name"] for s in codepipeline(pipeline)["stage"]]
    first_deploy = min(names.index(name) for name, _ in deploy_actions(pipeline))
    # A pipeline change is applied only from a tested commit, from the stack Build synthesized.
    assert names.index("Test") < names.index("Build") < names.index("UpdatePipeline") < first_deploy


@pytest.mark.req("R10.4", "R4.6")
def test_the_test_project_cannot_deploy_or_assume_any_role(pipeline: Document) -> None:
    role = role_of_project(pipeline, "canvalo-beta-pipeline-test")
    assert role["name"] != DEPLOY_ROLE
    actions = allowed_actions(role_statements(pipeline, role["name"]))
    assert not [a for a in actions if a.split(":")[0] in ("sts", "iam", "ecs", "cloudfront", "ec2", "dynamodb")]
    assert not [a for a in actions if a.endswith(":*")]
    assert "s3:PutObject" not in actions


@pytest.mark.req("R4.3")
def test_every_prod_apply_that_changes_anything_waits_for_a_manual_approval_of_its_plan(pipeline: Document) -> None:
    by_name = {a["name"]: a for a in stage(pipeline, "Prod")["action"]}
    plan, review, approval, apply = by_name["Plan"], by_name["Review"], by_name["Approve"], by_name["Apply"]
    # Plan, then Review beside the approval (so the approval's token exists while Review runs), then Apply.
    assert plan["run_order"] < review["run_order"] == approval["run_order"] < apply["run_order"]
    assert (approval["category"], approval["provider"]) == ("Approval", "Manual")
    assert action_environment(plan)["MODE"] == "plan"
    assert plan["output_artifacts"][0] in apply["input_artifacts"], "apply exactly the approved plan"
    # Review approves only a plan that changes nothing in prod; any change waits for a person.
    assert action_environment(review) == {
        "STAGE": "prod",
        "APPROVAL": "Prod/Approve",
        "PERSON_APPROVES": "changes",
        "APPROVED_MANIFEST_SHA256": "#{ProdPlan.PLAN_SHA256}",
        "PIPELINE_EXECUTION_ID": "#{codepipeline.PipelineExecutionId}",
        "COMMIT_ID": "#{SourceVariables.CommitId}",
        "PLAN_SUMMARY_URL": "#{ProdPlan.PLAN_SUMMARY_URL}",
    }
    assert review["input_artifacts"] == ["Source", "ProdPlan"]
    review_project = project_named(pipeline, review["configuration"]["ProjectName"])
    assert review_project["source"]["buildspec"] == pinned_buildspec("review")
    # The approval message carries the plan's summary (exported by the plan action), the commit and gamma's bake.
    assert f"#{{{plan['namespace']}.PLAN_HEADLINE}}" in approval["configuration"]["CustomData"]
    assert "#{GammaBake.BAKE_RESULT}" in approval["configuration"]["CustomData"]
    assert "#{SourceVariables.CommitId}" in approval["configuration"]["CustomData"]
    assert approval["configuration"]["ExternalEntityLink"] == f"#{{{plan['namespace']}.PLAN_SUMMARY_URL}}"
    # The summary the link opens is written to the artifact bucket (pipelines/publish_summary.py).
    plan_project = project_named(pipeline, plan["configuration"]["ProjectName"])
    bucket = next(
        v["value"] for v in plan_project["environment"]["environment_variable"] if v["name"] == "ARTIFACT_BUCKET"
    )
    assert bucket == one(pipeline, "aws_s3_bucket")["bucket"]


@pytest.mark.parametrize("stage_name", list(DEPLOY_STAGES))
def test_each_stage_applies_the_saved_plan_it_made_from_the_one_build(pipeline: Document, stage_name: str) -> None:
    by_name = {a["name"]: a for a in stage(pipeline, stage_name)["action"]}
    plan, apply = by_name["Plan"], by_name["Apply"]
    # Prod's plan also quotes gamma's bake in the summary the approver reads.
    quotes_bake = {"BAKE_RESULT": "#{GammaBake.BAKE_RESULT}"} if stage_name == "Prod" else {}
    assert action_environment(plan) == {
        "STAGE": DEPLOY_STAGES[stage_name],
        "MODE": "plan",
        # Build's digest of the image, which CodePipeline holds: the preflight refuses stacks running another.
        "IMAGE_DIGEST": "#{BuildVariables.IMAGE_DIGEST}",
        **quotes_bake,
    }
    assert action_environment(apply) == {
        "STAGE": DEPLOY_STAGES[stage_name],
        "MODE": "apply",
        # The manifest's hash as the Plan action exported it: CodePipeline holds it, not the artifact.
        "APPROVED_MANIFEST_SHA256": f"#{{{stage_name}Plan.PLAN_SHA256}}",
        # Apply reads back the summary the approval linked to, and refuses it if it changed.
        "PLAN_SUMMARY_URL": f"#{{{stage_name}Plan.PLAN_SUMMARY_URL}}",
        # Which execution deployed the stage, for its release record (make status), and whose approval counts.
        "PIPELINE_EXECUTION_ID": "#{codepipeline.PipelineExecutionId}",
    }
    # Who may approve what is the Apply project's own environment: changing it is an administrator's.
    project = project_named(pipeline, apply["configuration"]["ProjectName"])
    environment = {v["name"]: v["value"] for v in project["environment"]["environment_variable"]}
    assert {k: environment[k] for k in ("APPROVAL", "APPROVER_ROLES", "REVIEW_ROLE", "PERSON_APPROVES")} == {
        "APPROVAL": f"{stage_name}/Approve",
        "APPROVER_ROLES": "canvalo-release-approver",
        "REVIEW_ROLE": "canvalo-beta-pipeline-review",
        "PERSON_APPROVES": "changes" if stage_name == "Prod" else "broadening",
    }
    assert plan["input_artifacts"] == ["Source", "Build"]
    assert apply["input_artifacts"] == ["Source", "Build", f"{stage_name}Plan"]
    assert plan["output_artifacts"] == [f"{stage_name}Plan"]
    (build,) = stage(pipeline, "Build")["action"]
    assert build["output_artifacts"] == ["Build"]
    # The image's tag is its content's hash, computed by the build (pipelines/image_tag.sh), not the commit;
    # Build exports it and ECR's digest as BuildVariables.
    assert action_environment(build) == {}
    assert build["namespace"] == "BuildVariables"


@pytest.mark.req("R10.5", "R10.6", "R10.7", "R10.8")
@pytest.mark.parametrize(("stage_name", "suite"), [("Beta", "integration"), ("Gamma", "smoke"), ("Prod", "smoke")])
def test_tests_run_against_each_stage_after_it_is_deployed(pipeline: Document, stage_name: str, suite: str) -> None:
    actions = stage(pipeline, stage_name)["action"]
    apply = next(a for a in actions if action_environment(a).get("MODE") == "apply")
    tests = next(a for a in actions if a["name"].endswith("Tests"))
    assert action_environment(tests) == {
        "STAGE": DEPLOY_STAGES[stage_name],
        "TEST_SUITE": suite,
        "EXPECT_VERSION": "#{BuildVariables.IMAGE_TAG}",
    }
    assert tests["run_order"] > apply["run_order"], "tests run only once the stage is deployed"
    assert apply["output_artifacts"][0] in tests["input_artifacts"], "tests find the URLs in the stage's outputs"
    project = project_named(pipeline, tests["configuration"]["ProjectName"])
    assert project["source"]["buildspec"] == "pipelines/buildspecs/smoke.yml"
    role = role_of_project(pipeline, project["name"])
    assert not [a for a in allowed_actions(role_statements(pipeline, role["name"])) if a.startswith(("sts:", "iam:"))]


@pytest.mark.req("R4.5", "R10.8")
def test_failures_and_approvals_waiting_for_a_person_notify_the_encrypted_topic(pipeline: Document) -> None:
    rule = one(pipeline, "aws_codestarnotifications_notification_rule")
    assert rule["resource"] == f"${{aws_codepipeline.{next(iter(resources(pipeline, 'aws_codepipeline')))}.arn}}"
    assert {
        "codepipeline-pipeline-pipeline-execution-failed",
        "codepipeline-pipeline-stage-execution-failed",
    } <= set(rule["event_type_ids"])
    # Every stage has an approval, which Review answers when no person is needed: the rule would mail on every
    # push. Review mails the topic itself when an approval waits for a person (tests/pipelines/test_review.py).
    assert "codepipeline-pipeline-manual-approval-needed" not in rule["event_type_ids"]
    topic_key, topic = next(iter(resources(pipeline, "aws_sns_topic").items()))
    review_project = project_named(pipeline, "canvalo-beta-pipeline-review")
    review_env = {v["name"]: v["value"] for v in review_project["environment"]["environment_variable"]}
    assert review_env["NOTIFICATION_TOPIC_ARN"] == f"${{aws_sns_topic.{topic_key}.arn}}"
    mail = {s["sid"]: s for s in role_statements(pipeline, "canvalo-beta-pipeline-review")}
    assert mail["MailTheApprovers"]["actions"] == ["sns:Publish"]
    assert mail["MailTheApprovers"]["resources"] == [f"${{aws_sns_topic.{topic_key}.arn}}"]
    assert mail["EncryptTheMail"]["actions"] == ["kms:GenerateDataKey*"]
    assert rule["target"] == [{"address": f"${{aws_sns_topic.{topic_key}.arn}}", "type": "SNS"}]
    assert topic["name"] == "canvalo-beta-pipeline-notifications"
    assert topic["kms_master_key_id"].startswith("${aws_kms_key.")
    policy = one(pipeline, "aws_sns_topic_policy")
    (publish,) = policy_statements(pipeline, policy["policy"])
    assert publish["principals"] == [{"type": "Service", "identifiers": ["codestar-notifications.amazonaws.com"]}]
    assert publish["actions"] == ["sns:Publish"]
    assert publish["condition"] == [{"test": "StringEquals", "variable": "aws:SourceAccount", "values": [BETA]}]
    key_policy = next(v for k, v in data_sources(pipeline, "aws_iam_policy_document").items() if "key-policy" in k)
    notifications = next(s for s in key_policy["statement"] if s["sid"].startswith("CodeStarNotifications"))
    assert set(notifications["actions"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}


@pytest.mark.req("R4.6", "R4.8")
def test_plan_is_read_only_and_each_apply_has_its_own_role_which_alone_reaches_its_stage(pipeline: Document) -> None:
    plan_role, apply_roles = (
        PLAN_ROLE,
        {
            "beta": DEPLOY_ROLE,
            "gamma": "canvalo-beta-pipeline-apply-gamma",
            "prod": "canvalo-beta-pipeline-apply-prod",
        },
    )
    for stage_title, action in deploy_actions(pipeline):
        role = role_of_project(pipeline, action["configuration"]["ProjectName"])["name"]
        stage_name = DEPLOY_STAGES[stage_title.removesuffix("Plan")]
        assert role == (plan_role if action["name"] == "Plan" else apply_roles[stage_name]), (
            stage_title,
            action["name"],
        )
    assert role_of_project(pipeline, "canvalo-beta-pipeline-drift")["name"] == plan_role
    assumed = {
        role["name"]: [
            r
            for s in role_statements(pipeline, role["name"])
            if "sts:AssumeRole" in s["actions"]
            for r in s["resources"]
        ]
        for role in resources(pipeline, "aws_iam_role").values()
    }
    # Plan reaches gamma and prod only as their read-only plan roles; each Apply its own stage's deploy role.
    assert assumed == {
        **{name: [] for name in assumed},
        plan_role: [
            f"arn:aws:iam::{GAMMA}:role/canvalo/canvalo-plan",
            f"arn:aws:iam::{PROD}:role/canvalo/canvalo-plan",
        ],
        apply_roles["gamma"]: [STAGE_DEPLOY_ROLES[0]],
        apply_roles["prod"]: [STAGE_DEPLOY_ROLES[1]],
    }
    writes = [a for a in allowed_actions(role_statements(pipeline, plan_role)) if not a.split(":")[1].startswith(READS)]
    # What the plan role writes: its logs, its artifact, its state locks, the drift digest and mail.
    assert sorted(set(writes)) == sorted(PLAN_ROLE_WRITES)
    # Beta is deployed directly with the beta deploy permissions (R4.8): its state, its prefix.
    by_sid = {s["sid"]: s for s in role_statements(pipeline, DEPLOY_ROLE)}
    assert by_sid["TerraformState"]["resources"] == [f"arn:aws:s3:::canvalo-tfstate-{BETA}-eu-west-1/beta/*"]
    assert by_sid["ProjectBuckets"]["resources"][0] == "arn:aws:s3:::canvalo-beta-*"
    guard = by_sid["NeverTouchThePipeline"]
    assert guard["effect"] == "Deny" and "iam:*" in guard["actions"]
    assert f"arn:aws:iam::{BETA}:role/canvalo/canvalo-beta-pipeline-*" in guard["resources"]
    # The preflight before each plan finds the image to release; it may read no other repository.
    (registry,) = resources(pipeline, "aws_ecr_repository")
    image = next(s for s in role_statements(pipeline, plan_role) if s["sid"] == "FindTheReleasedImage")
    assert image["resources"] == [f"${{aws_ecr_repository.{registry}.arn}}"]
    prod_apply = {s["sid"]: s for s in role_statements(pipeline, apply_roles["prod"])}
    assert prod_apply["ReadWhoApproved"]["actions"] == ["codepipeline:ListActionExecutions"]
    assert prod_apply["ReadWhoApproved"]["resources"] == [PIPELINE_ARN]


def boundaries(pipeline: Document) -> dict[str, Document]:
    """The three boundaries by name: the pipeline roles', the deploy role's and the plan role's."""
    policies = {p["name"]: p for p in resources(pipeline, "aws_iam_policy").values()}
    assert set(policies) == {
        "canvalo-pipeline-boundary",
        "canvalo-pipeline-deploy-boundary",
        "canvalo-pipeline-plan-boundary",
    }
    assert all(p["path"] == "/canvalo/" for p in policies.values())
    return policies


def boundary_of(pipeline: Document, role_name: str) -> str:
    """The name of the boundary the role carries."""
    (role,) = [r for r in resources(pipeline, "aws_iam_role").values() if r["name"] == role_name]
    logical = role["permissions_boundary"].removeprefix("${aws_iam_policy.").removesuffix(".arn}")
    return str(resources(pipeline, "aws_iam_policy")[logical]["name"])


def test_every_pipeline_role_is_named_bounded_and_scoped(pipeline: Document) -> None:
    boundaries(pipeline)
    roles = resources(pipeline, "aws_iam_role")
    assert len(roles) == 11
    star_sids = {"RegistryLogin", "ListCallsWithoutResourceScope"}
    own_boundary = {DEPLOY_ROLE: "canvalo-pipeline-deploy-boundary", PLAN_ROLE: "canvalo-pipeline-plan-boundary"}
    for role in roles.values():
        assert role["name"].startswith("canvalo-beta-pipeline-") or role["name"] == DEPLOY_ROLE
        assert role["path"] == "/canvalo/"
        assert boundary_of(pipeline, role["name"]) == own_boundary.get(role["name"], "canvalo-pipeline-boundary")
        # The plan role also trusts the operators' roles (make status): tests/infra/test_pipeline_status.py.
        trust, *_ = policy_statements(pipeline, role["assume_role_policy"])
        assert trust["condition"] == [{"test": "StringEquals", "variable": "aws:SourceAccount", "values": [BETA]}]
        for item in role_statements(pipeline, role["name"]):
            assert "*" not in item["actions"], item["sid"]
            if item["resources"] == ["*"] and item["effect"] == "Allow":
                assert item["sid"] in star_sids or item["sid"].endswith("WithoutResourceScope"), item["sid"]
                assert not [a for a in item["actions"] if a.startswith(("iam:", "sts:", "s3:", "codebuild:"))]
    codepipeline_role = role_of_pipeline(pipeline)
    assert "iam:PassRole" not in allowed_actions(role_statements(pipeline, codepipeline_role))


def role_of_pipeline(document: Document) -> str:
    logical = codepipeline(document)["role_arn"].removeprefix("${aws_iam_role.").removesuffix(".arn}")
    return str(resources(document, "aws_iam_role")[logical]["name"])


@pytest.mark.parametrize("kind", [*BUILDSPECS, "apply-gamma", "apply-prod"])
def test_each_codebuild_role_writes_only_its_own_logs(pipeline: Document, kind: str) -> None:
    project = project_named(pipeline, f"canvalo-beta-pipeline-{kind}")
    log_group = resources(pipeline, "aws_cloudwatch_log_group")[
        project["logs_config"]["cloudwatch_logs"]["group_name"]
        .removeprefix("${aws_cloudwatch_log_group.")
        .removesuffix(".name}")
    ]
    assert log_group["name"] == f"/canvalo/beta/pipeline/{kind}"
    role = role_of_project(pipeline, project["name"])
    (logs,) = [s for s in role_statements(pipeline, role["name"]) if s["sid"] == "WriteOwnLogs"]
    # The plan role runs Plan and the drift check: both log groups; every other role only its project's.
    kinds = ("plan", "drift") if role["name"] == PLAN_ROLE else (kind,)
    assert set(logs["resources"]) == {
        f"arn:aws:logs:eu-west-1:{BETA}:log-group:/canvalo/beta/pipeline/{k}:*" for k in kinds
    }
    # Every Apply runs deploy.yml, pinned like the other privileged buildspecs.
    buildspec_kind = "deploy" if kind.startswith("apply-") else kind
    expected_buildspec = pinned_buildspec(buildspec_kind) if buildspec_kind in PIPELINE_OWNED else BUILDSPECS[kind]
    assert project["source"]["buildspec"] == expected_buildspec
    assert project["encryption_key"].startswith("${aws_kms_key.")
    assert project["environment"]["privileged_mode"] is (kind == "build"), "only the image build runs Docker"


def test_the_update_role_creates_no_role_and_changes_roles_only_inside_the_pipeline_boundary(
    pipeline: Document,
) -> None:
    boundary_arns = {
        name: f"arn:aws:iam::{BETA}:policy/canvalo/{name}"
        for name in ("canvalo-pipeline-boundary", "canvalo-pipeline-deploy-boundary", "canvalo-pipeline-plan-boundary")
    }
    statements = role_statements(pipeline, "canvalo-beta-pipeline-update-pipeline")
    # Creating or deleting a role always broadens: an administrator does it (tests/infra/test_escalation.py).
    assert not [
        s for s in statements if {"iam:CreateRole", "iam:DeleteRole"} & set(s["actions"]) and s["effect"] == "Allow"
    ]

    def within(*names: str) -> list[Document]:
        return [
            {"test": "StringEquals", "variable": "iam:PermissionsBoundary", "values": [boundary_arns[n] for n in names]}
        ]

    # Each role's policy changes only while it keeps a boundary: the pipeline roles' (or the plan role's own,
    # under the same prefix), the deploy role's own.
    changing = [s for s in statements if "iam:PutRolePolicy" in s["actions"] and s["effect"] == "Allow"]
    assert sorted((s["resources"], s["condition"]) for s in changing) == [
        (
            [f"arn:aws:iam::{BETA}:role/canvalo/canvalo-beta-pipeline-*"],
            within("canvalo-pipeline-boundary", "canvalo-pipeline-plan-boundary"),
        ),
        ([f"arn:aws:iam::{BETA}:role/canvalo/{DEPLOY_ROLE}"], within("canvalo-pipeline-deploy-boundary")),
    ]
    denied = next(s for s in statements if s["sid"] == "OnlyAnAdministratorChangesTheUpdateRole")
    assert denied["resources"] == [f"arn:aws:iam::{BETA}:role/canvalo/canvalo-beta-pipeline-update-pipeline"]
    for policy in boundaries(pipeline).values():
        boundary = policy_statements(pipeline, policy["policy"])
        # The boundary copies IAM/STS statements with their conditions, so a role the pipeline creates
        # can itself only create roles inside a boundary, and nothing may change a boundary.
        for item in boundary:
            if item["effect"] != "Allow":
                continue
            if {"iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy"} & set(item["actions"]):
                assert item["condition"][0]["variable"] == "iam:PermissionsBoundary", item
            if "iam:CreateServiceLinkedRole" in item["actions"]:
                assert item["condition"][0]["variable"] == "iam:AWSServiceName", item
            assert not (item["resources"] == ["*"] and any(a.startswith(("iam:", "sts:")) for a in item["actions"]))
        never = next(s for s in boundary if s.get("sid") == "NeverChangeABoundary")
        assert never["effect"] == "Deny"
        assert all(any(fnmatchcase(arn, pattern) for pattern in never["resources"]) for arn in boundary_arns.values())
        assert policy_size(pipeline, policy) <= MANAGED_POLICY_LIMIT


# "Managed policy size: 6,144 characters", not counting whitespace (IAM and STS quotas,
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).
MANAGED_POLICY_LIMIT = 6144
# The longest name of an AWS commercial region (ap-southeast-2 .. ap-southeast-7, ap-northeast-1 .. 3).
LONGEST_REGION = "ap-southeast-7"


def iam_policy_json(statements: list[Document]) -> str:
    """The policy as IAM receives it from aws_iam_policy_document, without whitespace; every value a list
    (the provider writes a single action or resource as a string: this errs on the long side). Terraform
    references count as written: policy_size resolves them first."""
    rendered = []
    for item in statements:
        conditions: dict[str, dict[str, list[str]]] = {}
        for condition in item.get("condition") or []:
            conditions.setdefault(condition["test"], {})[condition["variable"]] = condition["values"]
        fields = {
            "Sid": item.get("sid"),
            "Effect": item.get("effect", "Allow"),
            "Action": item.get("actions"),
            "NotAction": item.get("not_actions"),
            "Resource": item.get("resources"),
            "NotResource": item.get("not_resources"),
            "Condition": conditions,
        }
        rendered.append({key: value for key, value in fields.items() if value})
    return json.dumps({"Version": "2012-10-17", "Statement": rendered}, separators=(",", ":"))


def policy_size(document: Document, policy: Document) -> int:
    """The characters IAM counts in a managed policy of the stack: each Terraform reference replaced by the
    value IAM receives, of its real length (a key's ARN ends in its 36-character id, not the 42 characters
    of `${aws_kms_key.<name>.arn}`), and a reference the evaluator cannot model fails rather than counts short."""
    stack = Stack("pipeline", document)
    return len(iam_policy_json(stack.resolve(policy_statements(document, policy["policy"]))))


def longest_app_name() -> str:
    """The longest app name the configuration accepts (AWS's 32-character names bound it)."""
    for length in range(2, 64):
        try:
            fixture_project(appName="a" * (length + 1))
        except ConfigError:
            return "a" * length
    raise AssertionError("the configuration accepts app names of 64 characters")


@pytest.mark.req("R4.6", "R5.3")
def test_every_pipeline_boundary_fits_iams_policy_size_with_the_longest_names(tmp_path: Path) -> None:
    """A boundary over IAM's limit fails the first `cdktn deploy pipeline`: the longest app name the
    configuration accepts, in the longest region name, still fits (the names repeat in every statement)."""
    project = fixture_project(appName=longest_app_name(), region=LONGEST_REGION)
    pipeline = synth_pipeline_stack(tmp_path, project)
    sizes = {
        policy["name"]: policy_size(pipeline, policy)
        for policy in resources(pipeline, "aws_iam_policy").values()
        if policy["name"].endswith("-boundary")
    }
    assert len(sizes) == 3, sizes
    assert max(sizes.values()) <= MANAGED_POLICY_LIMIT, sizes


@pytest.mark.req("R4.6")
def test_the_boundary_keeps_one_statement_per_rule_and_no_action_a_wildcard_covers(pipeline: Document) -> None:
    """What keeps the boundaries inside IAM's size: each apply role's deploy-role grant is one statement
    on every later stage's role, and `codepipeline:List*` leaves no `codepipeline:List...` beside it."""
    (boundary,) = [p for name, p in boundaries(pipeline).items() if name == "canvalo-pipeline-boundary"]
    statements = policy_statements(pipeline, boundary["policy"])
    # The boundary's copies carry no sid (characters again): the grant is found by what it grants.
    (assume,) = [s for s in statements if "sts:AssumeRole" in s["actions"]]
    assert assume["resources"] == [f"arn:aws:iam::{a}:role/canvalo/canvalo-deploy" for a in (GAMMA, PROD)]
    (ceiling,) = [s for s in statements if s.get("sid") == "PipelineActions"]
    wildcards = [a for a in ceiling["actions"] if "*" in a]
    assert "codepipeline:List*" in wildcards
    assert not [a for a in ceiling["actions"] if any(w != a and fnmatchcase(a, w) for w in wildcards)]


def grants_kms(action: str) -> bool:
    return action == "*" or action.lower().startswith("kms:")


@pytest.mark.req("R4.6", "R5.3")
def test_no_boundary_grants_kms_on_every_key_but_what_names_no_key(pipeline: Document) -> None:
    """With `kms:*` on "*" in its boundary, a pipeline role whose policy the update role rewrites could use
    any key of the account, and claim one by tagging it. Each boundary holds the roles' KMS grants on the
    keys they name, under their conditions; on "*" only what IAM authorizes on "*" alone, and TagResource
    (as CreateKey tags a new key) only on a key without an `application` tag."""
    for name, boundary in boundaries(pipeline).items():
        for item in policy_statements(pipeline, boundary["policy"]):
            unscoped = [a for a in item["actions"] if grants_kms(a)] if "*" in item["resources"] else []
            if item["effect"] != "Allow" or not unscoped:
                continue
            assert set(unscoped) <= set(KMS_ACTIONS_WITHOUT_RESOURCE_SCOPE), (name, item)
            if "kms:TagResource" in unscoped:
                untagged = {"test": "Null", "variable": "aws:ResourceTag/application", "values": ["true"]}
                assert untagged in item["condition"], (name, item)
    # The pipeline roles' boundary: the update role's `kms:*` on the pipeline's key and its alias, no other.
    (key,) = resources(pipeline, "aws_kms_key")
    boundary = boundaries(pipeline)["canvalo-pipeline-boundary"]
    kms = {
        tuple(s["resources"]): s["actions"]
        for s in policy_statements(pipeline, boundary["policy"])
        if s["effect"] == "Allow" and any(grants_kms(a) for a in s["actions"])
    }
    assert kms == {
        (f"${{aws_kms_key.{key}.arn}}",): ["kms:*"],
        (f"arn:aws:kms:eu-west-1:{BETA}:alias/canvalo-beta-pipeline",): [
            "kms:CreateAlias",
            "kms:DeleteAlias",
            "kms:UpdateAlias",
        ],
        ("*",): ["kms:ListAliases"],
    }


@pytest.mark.req("R4.6", "R5.3")
def test_a_boundary_refuses_a_roles_kms_grant_on_every_key() -> None:
    """A role statement granting a KMS action on "*" that names a key would put it on every key in the
    boundary: the synth fails instead. What names no key (ListAliases) stays on "*"."""

    def boundary(*grants: DataAwsIamPolicyDocumentStatement) -> list[DataAwsIamPolicyDocumentStatement]:
        return boundary_statements(
            role_statements=[grants],
            protected_policy_arns=[f"arn:aws:iam::{BETA}:policy/canvalo/*-boundary"],
            reviewer_arn=f"arn:aws:iam::{BETA}:role/canvalo/canvalo-beta-pipeline-review",
        )

    with pytest.raises(ValueError, match="kms:Decrypt on every key"):
        boundary(statement(sid="AnyKey", actions=["kms:Decrypt", "kms:ListAliases"], resources=["*"]))
    listed = boundary(statement(sid="Aliases", actions=["kms:ListAliases", "s3:ListAllMyBuckets"], resources=["*"]))
    assert [(s.actions, s.resources, s.sid) for s in listed[1:2]] == [(["kms:ListAliases"], ["*"], None)]


@pytest.mark.req("R4.6")
def test_a_boundary_merges_the_roles_statements_and_drops_only_what_another_deny_still_denies() -> None:
    """Grants that differ only in their resources, or only in their actions, are one; a Deny's action that
    another unconditional Deny denies on all its resources is dropped, but of two that cover each other one
    stays."""
    roles = f"arn:aws:iam::{BETA}:role/canvalo/canvalo-beta-pipeline-*"
    role = f"arn:aws:iam::{BETA}:role/canvalo/canvalo-beta-pipeline-build"
    statements = boundary_statements(
        role_statements=[
            [
                statement(sid="A", actions=["sts:AssumeRole"], resources=["arn:aws:iam::1:role/a"]),
                statement(sid="B", actions=["sts:AssumeRole"], resources=["arn:aws:iam::2:role/b"]),
                statement(sid="C", actions=["kms:Decrypt"], resources=["arn:aws:kms:r:1:key/k"]),
                statement(sid="D", actions=["kms:*"], resources=["arn:aws:kms:r:1:key/k"]),
            ],
            [
                # Each of E and F denies DeleteRole on every role the other names.
                statement(sid="E", effect="Deny", actions=["iam:DeleteRole", "iam:TagRole"], resources=[roles]),
                statement(
                    sid="F", effect="Deny", actions=["iam:DeleteRole", "iam:UpdateRole"], resources=[roles, role]
                ),
                statement(sid="G", effect="Deny", actions=["iam:DeleteRolePermissionsBoundary"], resources=[role]),
            ],
        ],
        protected_policy_arns=[f"arn:aws:iam::{BETA}:policy/canvalo/*-boundary"],
        reviewer_arn=f"arn:aws:iam::{BETA}:role/canvalo/canvalo-beta-pipeline-review",
    )
    copies = [(s.effect, s.actions, s.resources) for s in statements if s.sid is None]
    assert copies == [
        ("Allow", ["sts:AssumeRole"], ["arn:aws:iam::1:role/a", "arn:aws:iam::2:role/b"]),
        ("Allow", ["kms:*"], ["arn:aws:kms:r:1:key/k"]),
        # G is the boundary's own NeverRemoveABoundary on one role: gone. E's DeleteRole is F's, so F keeps it.
        ("Deny", ["iam:TagRole"], [roles]),
        ("Deny", ["iam:DeleteRole", "iam:UpdateRole"], [roles, role]),
    ]


@pytest.mark.req("R6.6")
def test_source_comes_through_a_github_codestar_connection(pipeline: Document) -> None:
    connection = one(pipeline, "aws_codestarconnections_connection")
    assert connection["provider_type"] == "GitHub"
    (source,) = stage(pipeline, "Source")["action"]
    assert source["configuration"]["ConnectionArn"].startswith("${aws_codestarconnections_connection.")
    assert "UseTheRepositoryConnection" in {s["sid"] for s in role_statements(pipeline, role_of_pipeline(pipeline))}


def test_artifacts_are_private_and_encrypted_with_a_rotating_customer_managed_key(pipeline: Document) -> None:
    key = one(pipeline, "aws_kms_key")
    assert key["enable_key_rotation"] is True
    encryption = one(pipeline, "aws_s3_bucket_server_side_encryption_configuration")["rule"][0]
    assert encryption["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"
    assert encryption["apply_server_side_encryption_by_default"]["kms_master_key_id"].startswith("${aws_kms_key.")
    (store,) = codepipeline(pipeline)["artifact_store"]
    assert store["encryption_key"]["type"] == "KMS"
    assert one(pipeline, "aws_s3_bucket")["bucket"] == f"canvalo-beta-pipeline-artifacts-{BETA}"
    block = one(pipeline, "aws_s3_bucket_public_access_block")
    assert all(
        block[k] is True
        for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    )


def lifecycle_of(pipeline: Document, key: str) -> tuple[int | None, int | None]:
    """(days after which the current version of `key` expires, days after which its old versions do) under the
    artifact bucket's lifecycle rules. A rule selects the keys starting with its filter's prefix (the only filter
    modelled: any other raises); where expirations overlap, the shorter one holds (S3's lifecycle-conflicts page)."""
    (configuration,) = resources(pipeline, "aws_s3_bucket_lifecycle_configuration").values()
    current: list[int] = []
    noncurrent: list[int] = []
    for rule in configuration["rule"]:
        (selection,) = rule["filter"]
        if set(selection) != {"prefix"}:
            raise ValueError(f"rule {rule['id']}: only prefix filters are modelled, not {selection}")
        if rule["status"] != "Enabled" or not key.startswith(selection["prefix"]):
            continue
        current += [e["days"] for e in rule.get("expiration") or []]
        noncurrent += [e["noncurrent_days"] for e in rule.get("noncurrent_version_expiration") or []]
    return min(current, default=None), min(noncurrent, default=None)


@pytest.mark.req("R7.6")
def test_the_artifacts_expire_but_not_the_stack_each_stage_applied(pipeline: Document) -> None:
    """Prod may go a month without a deploy; the drift check plans `applied/prod/` every day until the next."""
    for stage_name in DEPLOY_STAGES.values():
        assert lifecycle_of(pipeline, f"applied/{stage_name}/cdk.tf.json") == (None, 7), "old versions expire"
    # CodePipeline's folder is the pipeline's name cut to 20 characters; the prefix matches it either way.
    for artifact in ("canvalo-beta-pipelin/Build/a1B2c3D", "canvalo-beta-pipeline/ProdPlan/a1B2c3D"):
        assert lifecycle_of(pipeline, artifact) == (30, 7), artifact
    assert lifecycle_of(pipeline, "plan-summaries/prod/0f1e2d3c.md") == (30, 7)


def test_registry_has_immutable_scanned_images_that_gamma_and_prod_execution_roles_may_pull(pipeline: Document) -> None:
    repository = one(pipeline, "aws_ecr_repository")
    assert repository["name"] == "canvalo-backend"
    assert repository["image_tag_mutability"] == "IMMUTABLE"
    assert repository["image_scanning_configuration"] == {"scan_on_push": True}
    statements = policy_statements(pipeline, one(pipeline, "aws_ecr_repository_policy")["policy"])
    (never_remove,) = [s for s in statements if s["effect"] == "Deny"]
    assert never_remove["condition"] == [
        {"test": "ArnLike", "variable": "aws:PrincipalArn", "values": [f"arn:aws:iam::{BETA}:role/canvalo/*"]}
    ]
    assert {"ecr:BatchDeleteImage", "ecr:PutLifecyclePolicy", "ecr:SetRepositoryPolicy"} <= set(never_remove["actions"])
    pulls = [s for s in statements if s["effect"] != "Deny"]
    assert {s["principals"][0]["identifiers"][0] for s in pulls} == {
        f"arn:aws:iam::{GAMMA}:root",
        f"arn:aws:iam::{PROD}:root",
    }
    for item in pulls:
        account = item["principals"][0]["identifiers"][0].split(":")[4]
        stage_name = "gamma" if account == GAMMA else "prod"
        assert item["condition"] == [
            {
                "test": "ArnLike",
                "variable": "aws:PrincipalArn",
                "values": [f"arn:aws:iam::{account}:role/canvalo/canvalo-{stage_name}-*"],
            }
        ]
        assert not [a for a in item["actions"] if not a.startswith("ecr:") or "Put" in a or "Upload" in a]


@pytest.mark.req("R7.6")
def test_the_registry_holding_prods_images_is_protected_although_beta_is_not(pipeline: Document) -> None:
    """The repository lives in the beta account, but every stage, prod included, pulls from it."""
    assert not fixture_project().pipeline_stage.deletion_protection, "the pipeline's own stage is unprotected"
    repository = one(pipeline, "aws_ecr_repository")
    assert repository["force_delete"] is False
    assert repository["lifecycle"] == {"prevent_destroy": True}


@pytest.mark.req("R7.6")
def test_the_registry_lifecycle_never_expires_a_recent_commits_image(pipeline: Document) -> None:
    rules = sorted(
        json.loads(one(pipeline, "aws_ecr_lifecycle_policy")["policy"])["rules"], key=lambda r: r["rulePriority"]
    )
    by_age, by_count = [r["selection"] for r in rules if r["action"] == {"type": "expire"}]
    # Only untagged left-overs expire by age; a commit's image expires only when 200 newer ones exist.
    assert by_age == {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 7}
    assert by_count["tagStatus"] == "tagged" and by_count["tagPatternList"] == ["*"]
    assert by_count["countType"] == "imageCountMoreThan" and by_count["countNumber"] >= 200
    assert len(rules) == 2


def test_the_registry_refuses_a_lifecycle_that_keeps_too_few_images() -> None:
    stack = TerraformStack(App(), "registry")
    with pytest.raises(ValueError, match=f"keep at least {MIN_KEPT_IMAGES}"):
        ContainerRegistry(
            stack,
            "registry",
            name="canvalo-backend",
            pullers={},
            automation_roles="arn:aws:iam::111111111111:role/canvalo/*",
            keep_images=MIN_KEPT_IMAGES - 1,
        )


def test_drift_is_checked_daily_against_prod_by_a_role_that_can_start_only_that(pipeline: Document) -> None:
    rule = one(pipeline, "aws_cloudwatch_event_rule")
    assert rule["schedule_expression"].startswith("cron(") and rule["schedule_expression"].endswith(" * * ? *)")
    target = one(pipeline, "aws_cloudwatch_event_target")
    drift = project_named(pipeline, "canvalo-beta-pipeline-drift")
    assert target["arn"].startswith("${aws_codebuild_project.drift-project")
    (start,) = role_statements(pipeline, "canvalo-beta-pipeline-drift-schedule")
    assert start["actions"] == ["codebuild:StartBuild"]
    assert start["resources"] == [f"arn:aws:codebuild:eu-west-1:{BETA}:project/canvalo-beta-pipeline-drift"]
    environment = {v["name"]: v["value"] for v in drift["environment"]["environment_variable"]}
    assert environment["STAGE"] == "prod" and environment["TERRAFORM_VERSION"] == TERRAFORM_VERSION
    assert environment["NOTIFICATION_TOPIC_ARN"].startswith("${aws_sns_topic.")
    assert drift["source"]["type"] == "GITHUB" and drift["source"]["auth"]["type"] == "CODECONNECTIONS"
    assert drift["source_version"] == "main"


def parameter_arn(name: str) -> str:
    return f"arn:aws:ssm:eu-west-1:{BETA}:parameter{name}"


DEPLOYED_COMMITS = {stage: f"/canvalo/{stage}/deployed-commit" for stage in ("beta", "gamma", "prod")}
RELEASES = {stage: f"/canvalo/{stage}/release" for stage in ("beta", "gamma", "prod")}
DRIFT_DIGEST = "/canvalo/prod/drift-digest"


def test_the_deployed_commits_and_the_drift_digest_are_string_parameters_whose_value_is_not_terraforms(
    pipeline: Document,
) -> None:
    parameters = {p["name"]: p for p in resources(pipeline, "aws_ssm_parameter").values()}
    assert set(parameters) == {*DEPLOYED_COMMITS.values(), *RELEASES.values(), DRIFT_DIGEST}
    for name, parameter in parameters.items():
        assert parameter["type"] == "String", name
        # Created with a placeholder; the deploy action and the drift check write the value.
        assert parameter["lifecycle"] == {"ignore_changes": ["insecure_value"]}, name
    assert {parameters[n]["insecure_value"] for n in [*DEPLOYED_COMMITS.values(), *RELEASES.values()]} == {
        "never-deployed"
    }
    assert parameters[DRIFT_DIGEST]["insecure_value"] == "none"


def test_each_apply_records_its_stages_commit_and_the_drift_check_reads_only_prods(pipeline: Document) -> None:
    for stage_name, role_name in (
        ("beta", DEPLOY_ROLE),
        ("gamma", "canvalo-beta-pipeline-apply-gamma"),
        ("prod", "canvalo-beta-pipeline-apply-prod"),
    ):
        (record,) = [s for s in role_statements(pipeline, role_name) if s["sid"] == "RecordTheDeployedCommit"]
        assert (record["actions"], record["resources"]) == (
            ["ssm:PutParameter"],
            [parameter_arn(DEPLOYED_COMMITS[stage_name]), parameter_arn(RELEASES[stage_name])],
        )
        # The Apply reads its own stage's record first: the last verified release, what a failed smoke check restores.
        (read,) = [s for s in role_statements(pipeline, role_name) if s["sid"] == "ReadTheLastVerifiedRelease"]
        assert (read["actions"], read["resources"]) == (["ssm:GetParameter"], [parameter_arn(RELEASES[stage_name])])
    statements = role_statements(pipeline, PLAN_ROLE)
    # Operators' sessions are denied ssm:* among others (tests/infra/test_pipeline_status.py): the Allows here.
    ssm = {
        s["sid"]: s for s in statements if s["effect"] == "Allow" and any(a.startswith("ssm:") for a in s["actions"])
    }
    assert ssm["ReadTheCheckedStagesCommit"]["actions"] == ["ssm:GetParameter"]
    assert ssm["ReadTheCheckedStagesCommit"]["resources"] == [parameter_arn(DEPLOYED_COMMITS["prod"])]
    assert sorted(ssm["RememberTheLastDriftReport"]["actions"]) == ["ssm:GetParameter", "ssm:PutParameter"]
    assert ssm["RememberTheLastDriftReport"]["resources"] == [parameter_arn(DRIFT_DIGEST)]
    # Nothing else of the role reaches these parameters, nor any other parameter but beta's bootstrap version.
    others = {sid: s["resources"] for sid, s in ssm.items() if sid not in {
        "ReadTheCheckedStagesCommit", "RememberTheLastDriftReport"
    }}  # fmt: skip
    assert others == {"ReadTheBootstrapVersion": [parameter_arn("/canvalo/beta/bootstrap-version")]}
    # The update role applies the pipeline stack, parameters included, and reaches no other parameter.
    update = {s["sid"]: s for s in role_statements(pipeline, "canvalo-beta-pipeline-update-pipeline")}
    assert sorted(update["ManageTheDriftParameters"]["resources"]) == sorted(
        map(parameter_arn, [*DEPLOYED_COMMITS.values(), *RELEASES.values(), DRIFT_DIGEST])
    )
    assert "ssm:DescribeParameters" in update["ListCallsWithoutResourceScope"]["actions"]


@pytest.mark.req("R4.6")
def test_the_drift_project_runs_no_commits_code_and_reports_a_build_that_failed_before_the_check(
    pipeline: Document,
) -> None:
    """The plan role's project runs the pinned toolkit on the stack prod's Apply stored: it checks out and
    synthesizes nothing, so no commit's Makefile or dependencies run with the pipeline's plan role."""
    drift = project_named(pipeline, "canvalo-beta-pipeline-drift")
    assert drift["source"]["git_clone_depth"] == 1, "the branch head only, for the (pinned) toolkit"
    environment = {v["name"]: v["value"] for v in drift["environment"]["environment_variable"]}
    assert environment["DRIFT_DIGEST_PARAMETER"] == DRIFT_DIGEST
    assert environment["ARTIFACT_BUCKET"] == one(pipeline, "aws_s3_bucket")["bucket"], "where prod's Apply stored it"
    # What the project runs, as the pipeline stack synthesized it: the toolkit's check and install, then drift.yml.
    synthesized = yaml.safe_load(drift["source"]["buildspec"].replace("$${", "${").replace("%%{", "%{"))
    every_command = "\n".join(c for phase in synthesized["phases"].values() for c in phase.get("commands", []))
    # In a command's place (a line's start, after `;`, `&&`, `|`, `$(`, then, do, else), not in a message's text.
    run = re.compile(r"(?:^|[;&|]|\$\(|\bthen\b|\bdo\b|\belse\b)\s*(make|git|uv|npm|npx)\b", re.MULTILINE)
    assert run.findall(every_command) == [], "no commit's Makefile, checkout or dependencies"
    assert "worktree" not in every_command and "synth" not in every_command
    buildspec = yaml.safe_load((PROJECT_ROOT / BUILDSPECS["drift"]).read_text())
    phases = buildspec["phases"]
    # CodeBuild skips post_build when install fails: whatever can fail runs in the build phase.
    assert "commands" not in phases["install"]
    build = "\n".join(phases["build"]["commands"])
    assert 'python -m pipelines.drift deployed-commit --stage "$STAGE"' in build
    assert 'python -m pipelines.drift --stage "$STAGE" --work-dir drift --commit "$deployed"' in build
    assert phases["post_build"]["commands"] == ["bash pipelines/drift_failure.sh drift/reported"]
    script = (PROJECT_ROOT / "pipelines" / "drift_failure.sh").read_text()
    assert 'aws sns publish --topic-arn "$NOTIFICATION_TOPIC_ARN"' in script
    assert "CODEBUILD_BUILD_URL" in script and "CODEBUILD_BUILD_SUCCEEDING" in script


# A second synth of only the pipeline stack, with the branch and connection changed by configuration.
@pytest.fixture(scope="module")
def reconfigured(tmp_path_factory: pytest.TempPathFactory) -> Document:
    from cdktn import App

    from stacks.pipeline import PipelineStack

    environ = {
        "CANVALO_BRANCH": "release",
        "CANVALO_CODESTAR_CONNECTION_ARN": f"arn:aws:codeconnections:eu-west-1:{BETA}:connection/0a1b2c3d-existing",
        "CANVALO_NOTIFICATION_EMAIL": "platform@example.com",
    }
    outdir = tmp_path_factory.mktemp("pipeline-release")
    target_versions = json.loads((PROJECT_ROOT / "cdktf.json").read_text())["targetVersions"]
    app = App(outdir=str(outdir), context={"targetVersions": target_versions})
    PipelineStack(app, project=fixture_project(environ))
    app.synth()
    document: dict[str, Any] = json.loads((Path(outdir) / "stacks" / "pipeline" / "cdk.tf.json").read_text())
    return document


@pytest.mark.req("R4.9", "R4.10", "R6.6")
def test_branch_and_connection_come_from_configuration(reconfigured: Document) -> None:
    resource = codepipeline(reconfigured)
    (push,) = resource["trigger"][0]["git_configuration"]["push"]
    assert push["branches"] == {"includes": ["release"]}
    (source,) = stage(reconfigured, "Source")["action"]
    assert source["configuration"]["BranchName"] == "release"
    assert source["configuration"]["ConnectionArn"].endswith(":connection/0a1b2c3d-existing")
    assert not resources(reconfigured, "aws_codestarconnections_connection"), "an existing connection is reused"
    assert project_named(reconfigured, "canvalo-beta-pipeline-drift")["source_version"] == "release"
    subscription = one(reconfigured, "aws_sns_topic_subscription")
    assert subscription["protocol"] == "email" and subscription["endpoint"] == "platform@example.com"


def test_every_build_keeps_its_package_caches_on_the_host_and_image_builds_their_layers(pipeline: Document) -> None:
    for project in resources(pipeline, "aws_codebuild_project").values():
        privileged = project["environment"]["privileged_mode"]
        expected = ["LOCAL_CUSTOM_CACHE", *(["LOCAL_DOCKER_LAYER_CACHE"] if privileged else [])]
        assert project["cache"] == {"type": "LOCAL", "modes": expected}, project["name"]
    for buildspec in (PROJECT_ROOT / "pipelines" / "buildspecs").glob("*.yml"):
        spec = yaml.safe_load(buildspec.read_text())
        variables, paths = spec["env"]["variables"], spec["cache"]["paths"]
        # What the tools write is where the cache keeps it: the variables and the paths name the same folders.
        cached = {
            variables.get("UV_CACHE_DIR"),
            variables.get("npm_config_cache"),
            variables.get("TF_PLUGIN_CACHE_DIR"),
            variables.get("PIP_CACHE_DIR"),
        }
        assert {path.removesuffix("/**/*") for path in paths} == cached - {None}, buildspec.name


@pytest.mark.req("R4.3")
@pytest.mark.parametrize("stage_name", ["Beta", "Gamma"])
def test_a_stage_without_approval_stops_for_one_when_its_plan_broadens_and_only_then(
    pipeline: Document, stage_name: str
) -> None:
    by_name = {a["name"]: a for a in stage(pipeline, stage_name)["action"]}
    approve, review = by_name["Approve"], by_name["Review"]
    assert (approve["category"], approve["provider"]) == ("Approval", "Manual")
    assert approve["configuration"]["ExternalEntityLink"] == f"#{{{stage_name}Plan.PLAN_SUMMARY_URL}}"
    # Review answers the approval unless the plan broadens what the stage may do (pipelines/review.py).
    assert action_environment(review)["PERSON_APPROVES"] == "broadening"
    assert by_name["Plan"]["run_order"] < approve["run_order"] == review["run_order"] < by_name["Apply"]["run_order"]
    assert "before_entry" not in stage(pipeline, stage_name), "nothing skips or delays the stage"


@pytest.mark.req("R4.3")
def test_no_pipeline_role_but_review_may_answer_an_approval_nor_remove_a_boundary(pipeline: Document) -> None:
    review_arn = f"arn:aws:iam::{BETA}:role/canvalo/canvalo-beta-pipeline-review"
    for boundary in boundaries(pipeline).values():
        statements = {s.get("sid"): s for s in policy_statements(pipeline, boundary["policy"])}
        only_review = statements["OnlyReviewApproves"]
        assert only_review["effect"] == "Deny"
        assert only_review["actions"] == ["codepipeline:PutApprovalResult"]
        assert only_review["resources"] == ["*"]
        assert only_review["condition"] == [
            {"test": "ArnNotEquals", "variable": "aws:PrincipalArn", "values": [review_arn]}
        ]
        # It acts on roles: a deny naming the boundary policy (as before) never matched.
        assert statements["NeverRemoveABoundary"]["actions"] == ["iam:DeleteRolePermissionsBoundary"]
        assert statements["NeverRemoveABoundary"]["resources"] == ["*"]
    for role in resources(pipeline, "aws_iam_role").values():
        assert boundary_of(pipeline, role["name"]) in boundaries(pipeline), role["name"]
    # Review answers only the stages' approval actions, and reads the state that holds their tokens.
    by_sid = {s["sid"]: s for s in role_statements(pipeline, "canvalo-beta-pipeline-review")}
    assert by_sid["AnswerTheStagesApprovals"]["resources"] == [
        f"{PIPELINE_ARN}/{name}/Approve" for name in DEPLOY_STAGES
    ]
    assert by_sid["FindTheApprovalsToken"]["actions"] == ["codepipeline:GetPipelineState"]
    assert not [a for a in allowed_actions(list(by_sid.values())) if a.startswith(("sts:", "iam:", "codebuild:"))]


@pytest.mark.req("R4.2", "R4.5")
def test_gamma_bakes_with_its_alarms_watched_before_anything_reaches_prod(pipeline: Document) -> None:
    actions = stage(pipeline, "Gamma")["action"]
    bake = actions[-1]
    assert bake["name"] == "Bake" and bake["run_order"] > max(a["run_order"] for a in actions[:-1])
    assert action_environment(bake) == {"STAGE": "gamma", "MODE": "bake", "BAKE_MINUTES": "15"}
    # The read-only plan project, whose role reads gamma only through gamma's canvalo-plan role.
    assert bake["configuration"]["ProjectName"] == "canvalo-beta-pipeline-plan"
    assert bake["namespace"] == "GammaBake" and bake["input_artifacts"] == ["Source", "Build"]
    project = project_named(pipeline, "canvalo-beta-pipeline-plan")
    assert project["build_timeout"] >= 15 + BAKE_MARGIN_MINUTES, "the build outlives the longest bake"
    deploy_spec = yaml.safe_load((PROJECT_ROOT / "pipelines" / "buildspecs" / "deploy.yml").read_text())
    assert BAKE_RESULT_VARIABLE in deploy_spec["env"]["exported-variables"]
    # Beta and prod promote nothing after them by default: no bake.
    for name in ("Beta", "Prod"):
        assert "Bake" not in [a["name"] for a in stage(pipeline, name)["action"]]


@pytest.mark.req("R4.2", "R4.3")
def test_prod_applies_only_inside_its_deployment_window(pipeline: Document) -> None:
    condition = stage(pipeline, "Prod")["before_entry"]["condition"]
    # Outside the window the condition waits for it to open (AWS's DeploymentWindow rule): `result` engages only
    # if the rule fails. FAIL, never SKIP: a skipped Prod would let an unapplied release through.
    assert condition["result"] == "FAIL"
    (rule,) = condition["rule"]
    assert rule["rule_type_id"] == {"category": "Rule", "owner": "AWS", "provider": "DeploymentWindow", "version": "1"}
    assert rule["configuration"] == {"Cron": "* * 8-16 ? * MON-FRI *", "TimeZone": "UTC"}
    # The window holds the whole stage (its plan, approval and apply); beta and gamma deploy any time.
    for name in ("Beta", "Gamma"):
        assert "before_entry" not in stage(pipeline, name)
