"""`make status` (tools/status.py) against moto's accounts, and the release record each Apply writes.

The accounts are moto's: the operator is a session of `canvalo-operator` in the pipeline (beta) account, and
gamma and prod are reached by assuming roles, as the tool does. CodePipeline's GetPipelineState and
ListActionExecutions, which moto lacks, are botocore Stubber answers shaped as AWS documents them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from names import NEVER_DEPLOYED, NOTHING_PUBLISHED
from pipelines import drift, release
from tests.support.alarms import put_alarm
from tests.support.config import action_environment, hermetic_environment
from tools import status

ACCOUNTS = {"beta": "444444444444", "gamma": "555555555555", "prod": "666666666666"}
REGION = "eu-west-1"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
IMAGE = f"{ACCOUNTS['beta']}.dkr.ecr.{REGION}.amazonaws.com/canvalo-backend:app-" + "ab" * 32
EXECUTION = "9f8e7d6c-1111-2222-3333-444455556666"
PIPELINE = "canvalo-beta-pipeline"
ENVIRON = hermetic_environment({f"CANVALO_{s.upper()}_ACCOUNT_ID": a for s, a in ACCOUNTS.items()})
# What the pipeline's drift and deploy actions are told (the pipeline stack's synthesis), not the configuration.
ACTION_ENVIRON = action_environment()


def role_session(role_arn: str, base: boto3.session.Session | None = None) -> boto3.session.Session:
    return status.assume_role(base or boto3.session.Session(region_name=REGION), role_arn, "test")


class Operator:
    """The operator's session in the pipeline account, with CodePipeline answered by a Stubber."""

    def __init__(self) -> None:
        self.session = role_session(f"arn:aws:iam::{ACCOUNTS['beta']}:role/canvalo-operator")
        self.codepipeline = self.session.client("codepipeline", region_name=REGION)
        self.stubber = Stubber(self.codepipeline)
        self.assumed: list[str] = []
        real_client: Any = self.session.client

        def client(service: str, **kwargs: Any) -> Any:
            return self.codepipeline if service == "codepipeline" else real_client(service, **kwargs)

        self.session.client = client  # type: ignore[method-assign,assignment]
        self.ssm = self.session.client("ssm", region_name=REGION)

    def assume(self, session: boto3.session.Session, role_arn: str, name: str) -> boto3.session.Session:
        self.assumed.append(f"{role_arn} as {name}")
        return status.assume_role(session, role_arn, name)

    def pipeline_state(self, stage_states: list[dict[str, Any]]) -> None:
        self.stubber.add_response("get_pipeline_state", {"pipelineName": PIPELINE, "stageStates": stage_states})

    def run(self, *args: str) -> int:
        with self.stubber:
            return status.main(list(args), environ=ENVIRON, session=self.session, assume=self.assume)


@pytest.fixture
def operator() -> Iterator[Operator]:
    """The pipeline account as the pipeline stack leaves it: every record holds its placeholder."""
    with mock_aws():
        found = Operator()
        for stage in ACCOUNTS:
            found.ssm.put_parameter(Name=f"/canvalo/{stage}/release", Value=NEVER_DEPLOYED, Type="String")
            found.ssm.put_parameter(Name=f"/canvalo/{stage}/deployed-commit", Value=NEVER_DEPLOYED, Type="String")
        found.ssm.put_parameter(Name="/canvalo/prod/drift-digest", Value=NOTHING_PUBLISHED, Type="String")
        yield found


def record(operator: Operator, stage: str, *extra: str) -> None:
    """The Apply's record step, as deploy.yml runs it."""
    arguments = ["record", "--stage", stage, "--commit", COMMIT, *extra]
    assert drift.main(arguments, ssm=operator.ssm, environ=ACTION_ENVIRON) == 0


def alarm(account: str, name: str, state: str = "ALARM") -> None:
    """An alarm in the stage's account, created there as its stack does."""
    session = role_session(f"arn:aws:iam::{account}:role/Administrator")
    put_alarm(session.client("cloudwatch", region_name=REGION), name, state)


def as_json(operator: Operator, capsys: pytest.CaptureFixture[str], exit_status: int = 0) -> dict[str, Any]:
    assert operator.run("--json") == exit_status
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["stage"]: row for row in data["stages"]}


@pytest.mark.req("R4.2")
def test_the_record_an_apply_writes_is_what_status_shows_and_drift_still_reads_the_commit(
    operator: Operator, capsys: pytest.CaptureFixture[str]
) -> None:
    for stage in ACCOUNTS:
        record(operator, stage, "--image", IMAGE, "--execution-id", EXECUTION)
    capsys.readouterr()
    operator.pipeline_state([])
    data = as_json(operator, capsys)
    assert data["complete"] is True
    assert [row["stage"] for row in data["stages"]] == ["beta", "gamma", "prod"]
    for row in data["stages"]:
        assert (row["commit"], row["image"], row["execution_id"]) == (COMMIT, IMAGE, EXECUTION)
        recorded = datetime.fromisoformat(row["deployed_at"].replace("Z", "+00:00"))
        assert abs((datetime.now(UTC) - recorded).total_seconds()) < 60
        assert row["errors"] == {} and row["alarms"] == [] and row["pending_approval"] == []
    # The drift check reads the commit from its own parameter, as before.
    assert drift.main(["deployed-commit", "--stage", "prod"], ssm=operator.ssm, environ=ACTION_ENVIRON) == 0
    assert capsys.readouterr().out == f"{COMMIT}\n"
    # Gamma and prod are read through the pipeline's plan role, then each stage's plan role.
    # Under the one session name the plan role admits operators with.
    assert operator.assumed == [
        f"arn:aws:iam::{ACCOUNTS['beta']}:role/canvalo/canvalo-beta-pipeline-plan as canvalo-status",
        f"arn:aws:iam::{ACCOUNTS['gamma']}:role/canvalo/canvalo-plan as canvalo-status",
        f"arn:aws:iam::{ACCOUNTS['prod']}:role/canvalo/canvalo-plan as canvalo-status",
    ]


@pytest.mark.req("R4.2")
def test_the_table_has_one_row_per_stage_with_its_commit_and_image(
    operator: Operator, capsys: pytest.CaptureFixture[str]
) -> None:
    record(operator, "beta", "--image", IMAGE, "--execution-id", EXECUTION)
    capsys.readouterr()
    operator.pipeline_state([])
    assert operator.run() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["stage", "commit", "image"]
    beta, gamma, prod = lines[2:]
    assert beta.split()[:3] == ["beta", COMMIT[:12], "canvalo-backend:app-" + ("ab" * 6)]
    assert EXECUTION[:8] in beta
    assert "never deployed" in gamma and "never deployed" in prod
    assert "nothing reported" in prod


@pytest.mark.req("R4.2")
def test_an_image_the_apply_could_not_read_is_unknown_not_a_failed_deploy(
    operator: Operator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    outputs = tmp_path / "handoff"
    outputs.mkdir()
    (outputs / "beta.json").write_text(
        json.dumps(
            {
                "backend_cluster_name": "canvalo-beta-backend",
                "backend_service_name": "canvalo-beta-backend",
                "backend_task_definition_arn": "arn:aws:ecs:eu-west-1:444444444444:task-definition/gone:1",
            }
        )
    )
    ecs = operator.session.client("ecs", region_name=REGION)
    assert release.main(["image", "--outputs", str(outputs)], ecs=ecs) == 0
    printed = capsys.readouterr()
    assert printed.out == "" and "cannot read the applied image" in printed.err
    # Registered, it is the image ECS runs.
    registered = ecs.register_task_definition(
        family="canvalo-beta-backend",
        containerDefinitions=[{"name": "app", "image": IMAGE, "essential": True, "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]
    (outputs / "beta.json").write_text(
        json.dumps(
            {
                "backend_cluster_name": "c",
                "backend_service_name": "s",
                "backend_task_definition_arn": registered,
            }
        )
    )
    assert release.main(["image", "--outputs", str(outputs)], ecs=ecs) == 0
    assert capsys.readouterr().out == f"{IMAGE}\n"
    record(operator, "beta", "--image", "", "--execution-id", "")
    capsys.readouterr()
    operator.pipeline_state([])
    beta = rows(as_json(operator, capsys))["beta"]
    assert (beta["commit"], beta["image"], beta["execution_id"]) == (COMMIT, None, None)


@pytest.mark.req("R4.3")
def test_a_pending_approval_shows_in_its_stages_row_with_its_message(
    operator: Operator, capsys: pytest.CaptureFixture[str]
) -> None:
    since = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    operator.pipeline_state(
        [
            {
                "stageName": "Gamma",
                "latestExecution": {"pipelineExecutionId": "older", "status": "Succeeded"},
                "actionStates": [{"actionName": "Apply", "latestExecution": {"status": "Succeeded"}}],
            },
            {
                "stageName": "ProdPlan",
                "latestExecution": {"pipelineExecutionId": EXECUTION, "status": "Succeeded"},
                "actionStates": [{"actionName": "Plan", "latestExecution": {"status": "Succeeded"}}],
            },
            {
                "stageName": "Prod",
                "latestExecution": {"pipelineExecutionId": EXECUTION, "status": "InProgress"},
                "actionStates": [
                    {
                        "actionName": "Approve",
                        "latestExecution": {"status": "InProgress", "token": "t-1", "lastStatusChange": since},
                    },
                ],
            },
        ]
    )
    headline = f"Prod plan of commit {COMMIT}: 2 to change. Approving applies exactly this plan."
    operator.stubber.add_response(
        "list_action_executions",
        {
            "actionExecutionDetails": [
                {"stageName": "ProdPlan", "actionName": "Plan", "input": {"resolvedConfiguration": {}}},
                {
                    "stageName": "Prod",
                    "actionName": "Approve",
                    "input": {"resolvedConfiguration": {"CustomData": headline}},
                },
            ]
        },
        {"pipelineName": PIPELINE, "filter": {"pipelineExecutionId": EXECUTION}},
    )
    found = rows(as_json(operator, capsys))
    assert found["prod"]["pending_approval"] == [
        {"action": "Prod/Approve", "since": "2026-11-28T09:30:00Z", "message": headline}
    ]
    assert found["beta"]["pending_approval"] == found["gamma"]["pending_approval"] == []


@pytest.mark.req("R11.3", "R11.4")
def test_alarms_in_alarm_show_in_their_stages_row_only(operator: Operator, capsys: pytest.CaptureFixture[str]) -> None:
    alarm(ACCOUNTS["gamma"], "canvalo-gamma-backend-5xx-rate")
    alarm(ACCOUNTS["gamma"], "canvalo-gamma-backend-healthy-tasks", state="OK")
    # Another application's alarm in the same account is not the stage's.
    alarm(ACCOUNTS["gamma"], "billing-5xx-rate")
    alarm(ACCOUNTS["beta"], "canvalo-beta-backend-healthy-tasks")
    operator.pipeline_state([])
    found = rows(as_json(operator, capsys))
    assert found["gamma"]["alarms"] == ["canvalo-gamma-backend-5xx-rate"]
    assert found["beta"]["alarms"] == ["canvalo-beta-backend-healthy-tasks"]
    assert found["prod"]["alarms"] == []


@pytest.mark.req("R4.6")
def test_an_unreachable_stage_shows_its_error_in_one_cell_and_exits_1(
    operator: Operator, capsys: pytest.CaptureFixture[str]
) -> None:
    record(operator, "gamma", "--image", IMAGE, "--execution-id", EXECUTION)
    capsys.readouterr()
    prod_plan = f"arn:aws:iam::{ACCOUNTS['prod']}:role/canvalo/canvalo-plan"

    def refusing(session: boto3.session.Session, role_arn: str, name: str) -> boto3.session.Session:
        if role_arn == prod_plan:
            raise ClientError(
                {
                    "Error": {
                        "Code": "AccessDenied",
                        "Message": f"not authorized to perform: sts:AssumeRole on {role_arn}",
                    }
                },
                "AssumeRole",
            )
        return status.assume_role(session, role_arn, name)

    operator.pipeline_state([])
    with operator.stubber:
        assert status.main([], environ=ENVIRON, session=operator.session, assume=refusing) == 1
    out = capsys.readouterr().out
    assert "Traceback" not in out
    prod = next(line for line in out.splitlines() if line.startswith("prod "))
    assert prod.count("error:") == 1 and "AccessDenied" in prod
    gamma = next(line for line in out.splitlines() if line.startswith("gamma "))
    assert "error" not in gamma and COMMIT[:12] in gamma


@pytest.mark.req("R4.6")
def test_credentials_of_another_account_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with mock_aws():
        gamma_admin = role_session(f"arn:aws:iam::{ACCOUNTS['gamma']}:role/Administrator")
        assert status.main([], environ=ENVIRON, session=gamma_admin) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"account {ACCOUNTS['gamma']}" in err and ACCOUNTS["beta"] in err


@pytest.mark.req("R4.2")
def test_drift_shows_what_the_last_report_left(operator: Operator, capsys: pytest.CaptureFixture[str]) -> None:
    operator.ssm.put_parameter(Name="/canvalo/prod/drift-digest", Value="ab" * 32, Type="String", Overwrite=True)
    operator.pipeline_state([])
    assert rows(as_json(operator, capsys))["prod"]["drift"]["result"] == "reported"
    operator.ssm.put_parameter(
        Name="/canvalo/prod/drift-digest", Value=NOTHING_PUBLISHED, Type="String", Overwrite=True
    )
    operator.pipeline_state([])
    found = rows(as_json(operator, capsys))
    assert found["prod"]["drift"]["result"] == "clean" and found["prod"]["drift"]["since"]
    assert found["beta"]["drift"] is None
