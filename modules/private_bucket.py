"""An S3 bucket that nobody outside the account can read: the one way this project makes buckets."""

from __future__ import annotations

from collections.abc import Sequence

from cdktn import TerraformResourceLifecycle
from cdktn_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement
from cdktn_provider_aws.s3_bucket import S3Bucket
from cdktn_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleExpiration,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktn_provider_aws.s3_bucket_ownership_controls import (
    S3BucketOwnershipControls,
    S3BucketOwnershipControlsRule,
)
from cdktn_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktn_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktn_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktn_provider_aws.s3_bucket_versioning import (
    S3BucketVersioningA,
    S3BucketVersioningVersioningConfiguration,
)
from constructs import Construct

from modules.iam import deny_insecure_transport, policy_document


class PrivateBucket(Construct):
    """Versioned, encrypted, TLS-only bucket with all four public-access blocks on.

    `kms_key_arn` switches encryption from SSE-S3 to SSE-KMS with that key; some readers (ALB log
    delivery) only support SSE-S3. `protected` sets `prevent_destroy` and keeps `force_destroy` off;
    an unprotected bucket can be destroyed with its objects, so beta stays easy to tear down.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket_name: str,
        protected: bool,
        kms_key_arn: str | None = None,
        policy_statements: Sequence[DataAwsIamPolicyDocumentStatement] = (),
        expire_after_days: int | None = None,
        expire_only_under: Sequence[str] = (),
        noncurrent_expire_after_days: int = 90,
    ) -> None:
        """`expire_after_days`: objects expire that many days after creation: every object, or with
        `expire_only_under` only those whose key starts with one of those prefixes (one rule each)."""
        # A raise, not an assert: cdktf.json runs the app with `python -O`.
        if expire_only_under and not expire_after_days:
            raise ValueError(f"{bucket_name}: expire_only_under needs expire_after_days: a rule without an action")
        super().__init__(scope, construct_id)
        self.bucket = S3Bucket(
            self,
            "bucket",
            bucket=bucket_name,
            force_destroy=not protected,
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if protected else None,
        )
        self.public_access_block = S3BucketPublicAccessBlock(
            self,
            "public-access-block",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )
        S3BucketOwnershipControls(
            self,
            "ownership",
            bucket=self.bucket.id,
            rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
        )
        S3BucketVersioningA(
            self,
            "versioning",
            bucket=self.bucket.id,
            versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"),
        )
        S3BucketServerSideEncryptionConfigurationA(
            self,
            "encryption",
            bucket=self.bucket.id,
            rule=[
                S3BucketServerSideEncryptionConfigurationRuleA(
                    apply_server_side_encryption_by_default=S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                        sse_algorithm="aws:kms" if kms_key_arn else "AES256",
                        kms_master_key_id=kms_key_arn,
                    ),
                    bucket_key_enabled=bool(kms_key_arn),
                )
            ],
        )
        S3BucketLifecycleConfiguration(
            self,
            "lifecycle",
            bucket=self.bucket.id,
            rule=lifecycle_rules(expire_after_days, expire_only_under, noncurrent_expire_after_days),
        )
        self.policy_document = policy_document(
            self,
            "policy-document",
            [deny_insecure_transport(self.bucket.arn), *policy_statements],
        )
        self.policy = S3BucketPolicy(
            self,
            "policy",
            bucket=self.bucket.id,
            policy=self.policy_document.json,
            # A bucket policy put before the public-access block would race with it.
            depends_on=[self.public_access_block],
        )


def lifecycle_rules(
    expire_after_days: int | None, expire_only_under: Sequence[str], noncurrent_expire_after_days: int
) -> list[S3BucketLifecycleConfigurationRule]:
    """Every object's old versions expire; its current version after `expire_after_days`, if set, in the first
    rule, or with `expire_only_under` in one rule per prefix (a filter selects; none excludes)."""

    def expiration(days: int | None) -> list[S3BucketLifecycleConfigurationRuleExpiration] | None:
        return [S3BucketLifecycleConfigurationRuleExpiration(days=days)] if days else None

    # In every rule, so that each rule states it (CKV_AWS_300, checked by tests/infra/test_suppression_facts.py).
    abort_uploads = [S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(days_after_initiation=7)]
    return [
        S3BucketLifecycleConfigurationRule(
            id="expire-old-versions",
            status="Enabled",
            # Every object, said explicitly: an empty filter draws the provider's "Invalid
            # Attribute Combination" warning, which a future version makes an error.
            filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
            noncurrent_version_expiration=[
                S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                    noncurrent_days=noncurrent_expire_after_days
                )
            ],
            abort_incomplete_multipart_upload=abort_uploads,
            expiration=None if expire_only_under else expiration(expire_after_days),
        ),
        *(
            S3BucketLifecycleConfigurationRule(
                id=f"expire-{prefix.strip('/').replace('/', '-')}",
                status="Enabled",
                filter=[S3BucketLifecycleConfigurationRuleFilter(prefix=prefix)],
                abort_incomplete_multipart_upload=abort_uploads,
                expiration=expiration(expire_after_days),
            )
            for prefix in expire_only_under
        ),
    ]
