"""`python -m pipelines.drift`: a refresh-only plan of every prod stack, drift published to SNS in moto."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws
from moto.sns.models import sns_backends

from pipelines.drift import EXIT_DRIFT, main
from pipelines.terraform_stage import Terraform
from tests.pipelines.fake_terraform import FakeTerraform, plan_document, synthesized

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

REGION = "eu-west-1"
PROD_STACKS: dict[str, list[str]] = {
    "prod-network": [],
    "prod-backend": ["prod-network"],
    "prod-frontend": [],
    "gamma-backend": [],
}


@dataclass
class Topic:
    sns: SNSClient
    arn: str

    def messages(self) -> list[tuple[str | None, str]]:
        """(subject, message) of everything published to the topic."""
        account = self.arn.split(":")[4]
        topic = sns_backends[account][REGION].topics[self.arn]
        return [(subject, message) for _, message, subject, *_ in topic.sent_notifications]


@pytest.fixture
def topic() -> Iterator[Topic]:
    with mock_aws():
        sns = boto3.client("sns", region_name=REGION)
        yield Topic(sns, sns.create_topic(Name="canvalo-beta-pipeline-notifications")["TopicArn"])


def run(topic: Topic, tmp_path: Path, fake: FakeTerraform) -> int:
    cdktf_out = synthesized(tmp_path, PROD_STACKS)
    argv = ["--stage", "prod", "--cdktf-out", str(cdktf_out), "--work-dir", str(tmp_path / "drift")]
    return main(argv, terraform=Terraform(fake), sns=topic.sns, environ={"NOTIFICATION_TOPIC_ARN": topic.arn})


def test_a_clean_prod_exits_0_and_notifies_nobody(topic: Topic, tmp_path: Path) -> None:
    fake = FakeTerraform()
    assert run(topic, tmp_path, fake) == 0
    assert [stack for stack, command in fake.commands() if command == "plan"] == [
        "prod-network",
        "prod-backend",
        "prod-frontend",
    ], "every prod stack, and only prod's"
    plan = fake.args_of("prod-backend", "plan")
    assert {"-refresh-only", "-lock=false", "-detailed-exitcode"} <= set(plan)
    assert not [command for _, command in fake.commands() if command == "apply"], "plan only"
    assert topic.messages() == []


def test_drift_is_published_naming_the_stacks_and_resources(
    topic: Topic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeTerraform(
        plans={
            "prod-backend": plan_document(
                drift=[
                    ("aws_ecs_service.backend", "aws_ecs_service", ["update"]),
                    ("aws_cloudwatch_metric_alarm.cpu", "aws_cloudwatch_metric_alarm", ["delete"]),
                ]
            ),
            "prod-frontend": plan_document(drift=[("aws_cloudfront_distribution.site", "x", ["update"])]),
        }
    )
    assert run(topic, tmp_path, fake) == EXIT_DRIFT
    ((subject, message),) = topic.messages()
    assert subject == "Canvalo prod: drift in prod-backend, prod-frontend"
    assert "prod-network" not in message
    assert "  aws_ecs_service.backend: changed outside Terraform" in message
    assert "  aws_cloudwatch_metric_alarm.cpu: deleted outside Terraform" in message
    assert "prod-frontend:\n  aws_cloudfront_distribution.site: changed outside Terraform" in message
    assert "prod-network: matches" in capsys.readouterr().out


def test_a_check_that_cannot_run_is_published_and_fails(
    topic: Topic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(topic, tmp_path, FakeTerraform(failures={("prod-backend", "init"): 1})) == 1
    ((subject, message),) = topic.messages()
    assert subject == "Canvalo prod: the drift check could not run"
    assert "terraform init failed in prod-backend" in message
    assert capsys.readouterr().err.startswith("error: terraform init failed in prod-backend")


def test_without_a_topic_it_refuses_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeTerraform()
    assert main(["--stage", "prod", "--cdktf-out", str(tmp_path)], terraform=Terraform(fake), environ={}) == 2
    assert capsys.readouterr().err == "error: no topic to notify: pass --topic-arn or set NOTIFICATION_TOPIC_ARN\n"
    assert fake.calls == []
