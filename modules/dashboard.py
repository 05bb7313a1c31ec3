"""A CloudWatch dashboard of a load-balanced Fargate service: traffic, latency, errors, capacity (R11.5)."""

from __future__ import annotations

import json

from cdktn_provider_aws.cloudwatch_dashboard import CloudwatchDashboard
from constructs import Construct

from modules.service_alarms import ALB_NAMESPACE, ERROR_RATE_EXPRESSION, ERROR_RATE_METRICS

WIDGET_WIDTH = 12
WIDGET_HEIGHT = 6


def _widget(
    index: int, title: str, metrics: list[list[object]], *, region: str, stat: str = "Sum"
) -> dict[str, object]:
    """A time-series widget, two per row."""
    return {
        "type": "metric",
        "x": (index % 2) * WIDGET_WIDTH,
        "y": (index // 2) * WIDGET_HEIGHT,
        "width": WIDGET_WIDTH,
        "height": WIDGET_HEIGHT,
        "properties": {
            "title": title,
            "region": region,
            "view": "timeSeries",
            "stat": stat,
            "period": 60,
            "metrics": metrics,
        },
    }


def dashboard_body(
    *,
    region: str,
    load_balancer_arn_suffix: str,
    target_group_arn_suffix: str,
    cluster_name: str,
    service_name: str,
) -> str:
    """The dashboard's JSON; the values may be Terraform references, resolved when applied."""
    load_balancer = ["LoadBalancer", load_balancer_arn_suffix]
    target_group = ["TargetGroup", target_group_arn_suffix, *load_balancer]
    service = ["ClusterName", cluster_name, "ServiceName", service_name]
    error_rate: list[list[object]] = [
        [ALB_NAMESPACE, metric, *load_balancer, {"id": query_id, "visible": False}]
        for query_id, metric in ERROR_RATE_METRICS.items()
    ]
    error_rate.append([{"expression": ERROR_RATE_EXPRESSION, "label": "5xx rate (%)", "id": "errorRate"}])
    widgets = [
        _widget(0, "Requests", [[ALB_NAMESPACE, "RequestCount", *load_balancer]], region=region),
        _widget(
            1,
            "Latency (seconds)",
            [
                [ALB_NAMESPACE, "TargetResponseTime", *load_balancer, {"stat": "p50", "label": "p50"}],
                [ALB_NAMESPACE, "TargetResponseTime", *load_balancer, {"stat": "p99", "label": "p99"}],
            ],
            region=region,
            stat="p50",
        ),
        _widget(2, "5xx rate (%)", error_rate, region=region),
        _widget(
            3,
            "Healthy and unhealthy tasks",
            [
                [ALB_NAMESPACE, "HealthyHostCount", *target_group],
                [ALB_NAMESPACE, "UnHealthyHostCount", *target_group],
            ],
            region=region,
            stat="Minimum",
        ),
        _widget(4, "CPU (%)", [["AWS/ECS", "CPUUtilization", *service]], region=region, stat="Average"),
        _widget(5, "Memory (%)", [["AWS/ECS", "MemoryUtilization", *service]], region=region, stat="Average"),
    ]
    return json.dumps({"widgets": widgets})


class ServiceDashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        region: str,
        load_balancer_arn_suffix: str,
        target_group_arn_suffix: str,
        cluster_name: str,
        service_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dashboard = CloudwatchDashboard(
            self,
            "dashboard",
            dashboard_name=name,
            dashboard_body=dashboard_body(
                region=region,
                load_balancer_arn_suffix=load_balancer_arn_suffix,
                target_group_arn_suffix=target_group_arn_suffix,
                cluster_name=cluster_name,
                service_name=service_name,
            ),
        )
