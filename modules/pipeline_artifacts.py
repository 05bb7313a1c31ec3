"""Where the pipeline keeps what its actions hand each other: a private bucket under its own KMS key."""

from __future__ import annotations

from collections.abc import Mapping

from cdktn_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement
from cdktn_provider_aws.kms_alias import KmsAlias
from cdktn_provider_aws.kms_key import KmsKey
from constructs import Construct

from modules.iam import key_administered_through_iam, policy_document, statement
from modules.private_bucket import PrivateBucket
from names import APPLIED_PREFIX, PLAN_SUMMARIES_PREFIX

# CodePipeline keeps a pipeline's artifacts in "a folder ... created for you based on the name of the pipeline"
# (https://docs.aws.amazon.com/codepipeline/latest/APIReference/API_ArtifactStore.html): its first 20 characters,
# by AWS's answer in https://repost.aws/questions/QUI91tw7A9SUOMohJurNqmgA (not in the reference itself). A
# lifecycle prefix is a plain string prefix, so these 20 characters match that folder whether or not the name is
# cut there; were the folder ever shorter, artifacts would be kept longer, never a record expired early.
CODEPIPELINE_FOLDER_LENGTH = 20


def codepipeline_artifact_prefix(pipeline_name: str) -> str:
    """What every key CodePipeline writes into its artifact store starts with."""
    return pipeline_name[:CODEPIPELINE_FOLDER_LENGTH]


def only_its_apply_records_a_stage(
    bucket_arn: str, apply_roles: Mapping[str, str]
) -> list[DataAwsIamPolicyDocumentStatement]:
    """Bucket policy Denies: `applied/<stage>/`, which the drift check plans, is written by that stage's Apply
    role alone. An explicit Deny in a resource policy holds whatever a role's own policy allows: the artifact
    grants of Build (the commit's code), Plan and the other stages' Applies are on the whole bucket."""
    return [
        statement(
            sid=f"OnlyThe{stage.capitalize()}ApplyRecordsWhatItApplied",
            effect="Deny",
            actions=["s3:PutObject"],
            resources=[f"{bucket_arn}/{APPLIED_PREFIX}/{stage}/*"],
            principals={"*": ["*"]},
            conditions=[("ArnNotEquals", "aws:PrincipalArn", [role_arn])],
        )
        for stage, role_arn in apply_roles.items()
    ]


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
        apply_roles: Mapping[str, str],
        expire_after_days: int = 30,
    ) -> None:
        """`name`: the pipeline's, which names the key's alias and CodePipeline's artifact folder; `apply_roles`:
        stage -> the ARN of its Apply role, the one role that may record what that stage applied."""
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
        # Artifacts and plan summaries are rebuilt from a commit, so they expire; a month covers a prod approval
        # left waiting. `applied/` must not: it is what each stage runs until its next Apply, and prod may go a
        # month without one. A rule applies to the objects its filter selects, "the filter specifies a key prefix
        # (tax/). Therefore, the rule applies to objects with the key name prefix tax/"
        # (https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-configuration-examples.html), and no
        # filter excludes; where rules overlap "the shorter expiration policy is honored"
        # (https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-conflicts.html), so a rule of its own
        # could not keep `applied/`: the expiration is confined to the two prefixes that expire instead. Old
        # versions of every object, `applied/`'s among them, still expire: only the current one is planned.
        self.bucket = PrivateBucket(
            self,
            "bucket",
            bucket_name=bucket_name,
            protected=protected,
            kms_key_arn=self.key.arn,
            expire_after_days=expire_after_days,
            expire_only_under=(codepipeline_artifact_prefix(name), f"{PLAN_SUMMARIES_PREFIX}/"),
            noncurrent_expire_after_days=7,
            policy_statements=only_its_apply_records_a_stage(f"arn:aws:s3:::{bucket_name}", apply_roles),
        ).bucket
