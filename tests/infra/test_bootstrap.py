"""`bootstrap-<stage>`: state bucket, lock table, workload boundary, the gamma/prod deploy and plan roles,
the backend's secret, prod's hosted zone and the bootstrap version."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from names import BOOTSTRAP_VERSION, bootstrap_version_parameter
from tests.infra import bootstrap_fingerprint
from tests.infra.conftest import STAGES, Document, data_sources, one, policy_statements, resources
from tests.infra.test_pipeline import role_named, role_statements
from tests.support.config import fixture_context, fixture_project

PIPELINE_ROLES = "arn:aws:iam::111111111111:role/canvalo/"
APPLY_ROLES = {stage: f"{PIPELINE_ROLES}canvalo-beta-pipeline-apply-{stage}" for stage in ("gamma", "prod")}
PIPELINE_PLAN_ROLE = f"{PIPELINE_ROLES}canvalo-beta-pipeline-plan"


def pipeline_trust(role_arn: str) -> Document:
    """A stage role's trust in one pipeline role, its only statement unless the stage names break-glass principals."""
    return {
        "sid": "AssumeRole",
        "effect": "Allow",
        "actions": ["sts:AssumeRole"],
        "resources": [],
        "principals": [{"type": "AWS", "identifiers": ["arn:aws:iam::111111111111:root"]}],
        "condition": [{"test": "ArnEquals", "variable": "aws:PrincipalArn", "values": [role_arn]}],
    }


GAMMA_ADMINISTRATORS = [
    "arn:aws:iam::222222222222:role/aws-reserved/sso.amazonaws.com/*/AWSReservedSSO_AdministratorAccess_*",
    "arn:aws:iam::222222222222:role/Admin",
]


@pytest.mark.req("R6.2")
@pytest.mark.parametrize("stage", STAGES)
def test_state_bucket_is_private_versioned_encrypted_and_tls_only(stacks: dict[str, Document], stage: str) -> None:
    document = stacks[f"bootstrap-{stage}"]
    bucket = one(document, "aws_s3_bucket")
    assert bucket["bucket"].startswith("canvalo-tfstate-")
    assert bucket["lifecycle"] == {"prevent_destroy": True}
    assert bucket["force_destroy"] is False
    block = one(document, "aws_s3_bucket_public_access_block")
    assert all(
        block[key] is True
        for key in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    )
    assert one(document, "aws_s3_bucket_versioning")["versioning_configuration"]["status"] == "Enabled"
    encryption = one(document, "aws_s3_bucket_server_side_encryption_configuration")["rule"][0]
    assert encryption["apply_server_side_encryption_by_default"]["sse_algorithm"] in ("AES256", "aws:kms")
    policy = one(document, "aws_s3_bucket_policy")
    deny = [s for s in policy_statements(document, policy["policy"]) if s["sid"] == "DenyInsecureTransport"]
    assert deny and deny[0]["effect"] == "Deny"
    assert deny[0]["condition"] == [{"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}]
    rule = one(document, "aws_s3_bucket_lifecycle_configuration")["rule"][0]
    assert rule["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 7}]


@pytest.mark.parametrize("stage", STAGES)
def test_lock_table_is_on_demand_with_point_in_time_recovery(stacks: dict[str, Document], stage: str) -> None:
    table = one(stacks[f"bootstrap-{stage}"], "aws_dynamodb_table")
    assert table["hash_key"] == "LockID"
    assert table["attribute"] == [{"name": "LockID", "type": "S"}]
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    assert table["point_in_time_recovery"] == {"enabled": True}
    assert table["lifecycle"] == {"prevent_destroy": True}


def test_beta_has_no_deploy_role_because_the_pipeline_lives_there(stacks: dict[str, Document]) -> None:
    assert not resources(stacks["bootstrap-beta"], "aws_iam_role")


@pytest.mark.req("R4.6", "R4.3")
@pytest.mark.parametrize("stage", ["gamma", "prod"])
def test_deploy_role_trusts_only_its_stages_apply_role(stacks: dict[str, Document], stage: str) -> None:
    """Prod's deploy role answers only prod's Apply, which runs after the approval: not gamma's Apply, not
    the plan role every Plan runs as, not the old canvalo-pipeline-deploy that planned and applied all."""
    project = fixture_project()
    assert project.pipeline_apply_role_arn(project.stage(stage)) == APPLY_ROLES[stage]
    document = stacks[f"bootstrap-{stage}"]
    logical, role = role_named(document, "canvalo-deploy")
    assert role["path"] == "/canvalo/"
    trust = policy_statements(document, role["assume_role_policy"])
    assert trust == [pipeline_trust(APPLY_ROLES[stage])]
    trusted = {arn for s in trust for c in s["condition"] for arn in c["values"]}
    others = {APPLY_ROLES["gamma" if stage == "prod" else "prod"], PIPELINE_PLAN_ROLE, project.pipeline_deploy_role_arn}
    assert not trusted & others
    assert document["output"]["deploy_role_arn"]["value"] == f"${{aws_iam_role.{logical}.arn}}"
    assert "managed_policy_arns" not in role
    assert not resources(document, "aws_iam_role_policy_attachment"), "no managed policies such as AdministratorAccess"


@pytest.fixture(scope="module")
def break_glass_stacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Document]:
    """The bootstrap stacks of the fixture with break-glass principals set for gamma only (a cdktf.json list)."""
    from main import synthesize

    stages = fixture_context()["stages"]
    stages["gamma"]["break_glass_principals"] = GAMMA_ADMINISTRATORS
    outdir = tmp_path_factory.mktemp("break-glass")
    synthesize(fixture_project(stages=stages), outdir)
    return {
        stack: json.loads((outdir / "stacks" / stack / "cdk.tf.json").read_text())
        for stack in ("bootstrap-gamma", "bootstrap-prod")
    }


@pytest.mark.req("R4.6")
def test_break_glass_administrators_may_assume_their_own_stages_deploy_role(
    stacks: dict[str, Document], break_glass_stacks: dict[str, Document]
) -> None:
    """A stage's administrators, by role ARN pattern in its own account, and only where they are configured."""
    gamma = break_glass_stacks["bootstrap-gamma"]
    administrators = {
        "sid": "BreakGlassAdministrators",
        "effect": "Allow",
        # sts:SetSourceIdentity: a chained AssumeRole from a session with a source identity needs it.
        "actions": ["sts:AssumeRole", "sts:SetSourceIdentity"],
        "resources": [],
        "principals": [{"type": "AWS", "identifiers": ["arn:aws:iam::222222222222:root"]}],
        "condition": [{"test": "ArnLike", "variable": "aws:PrincipalArn", "values": GAMMA_ADMINISTRATORS}],
    }
    for name, pipeline_role in (("canvalo-deploy", APPLY_ROLES["gamma"]), ("canvalo-plan", PIPELINE_PLAN_ROLE)):
        _, role = role_named(gamma, name)
        assert policy_statements(gamma, role["assume_role_policy"]) == [pipeline_trust(pipeline_role), administrators]
        # Breaking glass grants exactly what the pipeline's role gets there, no more.
        assert role_statements(gamma, name) == role_statements(stacks["bootstrap-gamma"], name)
    prod = break_glass_stacks["bootstrap-prod"]
    _, role = role_named(prod, "canvalo-deploy")
    assert policy_statements(prod, role["assume_role_policy"]) == [pipeline_trust(APPLY_ROLES["prod"])]
    assert prod == stacks["bootstrap-prod"], "another stage's setting changes nothing in prod"


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", ["gamma", "prod"])
def test_deploy_permissions_are_scoped_to_the_project(stacks: dict[str, Document], stage: str) -> None:
    statements = role_statements(stacks[f"bootstrap-{stage}"], "canvalo-deploy")
    account = {"gamma": "222222222222", "prod": "333333333333"}[stage]
    boundary = f"arn:aws:iam::{account}:policy/canvalo/canvalo-workload-boundary"
    for item in statements:
        actions = item["actions"]
        assert ("*" not in actions and "iam:*" not in actions) or item["effect"] == "Deny", item["sid"]
        iam_actions = [a for a in actions if a.startswith("iam:")]
        if iam_actions and item["effect"] == "Allow":
            for resource in item["resources"]:
                assert resource.startswith(f"arn:aws:iam::{account}:role/canvalo/canvalo-") or (
                    item["sid"] == "ServiceLinkedRoles" and ":role/aws-service-role/" in resource
                ), f"{item['sid']} reaches {resource}"
        if item["resources"] == ["*"] and item["effect"] == "Allow":
            assert item["sid"].endswith("WithoutResourceScope"), f"{item['sid']} uses Resource '*'"
            assert not iam_actions and not any(a.startswith(("s3:", "sts:", "dynamodb:")) for a in actions)
            assert [a for a in actions if a.startswith("secretsmanager:")] in ([], ["secretsmanager:ListSecrets"])
    creating = next(s for s in statements if "iam:CreateRole" in s["actions"])
    assert creating["condition"] == [
        {"test": "StringEquals", "variable": "iam:PermissionsBoundary", "values": [boundary]}
    ]
    secrets = next(s for s in statements if s["sid"] == "ProjectSecretsWithoutValues")
    assert "secretsmanager:GetSecretValue" not in secrets["actions"], "deploying never reads secret values"
    assert secrets["resources"] == [f"arn:aws:secretsmanager:eu-west-1:{account}:secret:canvalo/{stage}/backend-??????"]
    denied = [s for s in statements if s["effect"] == "Deny"]
    # DeleteRolePermissionsBoundary acts on roles: a deny naming the boundary policy would never match.
    assert any(s["actions"] == ["iam:DeleteRolePermissionsBoundary"] and s["resources"] == ["*"] for s in denied)
    assert not any("iam:DeleteRolePermissionsBoundary" in s["actions"] and boundary in s["resources"] for s in denied)


@pytest.mark.parametrize("stage", STAGES)
def test_workload_boundary_is_a_regional_ceiling(stacks: dict[str, Document], stage: str) -> None:
    document = stacks[f"bootstrap-{stage}"]
    policy = one(document, "aws_iam_policy")
    assert policy["name"] == "canvalo-workload-boundary"
    ceiling, secret = policy_statements(document, policy["policy"])
    assert not any(
        action.startswith(("iam:", "secretsmanager:", "kms:")) or action.endswith(":*") for action in ceiling["actions"]
    )
    assert ceiling["condition"][0]["variable"] == "aws:RequestedRegion"
    # Only the backend's task execution role, by ARN, reads the stage's secret (tests/infra/test_escalation.py).
    account = {"beta": "111111111111", "gamma": "222222222222", "prod": "333333333333"}[stage]
    assert secret["actions"] == ["secretsmanager:GetSecretValue"]
    assert secret["resources"] == [f"arn:aws:secretsmanager:eu-west-1:{account}:secret:canvalo/{stage}/backend-??????"]
    reader = f"arn:aws:iam::{account}:role/canvalo/canvalo-{stage}-backend-execution"
    assert {"test": "ArnEquals", "variable": "aws:PrincipalArn", "values": [reader]} in secret["condition"]
    assert data_sources(document, "aws_iam_policy_document")


def deploy_role_statements(stacks: dict[str, Document], stage: str) -> list[Document]:
    """The deploy permissions of a stage: the gamma/prod deploy role's, or beta's on the pipeline's deploy role."""
    if stage == "beta":
        document = stacks["pipeline"]
        (policy,) = [p for p in resources(document, "aws_iam_role_policy").values() if "deploy-role" in p["role"]]
        return policy_statements(document, policy["policy"])
    return role_statements(stacks[f"bootstrap-{stage}"], "canvalo-deploy")


@pytest.mark.req("R5.1", "R7.6")
@pytest.mark.parametrize("stage", STAGES)
def test_bootstrap_creates_the_backends_secret_without_a_value(stacks: dict[str, Document], stage: str) -> None:
    """The administrator sets the value after the bootstrap, so the first backend deploy's tasks start."""
    document = stacks[f"bootstrap-{stage}"]
    secret = one(document, "aws_secretsmanager_secret")
    assert secret["name"] == f"canvalo/{stage}/backend"
    assert all(key in secret["description"] for key in ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_PUB_KEY"))
    assert secret["recovery_window_in_days"] == {"beta": 0, "gamma": 7, "prod": 30}[stage]
    assert secret.get("lifecycle", {}).get("prevent_destroy", False) is (stage == "prod")
    assert "kms_key_id" not in secret and not resources(document, "aws_secretsmanager_secret_rotation")
    (name,) = resources(document, "aws_secretsmanager_secret")
    assert document["output"]["backend_secret_name"]["value"] == f"${{aws_secretsmanager_secret.{name}.name}}"
    for stack, other in stacks.items():
        assert not resources(other, "aws_secretsmanager_secret_version"), f"{stack} would put a value in state"
        if stack != f"bootstrap-{stage}":
            names = [s["name"] for s in resources(other, "aws_secretsmanager_secret").values()]
            assert f"canvalo/{stage}/backend" not in names, f"{stack} creates the secret too"


@pytest.mark.req("R8.7", "R7.6")
def test_prod_bootstrap_creates_the_domains_public_zone_and_shows_its_name_servers(
    stacks: dict[str, Document],
) -> None:
    document = stacks["bootstrap-prod"]
    zone = one(document, "aws_route53_zone")
    assert zone["name"] == "canvalo.example.com" and "vpc" not in zone, "public: no VPC association"
    assert zone["lifecycle"] == {"prevent_destroy": True} and not zone.get("force_destroy")
    (name,) = resources(document, "aws_route53_zone")
    assert document["output"]["name_servers"]["value"] == f"${{aws_route53_zone.{name}.name_servers}}"
    for stage in STAGES:
        assert not resources(stacks[stage], "aws_route53_zone"), "only looked up there"
    # Looked up by the backend (its api. record) and the frontend (its certificate and alias).
    lookups = {z["name"] for z in data_sources(stacks["prod"], "aws_route53_zone").values()}
    assert lookups == {"canvalo.example.com"}


@pytest.mark.parametrize("stage", ["beta", "gamma"])
def test_stages_without_a_domain_get_no_zone(stacks: dict[str, Document], stage: str) -> None:
    document = stacks[f"bootstrap-{stage}"]
    assert not resources(document, "aws_route53_zone") and "name_servers" not in document["output"]


@pytest.mark.parametrize("stage", STAGES)
def test_bootstrap_records_its_version_where_the_preflight_reads_it(stacks: dict[str, Document], stage: str) -> None:
    assert bootstrap_version_parameter("canvalo", stage) == f"/canvalo/{stage}/bootstrap-version"
    parameter = one(stacks[f"bootstrap-{stage}"], "aws_ssm_parameter")
    assert parameter["name"] == f"/canvalo/{stage}/bootstrap-version"
    assert (parameter["type"], parameter["value"]) == ("String", str(BOOTSTRAP_VERSION))
    assert isinstance(BOOTSTRAP_VERSION, int)


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", STAGES)
def test_deploys_neither_create_nor_delete_what_bootstrap_owns(stacks: dict[str, Document], stage: str) -> None:
    statements = deploy_role_statements(stacks, stage)
    allowed = {a for s in statements if s["effect"] == "Allow" for a in s["actions"]}
    for action in (
        "secretsmanager:CreateSecret",
        "secretsmanager:DeleteSecret",
        "secretsmanager:UpdateSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:*",
        "route53:CreateHostedZone",
        "route53:DeleteHostedZone",
        "route53:ChangeTagsForResource",
        "route53:*",
    ):
        assert action not in allowed, f"{stage}: {action}"
    secrets = next(s for s in statements if s["sid"] == "ProjectSecretsWithoutValues")
    assert set(secrets["actions"]) >= {
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetResourcePolicy",
        "secretsmanager:PutResourcePolicy",
        "secretsmanager:DeleteResourcePolicy",
    }
    account = {"beta": "111111111111", "gamma": "222222222222", "prod": "333333333333"}[stage]
    ssm = [s for s in statements if any(a.startswith("ssm:") for a in s["actions"])]
    # Beta's are the pipeline's deploy role's, which also keeps the drift check's own parameters and the
    # release records in the pipeline account (tests/infra/test_pipeline.py scopes those); none is bootstrap's.
    kept = ("/deployed-commit", "/drift-digest", "/release")
    ssm = [s for s in ssm if not all(r.endswith(kept) for r in s["resources"])]
    assert ssm == [
        {
            "sid": "ReadTheBootstrapVersion",
            "effect": "Allow",
            "actions": ["ssm:GetParameter"],
            "resources": [f"arn:aws:ssm:eu-west-1:{account}:parameter/canvalo/{stage}/bootstrap-version"],
        }
    ]


def test_a_bootstrap_change_comes_with_a_new_bootstrap_version(stacks: dict[str, Document]) -> None:
    """Administrators apply bootstrap stacks by hand; the version is how the pipeline knows they did."""
    current = bootstrap_fingerprint.fingerprints(stacks)
    assert set(current) == {f"bootstrap-{stage}" for stage in STAGES}
    problems = bootstrap_fingerprint.problems(current, bootstrap_fingerprint.recorded())
    assert not problems, "\n".join(problems)


def test_the_fingerprint_sees_a_resource_change_but_not_the_versions_own_value(stacks: dict[str, Document]) -> None:
    document = copy.deepcopy(stacks["bootstrap-prod"])
    before = bootstrap_fingerprint.fingerprint(document)
    one(document, "aws_ssm_parameter")["value"] = str(BOOTSTRAP_VERSION + 1)
    assert bootstrap_fingerprint.fingerprint(document) == before
    for secret in document["resource"]["aws_secretsmanager_secret"].values():
        secret["recovery_window_in_days"] = 7
    assert bootstrap_fingerprint.fingerprint(document) != before
    record: dict[str, Any] = {"version": BOOTSTRAP_VERSION, "stacks": bootstrap_fingerprint.fingerprints(stacks)}
    (problem,) = bootstrap_fingerprint.problems({**record["stacks"], "bootstrap-prod": "changed"}, record)
    assert problem.startswith("bootstrap-prod changed: bump BOOTSTRAP_VERSION in names.py")
    assert bootstrap_fingerprint.UPDATE_COMMAND in problem and "apply bootstrap-prod" in problem
    (bumped,) = bootstrap_fingerprint.problems(record["stacks"], {**record, "version": BOOTSTRAP_VERSION - 1})
    assert bootstrap_fingerprint.UPDATE_COMMAND in bumped
