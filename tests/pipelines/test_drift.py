"""`python -m pipelines.drift`: a refresh-only plan of the stack prod's last Apply stored (in moto's S3), real
drift published once to SNS in moto; the deployed commit it checks; what it does when that stack was never
stored or is not JSON; and pipelines/drift_failure.sh, which reports a build that failed before it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws
from moto.sns.models import sns_backends

from names import NEVER_DEPLOYED, NOTHING_PUBLISHED
from pipelines.drift import APPLIED_OUT, EXIT_DRIFT, REPORTED_MARKER, StackDrift, drift_digest, main
from pipelines.plan_summary import ResourceChange
from pipelines.terraform_stage import Terraform
from tests.pipelines.fake_terraform import FakeTerraform, plan_document, synthesized
from tests.support.config import action_environment
from tools.requirements import PROJECT_ROOT

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient

REGION = "eu-west-1"
# As main.py synthesizes them: prod's one workload stack `prod`, next to other stages' and the pipeline's.
PROD_STACKS: dict[str, list[str]] = {"bootstrap-prod": [], "prod": [], "gamma": [], "pipeline": []}
# The pipeline's artifact bucket (the fixture configuration's), and where prod's Apply stores what it applied.
BUCKET = "canvalo-beta-pipeline-artifacts-111111111111"
APPLIED_KEY = "applied/prod/cdk.tf.json"
DIGEST = "/canvalo/prod/drift-digest"
PROD_COMMIT = "/canvalo/prod/deployed-commit"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
SERVICE = "aws_ecs_service.backend"
# prod's cdk.tf.json as the workload stack synthesizes its backend: auto scaling moves desired_count.
BACKEND_DOCUMENT = {"resource": {"aws_ecs_service": {"backend": {"lifecycle": {"ignore_changes": ["desired_count"]}}}}}


@dataclass
class Aws:
    sns: SNSClient
    ssm: Any
    s3: S3Client
    topic_arn: str

    def messages(self) -> list[tuple[str | None, str]]:
        """(subject, message) of everything published to the topic."""
        account = self.topic_arn.split(":")[4]
        topic = sns_backends[account][REGION].topics[self.topic_arn]
        return [(subject, message) for _, message, subject, *_ in topic.sent_notifications]

    def parameter(self, name: str) -> str:
        return str(self.ssm.get_parameter(Name=name)["Parameter"]["Value"])

    @property
    def environ(self) -> dict[str, str]:
        return action_environment({"NOTIFICATION_TOPIC_ARN": self.topic_arn})

    def main(self, *argv: str, fake: FakeTerraform | None = None) -> int:
        """`python -m pipelines.drift ARGV` in the pipeline account (moto), Terraform being `fake`."""
        terraform = Terraform(fake or FakeTerraform())
        return main(list(argv), terraform=terraform, sns=self.sns, ssm=self.ssm, s3=self.s3, environ=self.environ)


@pytest.fixture
def aws() -> Iterator[Aws]:
    """The pipeline account as the pipeline stack leaves it: the topic, and the parameters' placeholders."""
    with mock_aws():
        sns = boto3.client("sns", region_name=REGION)
        ssm = boto3.client("ssm", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        ssm.put_parameter(Name=DIGEST, Value=NOTHING_PUBLISHED, Type="String")
        for stage in ("beta", "gamma", "prod"):
            ssm.put_parameter(Name=f"/canvalo/{stage}/deployed-commit", Value=NEVER_DEPLOYED, Type="String")
        yield Aws(sns, ssm, s3, sns.create_topic(Name="canvalo-beta-pipeline-notifications")["TopicArn"])


def entry(address: str, actions: list[str], before: Any = None, after: Any = None) -> dict[str, Any]:
    kind, name = address.split(".")
    return {
        "address": address,
        "mode": "managed",
        "type": kind,
        "name": name,
        "change": {"actions": actions, "before": before, "after": after, "after_unknown": {}},
    }


def drift_plan(*entries: dict[str, Any], outputs: dict[str, list[str]] | None = None) -> dict[str, Any]:
    document = plan_document(outputs=outputs)
    document["resource_drift"] = list(entries)
    return document


def store(aws: Aws, stack_json: Path, commit: str = COMMIT) -> int:
    """What prod's Apply runs once it succeeded: `drift store-applied` of the cdk.tf.json it applied."""
    return aws.main("store-applied", "--stage", "prod", "--stack-json", str(stack_json), "--commit", commit)


def run(aws: Aws, tmp_path: Path, fake: FakeTerraform, documents: dict[str, dict[str, Any]] | None = None) -> int:
    """A synth of every stack, prod's Apply storing prod's, then the daily check of the commit it applied."""
    out = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
    cdktf_out = synthesized(out, PROD_STACKS, documents)
    assert store(aws, cdktf_out / "stacks" / "prod" / "cdk.tf.json") == 0
    return check(aws, out / "drift", fake)


def check(aws: Aws, work_dir: Path, fake: FakeTerraform, commit: str = COMMIT) -> int:
    """drift.yml's check: of the commit prod last applied, which deployed-commit printed."""
    return aws.main("--stage", "prod", "--work-dir", str(work_dir), "--commit", commit, fake=fake)


def service_drift(**after: Any) -> FakeTerraform:
    before = {"desired_count": 2, "task_definition": "backend:7", "name": "canvalo-prod-backend"}
    return FakeTerraform(plans={"prod": drift_plan(entry(SERVICE, ["update"], before, {**before, **after}))})


def test_a_clean_prod_exits_0_and_notifies_nobody(aws: Aws, tmp_path: Path) -> None:
    fake = FakeTerraform()
    assert run(aws, tmp_path, fake) == 0
    assert [stack for stack, command in fake.commands() if command == "plan"] == ["prod"], (
        "prod's stack, and not bootstrap-prod, another stage's or the pipeline's"
    )
    plan = fake.args_of("prod", "plan")
    assert {"-refresh-only", "-lock=false", "-detailed-exitcode"} <= set(plan)
    assert not [command for _, command in fake.commands() if command == "apply"], "plan only"
    assert aws.messages() == []
    assert aws.parameter(DIGEST) == NOTHING_PUBLISHED
    assert (tmp_path / "run-0" / "drift" / REPORTED_MARKER).exists(), "drift.yml's post_build must stay quiet"


def test_drift_is_published_naming_the_stacks_and_resources(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeTerraform(
        plans={
            "prod": plan_document(
                drift=[
                    ("aws_ecs_service.backend", "aws_ecs_service", ["update"]),
                    ("aws_cloudwatch_metric_alarm.cpu", "aws_cloudwatch_metric_alarm", ["delete"]),
                    ("aws_cloudfront_distribution.site", "x", ["update"]),
                ]
            ),
            "gamma": plan_document(drift=[("aws_vpc.main", "aws_vpc", ["update"])]),
        }
    )
    assert run(aws, tmp_path, fake) == EXIT_DRIFT
    ((subject, message),) = aws.messages()
    assert subject == "Canvalo prod: drift in prod"
    assert "prod:\n  aws_ecs_service.backend: changed outside Terraform" in message
    assert "  aws_cloudwatch_metric_alarm.cpu: deleted outside Terraform" in message
    assert "  aws_cloudfront_distribution.site: changed outside Terraform" in message
    assert "gamma" not in message and "aws_vpc.main" not in message, "another stage's stack is not checked"
    assert "prod: drifted" in capsys.readouterr().out
    assert (tmp_path / "run-0" / "drift" / REPORTED_MARKER).exists()


def test_an_attribute_the_resource_ignores_is_not_drift(aws: Aws, tmp_path: Path) -> None:
    documents = {"prod": BACKEND_DOCUMENT}
    assert run(aws, tmp_path, service_drift(desired_count=5), documents) == 0
    assert aws.messages() == []


def test_a_real_change_next_to_an_ignored_one_is_drift(aws: Aws, tmp_path: Path) -> None:
    documents = {"prod": BACKEND_DOCUMENT}
    assert run(aws, tmp_path, service_drift(desired_count=5, task_definition="backend:6"), documents) == EXIT_DRIFT
    ((_, message),) = aws.messages()
    assert f"  {SERVICE}: changed outside Terraform" in message


def test_the_ignored_attributes_come_from_the_stored_stack(aws: Aws, tmp_path: Path) -> None:
    # The same desired_count change, in a stack whose cdk.tf.json does not ignore it.
    assert run(aws, tmp_path, service_drift(desired_count=5)) == EXIT_DRIFT
    assert len(aws.messages()) == 1


def test_output_changes_alone_are_not_drift(aws: Aws, tmp_path: Path) -> None:
    fake = FakeTerraform(plans={"prod": drift_plan(outputs={"backend_url": ["update"]})})
    assert run(aws, tmp_path, fake) == 0
    assert aws.messages() == []


def test_output_changes_do_not_hide_a_resource_drift(aws: Aws, tmp_path: Path) -> None:
    changed = entry("aws_lb.backend", ["update"], {"idle_timeout": 60}, {"idle_timeout": 30})
    fake = FakeTerraform(plans={"prod": drift_plan(changed, outputs={"backend_url": ["update"]})})
    assert run(aws, tmp_path, fake) == EXIT_DRIFT
    ((_, message),) = aws.messages()
    assert "aws_lb.backend: changed outside Terraform" in message


def test_a_deleted_resource_is_drift_whatever_it_ignores(aws: Aws, tmp_path: Path) -> None:
    documents = {"prod": {"resource": {"aws_ecs_service": {"backend": {"lifecycle": {"ignore_changes": "all"}}}}}}
    fake = FakeTerraform(plans={"prod": drift_plan(entry(SERVICE, ["delete"], {"desired_count": 2}, None))})
    assert run(aws, tmp_path, fake, documents) == EXIT_DRIFT
    ((_, message),) = aws.messages()
    assert f"  {SERVICE}: deleted outside Terraform" in message


def test_an_update_of_a_resource_ignoring_all_changes_is_not_drift(aws: Aws, tmp_path: Path) -> None:
    documents = {"prod": {"resource": {"aws_ecs_service": {"backend": {"lifecycle": {"ignore_changes": "all"}}}}}}
    assert run(aws, tmp_path, service_drift(task_definition="backend:6"), documents) == 0
    assert aws.messages() == []


def test_the_same_drift_is_mailed_once_a_new_one_again_and_a_clean_run_resets(aws: Aws, tmp_path: Path) -> None:
    first = service_drift(task_definition="backend:6")
    assert run(aws, tmp_path, first) == EXIT_DRIFT
    assert run(aws, tmp_path, service_drift(task_definition="backend:6")) == EXIT_DRIFT, "same exit status"
    assert len(aws.messages()) == 1, "the same drift the next day is not mailed again"
    deleted = entry("aws_cloudwatch_metric_alarm.cpu", ["delete"], {}, None)
    other = FakeTerraform(plans={"prod": drift_plan(deleted)})
    assert run(aws, tmp_path, other) == EXIT_DRIFT
    assert len(aws.messages()) == 2, "a different drift is mailed"
    assert run(aws, tmp_path, FakeTerraform()) == 0
    assert aws.parameter(DIGEST) == NOTHING_PUBLISHED
    (subject, message) = aws.messages()[-1]
    assert subject == "Canvalo prod: no drift" and "resolved" in message
    assert run(aws, tmp_path, FakeTerraform()) == 0
    assert len(aws.messages()) == 3, "a second clean run says nothing"
    assert run(aws, tmp_path, service_drift(task_definition="backend:6")) == EXIT_DRIFT
    assert len(aws.messages()) == 4, "after a reset, the first drift is mailed again"


def test_the_drift_digest_ignores_the_order_of_stacks_and_resources() -> None:
    def change(address: str, action: str) -> ResourceChange:
        return ResourceChange(address, address.split(".")[0], action, None, None, None)

    a = [StackDrift("prod", [change("aws_a.x", "update"), change("aws_b.y", "destroy")])]
    b = [StackDrift("prod", [change("aws_b.y", "destroy"), change("aws_a.x", "update")])]
    assert drift_digest(a) == drift_digest(b)
    assert drift_digest(a) != drift_digest([StackDrift("prod", [change("aws_a.x", "update")])])
    assert drift_digest(a) != drift_digest([StackDrift("gamma", a[0].resources)])


def test_a_check_that_cannot_run_is_published_and_fails(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(aws, tmp_path, FakeTerraform(failures={("prod", "init"): 1})) == 1
    ((subject, message),) = aws.messages()
    assert subject == "Canvalo prod: the drift check could not run"
    assert "terraform init failed in prod" in message
    assert capsys.readouterr().err.startswith("error: terraform init failed in prod ")
    assert (tmp_path / "run-0" / "drift" / REPORTED_MARKER).exists(), "reported: post_build must not mail it again"


def test_the_same_failure_is_mailed_once_and_another_one_again(aws: Aws, tmp_path: Path) -> None:
    assert run(aws, tmp_path, FakeTerraform(failures={("prod", "init"): 1})) == 1
    assert run(aws, tmp_path, FakeTerraform(failures={("prod", "init"): 1})) == 1
    assert len(aws.messages()) == 1
    assert run(aws, tmp_path, FakeTerraform(failures={("prod", "plan"): 1})) == 1
    assert len(aws.messages()) == 2


def test_without_a_topic_it_refuses_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeTerraform()
    assert main(["--stage", "prod", "--work-dir", str(tmp_path)], terraform=Terraform(fake), environ={}) == 2
    assert capsys.readouterr().err == "error: no topic to notify: pass --topic-arn or set NOTIFICATION_TOPIC_ARN\n"
    assert fake.calls == []


# -- the stack prod's Apply stored, which the check plans instead of synthesizing a commit ---------------


def test_the_check_plans_byte_for_byte_the_stack_the_apply_stored_and_its_commit(aws: Aws, tmp_path: Path) -> None:
    applied = tmp_path / "cdk.tf.json"
    # Not the JSON any synth of this checkout writes: what is planned is what was stored, as it was stored.
    applied.write_bytes(b'{"terraform": {"backend": {"s3": {}}},\n  "resource": {"aws_sqs_queue": {"q": {}}}}\n')
    assert store(aws, applied) == 0
    stored = aws.s3.get_object(Bucket=BUCKET, Key=APPLIED_KEY)
    assert stored["Body"].read() == applied.read_bytes()
    assert stored["Metadata"] == {"commit": COMMIT} and stored["ContentType"] == "application/json"
    fake = FakeTerraform()
    assert check(aws, tmp_path / "drift", fake) == 0
    assert [stack for stack, command in fake.commands() if command == "plan"] == ["prod"]
    laid_out = tmp_path / "drift" / APPLIED_OUT
    assert (laid_out / "stacks" / "prod" / "cdk.tf.json").read_bytes() == applied.read_bytes()
    assert json.loads((laid_out / "manifest.json").read_text())["stacks"].keys() == {"prod"}
    # Terraform ran on the toolkit's copy of that one file, never in the fetched folder (terraform_workdir.isolated).
    assert fake.directories["prod"] != laid_out / "stacks" / "prod"
    assert aws.messages() == []


def test_a_stage_deployed_before_applies_stored_their_stack_fails_the_check_in_one_published_line(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeTerraform()
    assert check(aws, tmp_path / "drift", fake) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"error: no stack JSON recorded at s3://{BUCKET}/{APPLIED_KEY}: prod was last applied before its Apply "
        "recorded what it applied; the next successful Apply of prod records it"
    )
    ((subject, message),) = aws.messages()
    assert subject == "Canvalo prod: the drift check could not run"
    assert line.removeprefix("error: ") in message and "\n" not in message
    assert fake.calls == [], "nothing to plan: not even terraform init"
    assert (tmp_path / "drift" / REPORTED_MARKER).exists(), "reported: post_build must not mail it again"
    assert check(aws, tmp_path / "drift", fake) == 1
    assert len(aws.messages()) == 1, "mailed once, like every failure"


@pytest.mark.parametrize(
    ("body", "wrong"),
    [
        (b'{"resource": {', "is not JSON (Expecting property name enclosed in double quotes at line 1)"),
        (b'["prod"]', "holds a JSON list, not a stack's object"),
        (b"\xff\xfe{", "is not UTF-8 JSON"),
    ],
)
def test_a_stored_stack_that_is_not_a_json_object_fails_the_check_in_one_published_line(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str], body: bytes, wrong: str
) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key=APPLIED_KEY, Body=body, Metadata={"commit": COMMIT})
    fake = FakeTerraform()
    assert check(aws, tmp_path / "drift", fake) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: s3://{BUCKET}/{APPLIED_KEY} {wrong}"), line
    assert line.endswith(": the next successful Apply of prod records it again"), line
    ((subject, message),) = aws.messages()
    assert subject == "Canvalo prod: the drift check could not run" and wrong in message
    assert fake.calls == []


def test_a_stored_stack_of_another_commit_than_prod_runs_is_refused(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record whose stack and commit disagree (one of the two writes failed, an older version made current
    again) is never planned: the configuration would be one prod no longer runs."""
    cdktf_out = synthesized(tmp_path, {"prod": []})
    assert store(aws, cdktf_out / "stacks" / "prod" / "cdk.tf.json", OTHER_COMMIT) == 0
    fake = FakeTerraform()
    assert check(aws, tmp_path / "drift", fake) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert f"is the stack of commit {OTHER_COMMIT}, not of {COMMIT}, which prod last applied" in line
    assert len(aws.messages()) == 1 and fake.calls == []


def test_the_apply_stores_only_a_json_object_of_a_full_commit(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "cdk.tf.json"
    assert store(aws, missing) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: cannot read {missing}: No such file or directory: pass the cdk.tf.json the Apply")
    missing.write_text("[]")
    assert store(aws, missing) == 2
    assert "holds a JSON list, not a stack's object" in capsys.readouterr().err
    missing.write_text("{}")
    assert store(aws, missing, "main") == 2
    assert "is not a full commit id" in capsys.readouterr().err
    assert aws.s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0, "nothing stored"


def test_a_store_that_fails_fails_the_apply_in_one_line(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cdk.tf.json").write_text("{}")
    aws.s3.delete_bucket(Bucket=BUCKET)
    assert store(aws, tmp_path / "cdk.tf.json") == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: could not store what prod applied in s3://{BUCKET}/{APPLIED_KEY}: ")
    assert line.endswith("; retry the Apply (the drift check plans that object)")


# -- the commit prod runs -------------------------------------------------------------------------


def test_record_writes_the_commit_a_stage_applied(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--stage", "prod", "--commit", COMMIT], ssm=aws.ssm, environ=aws.environ) == 0
    assert aws.parameter(PROD_COMMIT) == COMMIT
    assert aws.parameter("/canvalo/gamma/deployed-commit") == NEVER_DEPLOYED, "only that stage's"
    assert capsys.readouterr().out == f"prod runs {COMMIT} (recorded in {PROD_COMMIT}), image unknown\n"
    assert main(["deployed-commit", "--stage", "prod"], ssm=aws.ssm, environ=aws.environ) == 0
    assert capsys.readouterr().out == f"{COMMIT}\n"


@pytest.mark.parametrize("commit", ["", "main", "0123456"])
def test_record_refuses_what_is_not_a_commit_id(aws: Aws, commit: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--stage", "prod", "--commit", commit], ssm=aws.ssm, environ=aws.environ) == 2
    assert "is not a full commit id" in capsys.readouterr().err
    assert aws.parameter(PROD_COMMIT) == NEVER_DEPLOYED


def test_a_stage_never_deployed_is_a_clean_no_op(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deployed-commit", "--stage", "prod"], ssm=aws.ssm, environ=aws.environ) == 0
    captured = capsys.readouterr()
    assert captured.out == "", "drift.yml skips the check on empty output"
    assert captured.err == f"prod was never deployed ({PROD_COMMIT} holds {NEVER_DEPLOYED}): nothing to check\n"
    assert aws.messages() == []


def test_a_parameter_holding_no_commit_fails_the_check(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    aws.ssm.put_parameter(Name=PROD_COMMIT, Value="garbage", Type="String", Overwrite=True)
    assert main(["deployed-commit", "--stage", "prod"], ssm=aws.ssm, environ=aws.environ) == 1
    assert "not a commit id" in capsys.readouterr().err


# -- pipelines/drift_failure.sh: the build failed before drift.py reported ----------------------------


SCRIPT = PROJECT_ROOT / "pipelines" / "drift_failure.sh"
FAKE_AWS = """#!/usr/bin/env bash
echo "$*" >> "$AWS_CALLS"
if [ "$1 $2" = "ssm get-parameter" ]; then cat "$STORED_DIGEST"; fi
if [ "$1 $2" = "ssm put-parameter" ]; then
  while [ "$#" -gt 0 ]; do if [ "$1" = "--value" ]; then printf '%s\\n' "$2" > "$STORED_DIGEST"; fi; shift; done
fi
"""


@dataclass
class FailureStep:
    root: Path

    def run(self, succeeding: str, *, marker: bool = False) -> subprocess.CompletedProcess[str]:
        (self.root / "drift").mkdir(exist_ok=True)
        if marker:
            (self.root / "drift" / REPORTED_MARKER).touch()
        environment = {
            "PATH": f"{self.root / 'bin'}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
            "AWS_CALLS": str(self.root / "calls"),
            "STORED_DIGEST": str(self.root / "digest"),
            "CODEBUILD_BUILD_SUCCEEDING": succeeding,
            "CODEBUILD_BUILD_URL": "https://console.aws.amazon.com/codesuite/codebuild/build/1",
            "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:eu-west-1:111111111111:canvalo-beta-pipeline-notifications",
            "DRIFT_DIGEST_PARAMETER": DIGEST,
            "STAGE": "prod",
        }
        return subprocess.run(
            ["bash", str(SCRIPT), "drift/reported"],
            cwd=self.root,
            env=environment,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def publishes(self) -> list[str]:
        calls = self.root / "calls"
        lines = calls.read_text().splitlines() if calls.exists() else []
        return [line for line in lines if line.startswith("sns publish")]


@pytest.fixture
def failure_step(tmp_path: Path) -> FailureStep:
    (tmp_path / "bin").mkdir()
    aws = tmp_path / "bin" / "aws"
    aws.write_text(FAKE_AWS)
    aws.chmod(aws.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "digest").write_text(f"{NOTHING_PUBLISHED}\n")
    return FailureStep(tmp_path)


def test_a_build_that_failed_before_the_check_is_published_once(failure_step: FailureStep) -> None:
    result = failure_step.run("0")
    assert result.returncode == 0, result.stderr
    (publish,) = failure_step.publishes()
    assert "--subject Canvalo prod: the drift check could not run" in publish
    assert "https://console.aws.amazon.com/codesuite/codebuild/build/1" in publish
    assert failure_step.run("0").returncode == 0
    assert len(failure_step.publishes()) == 1, "the same failure the next day is not mailed again"


def test_the_failure_step_is_quiet_when_the_build_succeeded_or_drift_py_reported(failure_step: FailureStep) -> None:
    assert failure_step.run("1").returncode == 0
    assert failure_step.run("0", marker=True).returncode == 0
    assert failure_step.publishes() == []
