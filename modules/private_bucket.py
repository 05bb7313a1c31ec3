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
        noncurrent_expire_after_days: int = 90,
    ) -> None:
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
            rule=[
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
                    abort_incomplete_multipart_upload=[
                        S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(days_after_initiation=7)
                    ],
                    expiration=[S3BucketLifecycleConfigurationRuleExpiration(days=expire_after_days)]
                    if expire_after_days
                    else None,
                )
            ],
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
