"""A CloudWatch metric alarm in a given state, as a stage's stack leaves it: the tests of what reads alarms."""

from __future__ import annotations

from typing import Any


def put_alarm(cloudwatch: Any, name: str, state: str) -> None:
    """Create `name` (a 5xx count alarm; what it measures does not matter to its readers) and set its state."""
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/ApplicationELB",
        MetricName="HTTPCode_Target_5XX_Count",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="set by the test")
