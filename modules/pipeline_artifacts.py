"""Where the pipeline keeps what its actions hand each other: a private bucket under its own KMS key."""

from __future__ import annotations

from cdktn_provider_aws.kms_alias import KmsAlias
from cdktn_provider_aws.kms_key import KmsKey
from constructs import Construct

from modules.iam import key_administered_through_iam, policy_document, statement
from modules.private_bucket import PrivateBucket


class PipelineArtifactStore(Construct):
    """A customer-managed key with rotation, and the artifact bucket encrypted with it.

    The key also encrypts the pipeline's SNS topic and CodeBuild's build output, so its policy lets
    CodeStar Notifications use it through SNS. Roles get the key through their own IAM policies (the
    account statement below delegates to IAM), each only the operations it needs.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        bucket_name: str,
        account_id: str,
        region: str,
        protected: bool,
        expire_after_days: int = 30,
    ) -> None:
        super().__init__(scope, construct_id)
        key_policy = policy_document(
            self,
            "key-policy",
            [
                key_administered_through_iam(account_id),
                statement(
                    sid="CodeStarNotificationsPublishToTheEncryptedTopic",
                    actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                    resources=["*"],
                    principals={"Service": ["codestar-notifications.amazonaws.com"]},
                    conditions=[("StringEquals", "kms:ViaService", [f"sns.{region}.amazonaws.com"])],
                ),
            ],
        )
        self.key = KmsKey(
            self,
            "key",
            description=f"Encrypts the {name} artifacts, notifications and build output",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=key_policy.json,
        )
        KmsAlias(self, "alias", name=f"alias/{name}", target_key_id=self.key.key_id)
        # Artifacts are rebuilt from a commit, so they expire; a month covers a prod approval left waiting.
        self.bucket = PrivateBucket(
            self,
            "bucket",
            bucket_name=bucket_name,
            protected=protected,
            kms_key_arn=self.key.arn,
            expire_after_days=expire_after_days,
            noncurrent_expire_after_days=7,
        ).bucket
