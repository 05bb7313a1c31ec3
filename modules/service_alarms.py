"""The alarms of a load-balanced service and the encrypted SNS topic they notify (R11.3, R11.4)."""

from __future__ import annotations

from cdktn_provider_aws.cloudwatch_metric_alarm import (
    CloudwatchMetricAlarm,
    CloudwatchMetricAlarmMetricQuery,
    CloudwatchMetricAlarmMetricQueryMetric,
)
from cdktn_provider_aws.kms_key import KmsKey
from cdktn_provider_aws.sns_topic import SnsTopic
from cdktn_provider_aws.sns_topic_policy import SnsTopicPolicy
from constructs import Construct

from modules.iam import key_administered_through_iam, policy_document, statement

ALB_NAMESPACE = "AWS/ApplicationELB"
# Responses the service (target) or the load balancer itself answered with 5xx, per request, in percent.
# FILL: a period without errors (or without requests) has no datapoint, which means 0, not unknown.
ERROR_RATE_METRICS = {
    "target5xx": "HTTPCode_Target_5XX_Count",
    "elb5xx": "HTTPCode_ELB_5XX_Count",
    "requests": "RequestCount",
}
ERROR_RATE_EXPRESSION = "IF(FILL(requests, 0) > 0, (FILL(target5xx, 0) + FILL(elb5xx, 0)) / FILL(requests, 0) * 100, 0)"


class ServiceAlarms(Construct):
    """A customer-managed-key-encrypted topic (CloudWatch cannot publish to one encrypted with the
    AWS-managed SNS key) and the service's alarms, each notifying it on ALARM and on OK:

    - fewer than `healthy_tasks_threshold` healthy targets for 2 consecutive minutes; no datapoint
      counts as breaching, since a target group without healthy targets may report nothing;
    - more than `error_rate_percent` of requests answered 5xx over `error_rate_period_seconds`.

    `deployment_alarms` are the ones ECS watches during a deployment and its bake time, rolling the
    release back when one goes to ALARM: the 5xx rate only. ECS starts watching once a task of the new
    release runs, bakes for as long as the alarms' evaluation takes (one 5-minute period here), can roll
    back only to a deployment that COMPLETED (a service's first deployment has none), and does not watch
    at all during a deployment that starts with one of its alarms already in ALARM. The 5xx rate treats
    no data as not breaching, so a first deploy, a quiet stage or a replaced load balancer starts OK and
    only errors the new tasks answer trip it. The healthy-tasks alarm is not one: it treats no data as
    breaching (a target group without healthy targets may report nothing), so it is in ALARM exactly
    when a first deploy or a deploy after a load balancer replacement starts, which would switch off the
    5xx watch for that deployment, or, starting INSUFFICIENT_DATA, fail the first deploy that has nothing
    to roll back to. Tasks of a release that never get healthy are the circuit breaker's to roll back.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        topic_name: str,
        account_id: str,
        region: str,
        load_balancer_arn_suffix: str,
        target_group_arn_suffix: str,
        healthy_tasks_threshold: int,
        error_rate_percent: float = 5,
        error_rate_period_seconds: int = 300,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = self._key(topic_name=topic_name, account_id=account_id)
        self.topic = SnsTopic(self, "topic", name=topic_name, kms_master_key_id=self.key.arn)
        self._let_alarms_publish(account_id=account_id, region=region)
        self.healthy_tasks_alarm = self._healthy_tasks_alarm(
            name=name,
            threshold=healthy_tasks_threshold,
            load_balancer_arn_suffix=load_balancer_arn_suffix,
            target_group_arn_suffix=target_group_arn_suffix,
        )
        self.error_rate_alarm = self._error_rate_alarm(
            name=name,
            percent=error_rate_percent,
            period_seconds=error_rate_period_seconds,
            load_balancer_arn_suffix=load_balancer_arn_suffix,
        )
        self.deployment_alarms = (self.error_rate_alarm,)

    def _key(self, *, topic_name: str, account_id: str) -> KmsKey:
        key_policy = policy_document(
            self,
            "key-policy",
            [
                key_administered_through_iam(account_id),
                statement(
                    sid="CloudWatchAlarmsPublish",
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    resources=["*"],
                    principals={"Service": ["cloudwatch.amazonaws.com"]},
                    conditions=[("StringEquals", "aws:SourceAccount", [account_id])],
                ),
            ],
        )
        return KmsKey(
            self,
            "key",
            description=f"{topic_name}: encrypts the alarm notifications",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=key_policy.json,
        )

    def _let_alarms_publish(self, *, account_id: str, region: str) -> None:
        """The topic's policy: only this account's CloudWatch alarms in `region` may publish to it."""
        topic_policy = policy_document(
            self,
            "topic-policy",
            [
                statement(
                    sid="CloudWatchAlarmsPublish",
                    actions=["sns:Publish"],
                    resources=[self.topic.arn],
                    principals={"Service": ["cloudwatch.amazonaws.com"]},
                    conditions=[
                        ("StringEquals", "aws:SourceAccount", [account_id]),
                        ("ArnLike", "aws:SourceArn", [f"arn:aws:cloudwatch:{region}:{account_id}:alarm:*"]),
                    ],
                )
            ],
        )
        SnsTopicPolicy(self, "topic-policy-attachment", arn=self.topic.arn, policy=topic_policy.json)

    def _healthy_tasks_alarm(
        self, *, name: str, threshold: int, load_balancer_arn_suffix: str, target_group_arn_suffix: str
    ) -> CloudwatchMetricAlarm:
        notify = [self.topic.arn]
        return CloudwatchMetricAlarm(
            self,
            "healthy-tasks",
            alarm_name=f"{name}-healthy-tasks",
            alarm_description=f"Healthy tasks behind the load balancer below {threshold}",
            namespace=ALB_NAMESPACE,
            metric_name="HealthyHostCount",
            dimensions={"LoadBalancer": load_balancer_arn_suffix, "TargetGroup": target_group_arn_suffix},
            statistic="Minimum",
            period=60,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            comparison_operator="LessThanThreshold",
            threshold=threshold,
            treat_missing_data="breaching",
            alarm_actions=notify,
            ok_actions=notify,
        )

    def _error_rate_alarm(
        self, *, name: str, percent: float, period_seconds: int, load_balancer_arn_suffix: str
    ) -> CloudwatchMetricAlarm:
        notify = [self.topic.arn]
        queries = [
            CloudwatchMetricAlarmMetricQuery(
                id=query_id,
                return_data=False,
                metric=CloudwatchMetricAlarmMetricQueryMetric(
                    namespace=ALB_NAMESPACE,
                    metric_name=metric_name,
                    dimensions={"LoadBalancer": load_balancer_arn_suffix},
                    period=period_seconds,
                    stat="Sum",
                ),
            )
            for query_id, metric_name in ERROR_RATE_METRICS.items()
        ]
        return CloudwatchMetricAlarm(
            self,
            "error-rate",
            alarm_name=f"{name}-5xx-rate",
            alarm_description=(
                f"More than {percent:g}% of requests answered 5xx (target or load balancer) "
                f"over {period_seconds // 60} minutes"
            ),
            metric_query=[
                *queries,
                CloudwatchMetricAlarmMetricQuery(
                    id="errorRate", expression=ERROR_RATE_EXPRESSION, label="5xx rate (%)", return_data=True
                ),
            ],
            evaluation_periods=1,
            comparison_operator="GreaterThanThreshold",
            threshold=percent,
            # No traffic is no error; the healthy-tasks alarm covers a service that answers nothing.
            treat_missing_data="notBreaching",
            alarm_actions=notify,
            ok_actions=notify,
        )
