"""`bootstrap-<stage>`: state bucket, lock table, workload boundary, and the gamma/prod deploy role."""

from __future__ import annotations

import pytest

from tests.infra.conftest import STAGES, Document, data_sources, one, policy_statements, resources

PIPELINE_DEPLOY_ROLE = "arn:aws:iam::111111111111:role/canvalo/canvalo-pipeline-deploy"


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


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", ["gamma", "prod"])
def test_deploy_role_trusts_only_the_pipelines_deploy_role(stacks: dict[str, Document], stage: str) -> None:
    document = stacks[f"bootstrap-{stage}"]
    role = one(document, "aws_iam_role")
    assert role["name"] == "canvalo-deploy" and role["path"] == "/canvalo/"
    trust = policy_statements(document, role["assume_role_policy"])
    assert trust == [
        {
            "sid": "AssumeRole",
            "effect": "Allow",
            "actions": ["sts:AssumeRole"],
            "resources": [],
            "principals": [{"type": "AWS", "identifiers": ["arn:aws:iam::111111111111:root"]}],
            "condition": [{"test": "ArnEquals", "variable": "aws:PrincipalArn", "values": [PIPELINE_DEPLOY_ROLE]}],
        }
    ]
    assert "managed_policy_arns" not in role
    assert not resources(document, "aws_iam_role_policy_attachment"), "no managed policies such as AdministratorAccess"


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", ["gamma", "prod"])
def test_deploy_permissions_are_scoped_to_the_project(stacks: dict[str, Document], stage: str) -> None:
    document = stacks[f"bootstrap-{stage}"]
    policy = one(document, "aws_iam_role_policy")
    statements = policy_statements(document, policy["policy"])
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
        if item["resources"] == ["*"]:
            assert item["sid"].endswith("WithoutResourceScope"), f"{item['sid']} uses Resource '*'"
            assert not iam_actions and not any(a.startswith(("s3:", "sts:", "dynamodb:")) for a in actions)
            assert [a for a in actions if a.startswith("secretsmanager:")] in ([], ["secretsmanager:ListSecrets"])
    creating = next(s for s in statements if "iam:CreateRole" in s["actions"])
    assert creating["condition"] == [
        {"test": "StringEquals", "variable": "iam:PermissionsBoundary", "values": [boundary]}
    ]
    secrets = next(s for s in statements if s["sid"] == "ProjectSecretsWithoutValues")
    assert "secretsmanager:GetSecretValue" not in secrets["actions"], "deploying never reads secret values"
    denied = [s for s in statements if s["effect"] == "Deny"]
    assert any(boundary in s["resources"] and "iam:DeleteRolePermissionsBoundary" in s["actions"] for s in denied)


@pytest.mark.parametrize("stage", STAGES)
def test_workload_boundary_is_a_regional_ceiling(stacks: dict[str, Document], stage: str) -> None:
    document = stacks[f"bootstrap-{stage}"]
    policy = one(document, "aws_iam_policy")
    assert policy["name"] == "canvalo-workload-boundary"
    (ceiling,) = policy_statements(document, policy["policy"])
    assert not any(action.startswith("iam:") or action.endswith(":*") for action in ceiling["actions"])
    assert ceiling["condition"][0]["variable"] == "aws:RequestedRegion"
    assert data_sources(document, "aws_iam_policy_document")
