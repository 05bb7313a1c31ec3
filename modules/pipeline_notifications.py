"""The pipeline's SNS topic and the CodeStar Notifications rule that feeds it (R4.5, R10.8)."""

from __future__ import annotations

from cdktn_provider_aws.codestarnotifications_notification_rule import (
    CodestarnotificationsNotificationRule,
    CodestarnotificationsNotificationRuleTarget,
)
from cdktn_provider_aws.sns_topic import SnsTopic
from cdktn_provider_aws.sns_topic_policy import SnsTopicPolicy
from cdktn_provider_aws.sns_topic_subscription import SnsTopicSubscription
from constructs import Construct

from modules.iam import policy_document, statement

# A failed execution, stage or action halts promotion and needs someone. Not
# `codepipeline-pipeline-manual-approval-needed`: every stage has an approval and Review answers most of them
# at once, so that event would mail on every push; Review mails when an approval waits for a person
# (pipelines/review.py).
PIPELINE_EVENTS = (
    "codepipeline-pipeline-pipeline-execution-failed",
    "codepipeline-pipeline-stage-execution-failed",
    "codepipeline-pipeline-action-execution-failed",
)


class NotificationTopic(Construct):
    """A KMS-encrypted topic that CodeStar Notifications (from this account only) may publish to.

    The account's own roles publish through their IAM policies, which suffice within one account.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        kms_key_id: str,
        account_id: str,
        email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = SnsTopic(self, "topic", name=name, kms_master_key_id=kms_key_id)
        publish = policy_document(
            self,
            "policy-document",
            [
                statement(
                    sid="CodeStarNotificationsPublish",
                    actions=["sns:Publish"],
                    resources=[self.topic.arn],
                    principals={"Service": ["codestar-notifications.amazonaws.com"]},
                    conditions=[("StringEquals", "aws:SourceAccount", [account_id])],
                ),
            ],
        )
        SnsTopicPolicy(self, "policy", arn=self.topic.arn, policy=publish.json)
        if email:
            # Email subscriptions stay pending until the address confirms; the README says so.
            SnsTopicSubscription(self, "email", topic_arn=self.topic.arn, protocol="email", endpoint=email)

    def notify_on_pipeline_events(self, construct_id: str, *, name: str, pipeline_arn: str) -> None:
        CodestarnotificationsNotificationRule(
            self,
            construct_id,
            name=name,
            resource=pipeline_arn,
            detail_type="FULL",
            event_type_ids=list(PIPELINE_EVENTS),
            target=[CodestarnotificationsNotificationRuleTarget(address=self.topic.arn, type="SNS")],
        )
