"""Facts that the reasons in checkov/suppressions.toml state about the configuration, each asserted here over
every synthesized stack. A test that fails means a reason has become untrue: fix the configuration, or change
the reason (and this test) to say what is true now."""

from __future__ import annotations

import pytest

from tests.infra.conftest import FRONTEND, STAGES, Document, data_sources, part, resources

# Types whose state keeps a secret value (a secret's or parameter's value, a generated password or key).
SECRET_STATE_RESOURCES = {
    "aws_secretsmanager_secret_version",
    "aws_iam_access_key",
    "aws_iam_user_login_profile",
    "aws_ssm_parameter_secure",
    "random_password",
    "tls_private_key",
}
SECRET_STATE_DATA = {"aws_secretsmanager_secret_version", "aws_ssm_parameter", "aws_kms_secrets", "aws_kms_secret"}
# What would record object-level use of a bucket, or act on its events.
BUCKET_AUDIT_TYPES = {"aws_cloudtrail", "aws_s3_bucket_logging", "aws_s3_bucket_notification"}


@pytest.mark.req("R6.2")
def test_every_lifecycle_rule_aborts_incomplete_multipart_uploads_after_7_days(stacks: dict[str, Document]) -> None:
    """CKV_AWS_300's reason: checkov cannot see it on .tf.json, so this test does."""
    checked = 0
    for name, document in stacks.items():
        for key, configuration in resources(document, "aws_s3_bucket_lifecycle_configuration").items():
            for rule in configuration["rule"]:
                assert rule["status"] == "Enabled", f"{name}: {key} rule {rule['id']}"
                assert rule["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 7}], f"{name}: {key}"
                checked += 1
    assert checked >= 4, "the state, ALB log, site and artifact buckets each have a lifecycle rule"


@pytest.mark.req("R11.1")
def test_every_log_group_keeps_its_logs_30_days(stacks: dict[str, Document]) -> None:
    """CKV_AWS_338's reason: container, VPC flow and CodeBuild logs all keep modules/logs.py's LOG_RETENTION_DAYS."""
    groups = [
        (name, group) for name, d in stacks.items() for group in resources(d, "aws_cloudwatch_log_group").values()
    ]
    assert {group["retention_in_days"] for _, group in groups} == {30}, groups
    names = {group["name"] for _, group in groups}
    assert {f"/canvalo/{stage}/{kind}" for stage in STAGES for kind in ("backend", "vpc-flow-logs")} <= names
    assert {name for name, _ in groups} == {*STAGES, "pipeline"}, "the CodeBuild projects' groups too"


@pytest.mark.req("R5.2")
def test_no_stack_keeps_a_secret_value_in_its_state(stacks: dict[str, Document]) -> None:
    """CKV_AWS_145's reason on the state bucket: the state holds what the configuration and its data sources
    produce; with the secret values out of the synthesized JSON (test_no_secret_value_reaches_the_synthesized_json),
    no resource or data source may bring one in: the backend reads its secret's ARN only, never its value."""
    for name, document in stacks.items():
        assert not SECRET_STATE_RESOURCES & set(document.get("resource", {})), name
        assert not SECRET_STATE_DATA & set(document.get("data", {})), name
        for secret in data_sources(document, "aws_secretsmanager_secret").values():
            assert set(secret) - {"//", "name", "provider"} == set(), f"{name}: {secret}"


@pytest.mark.req("R11.2")
def test_no_bucket_access_is_recorded_object_by_object(stacks: dict[str, Document]) -> None:
    """CKV_AWS_18's and CKV2_AWS_62's reasons: no CloudTrail trail, S3 server access logging or bucket
    notification exists, so nothing records or acts on object-level use of the buckets (R11.2 asks only for
    the ALB's access logs). Adding one makes those reasons untrue: update them with it."""
    for name, document in stacks.items():
        assert not BUCKET_AUDIT_TYPES & set(document.get("resource", {})), name


@pytest.mark.req("R6.2")
def test_the_lock_table_uses_the_aws_managed_key_and_holds_only_lock_items(stacks: dict[str, Document]) -> None:
    """CKV_AWS_119's reason: server-side encryption enabled without a key ARN is the AWS-managed key
    aws/dynamodb; the S3 backend writes only lock entries and state digests to a table keyed by LockID."""
    for stage in ("beta", "gamma", "prod"):
        document = stacks[f"bootstrap-{stage}"]
        (table,) = resources(document, "aws_dynamodb_table").values()
        assert table["server_side_encryption"] == {"enabled": True}
        assert table["attribute"] == [{"name": "LockID", "type": "S"}]
        assert not resources(document, "aws_dynamodb_table_item")
    backends = [d["terraform"]["backend"]["s3"] for d in stacks.values() if "s3" in d["terraform"]["backend"]]
    assert backends and {b["dynamodb_table"] for b in backends} == {"canvalo-tfstate-lock"}


@pytest.mark.req("R3.1")
def test_the_site_bucket_enforces_bucket_owner_ownership_so_acls_are_off(stacks: dict[str, Document]) -> None:
    """CKV_AWS_86's reason: CloudFront's legacy access logs need a bucket with ACLs enabled, which
    BucketOwnerEnforced turns off."""
    for stage in ("beta", "gamma", "prod"):
        (controls,) = resources(part(stacks[stage], FRONTEND), "aws_s3_bucket_ownership_controls").values()
        assert controls["rule"] == {"object_ownership": "BucketOwnerEnforced"}
