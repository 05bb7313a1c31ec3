"""The rehearsal's fake `terraform` refuses what AWS and Terraform refuse, each refusal proved on its own.

Every test builds the least world its refusal needs (a bucket, a role, a repository) in accounts of its
own, and most have a positive twin: the same configuration succeeds once the one missing thing is there,
so a refusal cannot pass for another reason, and a weaker fake cannot pass at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipelines.plan_summary import parse_plan
from tests.rehearse.conftest import REGION, Rehearsal, Result
from tools.rehearse.terraform import expressions, literal

LOG_GROUP = "aws_cloudwatch_log_group"  # a resource the fake keeps in state only: no AWS call of its own


def config(
    backend: dict[str, Any] | None = None,
    provider: dict[str, Any] | None = None,
    resource: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    output: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `cdk.tf.json` as CDK for Terraform synthesizes it, with only the blocks given."""
    terraform: dict[str, Any] = {"required_providers": {"aws": {"source": "aws", "version": "6.0.0"}}}
    if backend is not None:
        terraform["backend"] = backend
    document: dict[str, Any] = {"terraform": terraform, "provider": {"aws": [{"region": REGION, **(provider or {})}]}}
    for key, block in (("resource", resource), ("data", data), ("output", output)):
        if block is not None:
            document[key] = block
    return document


def s3_backend(bucket: str, key: str, **extra: Any) -> dict[str, Any]:
    return {"s3": {"bucket": bucket, "key": key, "region": REGION, "encrypt": True, **extra}}


def log_groups(**retention: int) -> dict[str, Any]:
    return {LOG_GROUP: {name: {"name": name, "retention_in_days": days} for name, days in retention.items()}}


def admin(account: str) -> str:
    """The role an administrator (or the pipeline) runs terraform as; moto needs no IAM role behind it."""
    return f"arn:aws:iam::{account}:role/Admin"


def trust(*principals: str, condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"AWS": list(principals)}, "Action": "sts:AssumeRole"}
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def assert_ok(result: Result) -> None:
    assert result.code == 0, result.err


def assert_refused(result: Result, *words: str) -> None:
    """Exit status 1 and Terraform's `Error: ` on stderr, with each of `words` in it."""
    assert result.code == 1, result
    assert result.err.lstrip().startswith("Error: "), result.err
    for word in words:
        assert word in result.err, f"{word!r} not in {result.err!r}"


def plan_of(rehearsal: Rehearsal, stack: Path, caller: str, *extra: str) -> dict[str, Any]:
    """`plan -out` then `show -json`: the JSON plan document the pipeline summarizes."""
    assert_ok(rehearsal.run(stack, "plan", "-out=tfplan", *extra, caller=caller))
    shown = rehearsal.run(stack, "show", "-json", "tfplan", caller=caller)
    assert_ok(shown)
    document: dict[str, Any] = json.loads(shown.out)
    return document


def actions_of(document: dict[str, Any]) -> dict[str, list[str]]:
    return {change["address"]: change["change"]["actions"] for change in document["resource_changes"]}


def applied(rehearsal: Rehearsal, document: dict[str, Any]) -> tuple[Path, str]:
    """Stack `app` in a new account, initialized and applied; and the caller that applied it."""
    caller = admin(rehearsal.account("beta"))
    stack = rehearsal.stack("app", document)
    assert_ok(rehearsal.run(stack, "init", caller=caller))
    assert_ok(rehearsal.run(stack, "apply", "-auto-approve", caller=caller))
    return stack, caller


# -- the S3 backend -------------------------------------------------------------------------------


@pytest.mark.req("R6.2")
def test_an_s3_backend_whose_bucket_does_not_exist_is_refused(rehearsal: Rehearsal) -> None:
    account = rehearsal.account("beta")
    stack = rehearsal.stack("app", config(backend=s3_backend("state-never-created", "app.tfstate")))
    assert_refused(rehearsal.run(stack, "init", caller=admin(account)), '"state-never-created" does not exist')


@pytest.mark.req("R6.2", "R4.6")
def test_an_s3_backend_whose_bucket_belongs_to_another_account_is_refused(rehearsal: Rehearsal) -> None:
    beta, gamma = rehearsal.account("beta"), rehearsal.account("gamma")
    bucket = rehearsal.bucket(gamma)
    stack = rehearsal.stack("app", config(backend=s3_backend(bucket, "app.tfstate")))
    assert_refused(rehearsal.run(stack, "init", caller=admin(beta)), f"belongs to account {gamma}", beta)
    assert_ok(rehearsal.run(stack, "init", caller=admin(gamma)))


# -- accounts and roles ---------------------------------------------------------------------------


@pytest.mark.req("R4.6")
def test_credentials_outside_a_providers_allowed_account_ids_are_refused(rehearsal: Rehearsal) -> None:
    beta, gamma = rehearsal.account("beta"), rehearsal.account("gamma")
    stack = rehearsal.stack("app", config(provider={"allowed_account_ids": [gamma]}, resource=log_groups(api=7)))
    assert_ok(rehearsal.run(stack, "init", caller=admin(beta)))
    assert_refused(rehearsal.run(stack, "plan", caller=admin(beta)), "not allowed", beta)
    assert_ok(rehearsal.run(stack, "plan", caller=admin(gamma)))


@pytest.mark.req("R4.6", "R6.2")
def test_credentials_outside_the_s3_backends_allowed_account_ids_are_refused(rehearsal: Rehearsal) -> None:
    beta, gamma = rehearsal.account("beta"), rehearsal.account("gamma")
    bucket = rehearsal.bucket(beta)
    stack = rehearsal.stack("app", config(backend=s3_backend(bucket, "app.tfstate", allowed_account_ids=[gamma])))
    assert_refused(rehearsal.run(stack, "init", caller=admin(beta)), "not allowed", beta)
    rehearsal.stack("app", config(backend=s3_backend(bucket, "app.tfstate", allowed_account_ids=[beta])))
    assert_ok(rehearsal.run(stack, "init", caller=admin(beta)))


def assume_role_stack(rehearsal: Rehearsal, role_arn: str) -> Path:
    """A stack whose provider assumes `role_arn` and outputs the account it then acts in."""
    return rehearsal.stack(
        "app",
        config(
            provider={"assume_role": [{"role_arn": role_arn, "session_name": "deploy"}]},
            data={"aws_caller_identity": {"me": {}}},
            output={"account": {"value": "${data.aws_caller_identity.me.account_id}"}},
        ),
    )


@pytest.mark.req("R4.6")
def test_assume_role_is_refused_when_the_roles_trust_policy_does_not_allow_the_caller(rehearsal: Rehearsal) -> None:
    tools, beta = rehearsal.account("tools"), rehearsal.account("beta")
    caller = rehearsal.role(tools, "Admin", trust(f"arn:aws:iam::{tools}:root"), path="/canvalo/")
    other = rehearsal.role(tools, "Other", trust(f"arn:aws:iam::{tools}:root"), path="/canvalo/")
    # Trusts another role, and the caller's ARN without its path (a different principal).
    target = rehearsal.role(beta, "Deployer", trust(other, f"arn:aws:iam::{tools}:role/Admin"), path="/canvalo/")
    stack = assume_role_stack(rehearsal, target)
    assert_ok(rehearsal.run(stack, "init", caller=caller))
    assert_refused(
        rehearsal.run(stack, "plan", caller=caller),
        f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: {target}",
    )


@pytest.mark.req("R4.6")
def test_assume_role_succeeds_when_the_trust_policy_names_the_callers_role_with_its_path(rehearsal: Rehearsal) -> None:
    tools, beta = rehearsal.account("tools"), rehearsal.account("beta")
    caller = rehearsal.role(tools, "Admin", trust(f"arn:aws:iam::{tools}:root"), path="/canvalo/")
    assert caller == f"arn:aws:iam::{tools}:role/canvalo/Admin"
    target = rehearsal.role(beta, "Deployer", trust(caller), path="/canvalo/")
    stack = assume_role_stack(rehearsal, target)
    assert_ok(rehearsal.run(stack, "init", caller=caller))
    document = plan_of(rehearsal, stack, caller)
    assert document["output_changes"]["account"]["after"] == beta, "the provider acts in the assumed role's account"


@pytest.mark.req("R4.6")
def test_a_principal_arn_condition_on_the_account_root_admits_only_the_matching_role(rehearsal: Rehearsal) -> None:
    tools, beta = rehearsal.account("tools"), rehearsal.account("beta")
    admin_role = rehearsal.role(tools, "Admin", trust(f"arn:aws:iam::{tools}:root"), path="/canvalo/")
    reader_role = rehearsal.role(tools, "Reader", trust(f"arn:aws:iam::{tools}:root"), path="/canvalo/")
    condition = {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{tools}:role/canvalo/Adm*"}}
    target = rehearsal.role(beta, "Deployer", trust(f"arn:aws:iam::{tools}:root", condition=condition))
    stack = assume_role_stack(rehearsal, target)
    assert_ok(rehearsal.run(stack, "init", caller=admin_role))
    assert_ok(rehearsal.run(stack, "plan", caller=admin_role))
    assert_refused(
        rehearsal.run(stack, "plan", caller=reader_role),
        f"User: {reader_role} is not authorized to perform: sts:AssumeRole",
    )


def role_trusting(principal: str, via_policy_document: bool) -> dict[str, Any]:
    """`resource` and `data` blocks of an aws_iam_role whose trust policy names `principal`."""
    if via_policy_document:
        statement = {"actions": ["sts:AssumeRole"], "principals": [{"type": "AWS", "identifiers": [principal]}]}
        return {
            "data": {"aws_iam_policy_document": {"trust": {"statement": [statement]}}},
            "resource": {
                "aws_iam_role": {
                    "deploy": {"name": "Deploy", "assume_role_policy": "${data.aws_iam_policy_document.trust.json}"}
                }
            },
        }
    return {
        "resource": {"aws_iam_role": {"deploy": {"name": "Deploy", "assume_role_policy": json.dumps(trust(principal))}}}
    }


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("via_policy_document", [False, True], ids=["json-string", "policy-document"])
def test_a_role_trusting_a_role_that_does_not_exist_is_refused_until_it_exists(
    rehearsal: Rehearsal, via_policy_document: bool
) -> None:
    tools, beta = rehearsal.account("tools"), rehearsal.account("beta")
    runner = f"arn:aws:iam::{tools}:role/pipeline/Runner"
    stack = rehearsal.stack("app", config(**role_trusting(runner, via_policy_document)))
    assert_ok(rehearsal.run(stack, "init", caller=admin(beta)))
    assert_refused(
        rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)),
        f'Invalid principal in policy: "AWS":"{runner}"',
    )
    with pytest.raises(ClientError, match="NoSuchEntity"):
        rehearsal.client(beta, "iam").get_role(RoleName="Deploy")

    assert rehearsal.role(tools, "Runner", trust(f"arn:aws:iam::{tools}:root"), path="/pipeline/") == runner
    assert_ok(rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)))
    created = rehearsal.client(beta, "iam").get_role(RoleName="Deploy")["Role"]["AssumeRolePolicyDocument"]
    assert created["Statement"][0]["Principal"]["AWS"] in (runner, [runner])


@pytest.mark.req("R4.6")
def test_a_role_trusting_a_role_arn_without_the_roles_path_is_refused(rehearsal: Rehearsal) -> None:
    tools, beta = rehearsal.account("tools"), rehearsal.account("beta")
    rehearsal.role(tools, "Runner", trust(f"arn:aws:iam::{tools}:root"), path="/pipeline/")
    pathless = f"arn:aws:iam::{tools}:role/Runner"
    stack = rehearsal.stack("app", config(**role_trusting(pathless, via_policy_document=False)))
    assert_ok(rehearsal.run(stack, "init", caller=admin(beta)))
    assert_refused(rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)), "Invalid principal in policy")


# -- ECS services that never reach steady state ----------------------------------------------------

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 2,
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        },
        "layers": [],
    }
)


def service_stack(rehearsal: Rehearsal, account: str, with_secret: bool) -> Path:
    """An ECS service waiting for steady state; its task runs `api:v1` from ECR, and reads a secret if asked."""
    container: dict[str, Any] = {"name": "api", "image": f"{account}.dkr.ecr.{REGION}.amazonaws.com/api:v1"}
    resource: dict[str, Any] = {}
    if with_secret:
        container["secrets"] = [{"name": "DB_PASSWORD", "valueFrom": "${aws_secretsmanager_secret.app.arn}:password::"}]
        resource["aws_secretsmanager_secret"] = {"app": {"name": "app-settings"}}
    resource["aws_ecs_cluster"] = {"api": {"name": "api"}}
    resource["aws_ecs_task_definition"] = {
        "api": {"family": "api", "cpu": "256", "memory": "512", "container_definitions": json.dumps([container])}
    }
    resource["aws_ecs_service"] = {
        "api": {
            "name": "api",
            "cluster": "${aws_ecs_cluster.api.arn}",
            "task_definition": "${aws_ecs_task_definition.api.arn}",
            "wait_for_steady_state": True,
        }
    }
    rehearsal.client(account, "ecr").create_repository(repositoryName="api")
    return rehearsal.stack("service", config(resource=resource))


def push_image(rehearsal: Rehearsal, account: str) -> None:
    rehearsal.client(account, "ecr").put_image(repositoryName="api", imageManifest=MANIFEST, imageTag="v1")


@pytest.mark.req("R4.5")
def test_a_service_whose_image_tag_is_not_in_ecr_fails_its_apply_and_is_replaced_next_time(
    rehearsal: Rehearsal,
) -> None:
    beta = rehearsal.account("beta")
    stack = service_stack(rehearsal, beta, with_secret=False)
    assert_ok(rehearsal.run(stack, "init", caller=admin(beta)))
    failed = rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta))
    assert_refused(
        failed, "CannotPullContainerError", f"{beta}.dkr.ecr.{REGION}.amazonaws.com/api:v1", "aws_ecs_service.api"
    )
    # Created but never healthy: tainted, so the next plan replaces it.
    assert actions_of(plan_of(rehearsal, stack, admin(beta)))["aws_ecs_service.api"] == ["delete", "create"]

    push_image(rehearsal, beta)
    assert_ok(rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)))
    assert actions_of(plan_of(rehearsal, stack, admin(beta)))["aws_ecs_service.api"] == ["no-op"]


@pytest.mark.req("R5.2")
def test_a_service_whose_secret_has_no_value_fails_its_apply_until_the_value_holds_the_key(
    rehearsal: Rehearsal,
) -> None:
    beta = rehearsal.account("beta")
    stack = service_stack(rehearsal, beta, with_secret=True)
    push_image(rehearsal, beta)
    assert_ok(rehearsal.run(stack, "init", caller=admin(beta)))
    failed = rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta))
    assert_refused(failed, "has no value", ":secret:app-settings")
    assert "CannotPullContainerError" not in failed.err
    assert actions_of(plan_of(rehearsal, stack, admin(beta)))["aws_ecs_service.api"] == ["delete", "create"]

    secrets = rehearsal.client(beta, "secretsmanager")
    secrets.put_secret_value(SecretId="app-settings", SecretString=json.dumps({"user": "api"}))
    assert_refused(rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)), "has no key password")
    secrets.put_secret_value(SecretId="app-settings", SecretString=json.dumps({"password": "s3cret"}))
    assert_ok(rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)))


def alarmed_service_stack(rehearsal: Rehearsal, account: str) -> Path:
    """`service_stack` whose service has the 5xx alarm as its deployment alarm, as FargateService has."""
    stack = service_stack(rehearsal, account, with_secret=False)
    document = json.loads((stack / "cdk.tf.json").read_text())
    resource = document["resource"]
    resource["aws_cloudwatch_metric_alarm"] = {
        "errors": {
            "alarm_name": "api-5xx-rate",
            "namespace": "AWS/ApplicationELB",
            "metric_name": "HTTPCode_Target_5XX_Count",
            "statistic": "Sum",
            "period": 300,
            "evaluation_periods": 1,
            "threshold": 5,
            "comparison_operator": "GreaterThanThreshold",
            "treat_missing_data": "notBreaching",
        }
    }
    resource["aws_ecs_service"]["api"]["alarms"] = {
        "alarm_names": ["${aws_cloudwatch_metric_alarm.errors.alarm_name}"],
        "enable": True,
        "rollback": True,
    }
    return rehearsal.stack("service", document)


def with_memory(rehearsal: Rehearsal, stack: Path, memory: str) -> Path:
    """The same stack with its task's memory changed: a new task definition revision, a new release."""
    document = json.loads((stack / "cdk.tf.json").read_text())
    document["resource"]["aws_ecs_task_definition"]["api"]["memory"] = memory
    return rehearsal.stack(stack.name, document)


@pytest.mark.req("R4.5", "R11.4")
def test_with_the_alarm_fault_ecs_rolls_a_new_release_back_and_the_next_plan_deploys_it_again(
    rehearsal: Rehearsal,
) -> None:
    beta = rehearsal.account("beta")
    stack = alarmed_service_stack(rehearsal, beta)
    push_image(rehearsal, beta)
    assert_ok(rehearsal.run(stack, "init", caller=admin(beta)))
    assert_ok(rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)))
    ecs, cloudwatch = rehearsal.client(beta, "ecs"), rehearsal.client(beta, "cloudwatch")

    def running() -> str:
        (service,) = ecs.describe_services(cluster="api", services=["api"])["services"]
        return str(service["taskDefinition"]).rsplit("/", 1)[-1]

    assert running() == "api:1"
    fault = rehearsal.world_file.parent / "faults" / "ecs-alarm-service"
    fault.parent.mkdir(exist_ok=True)
    fault.write_text("the new tasks answer 5xx")
    stack = with_memory(rehearsal, stack, "1024")
    # The apply ends: ECS rolled back, the service is steady on the revision it ran (verify_rollout fails it).
    assert_ok(rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)))
    assert running() == "api:1"
    (alarm,) = cloudwatch.describe_alarms(AlarmNames=["api-5xx-rate"])["MetricAlarms"]
    assert alarm["StateValue"] == "ALARM"
    # As a refresh would read it: the service does not run what the configuration names.
    assert actions_of(plan_of(rehearsal, stack, admin(beta)))["aws_ecs_service.api"] == ["update"]

    fault.unlink()
    cloudwatch.set_alarm_state(AlarmName="api-5xx-rate", StateValue="OK", StateReason="fixed")
    assert_ok(rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)))
    assert running() == "api:2", "the release applied before, not a new revision"
    assert actions_of(plan_of(rehearsal, stack, admin(beta)))["aws_ecs_service.api"] == ["no-op"]


# -- plans and state ------------------------------------------------------------------------------


@pytest.mark.req("R4.5")
def test_a_saved_plan_applied_after_the_state_moved_is_stale(rehearsal: Rehearsal) -> None:
    stack, caller = applied(rehearsal, config(resource=log_groups(api=7)))
    rehearsal.stack("app", config(resource=log_groups(api=7, web=7)))
    assert_ok(rehearsal.run(stack, "plan", "-out=A", caller=caller))
    assert_ok(rehearsal.run(stack, "plan", "-out=B", caller=caller))
    assert_ok(rehearsal.run(stack, "apply", "B", caller=caller))
    assert_refused(rehearsal.run(stack, "apply", "A", caller=caller), "Saved plan is stale")


@pytest.mark.req("R4.5")
def test_a_saved_plan_of_a_new_stack_applies(rehearsal: Rehearsal) -> None:
    beta = rehearsal.account("beta")
    stack = rehearsal.stack("app", config(resource=log_groups(api=7)))
    assert_ok(rehearsal.run(stack, "init", caller=admin(beta)))
    assert_ok(rehearsal.run(stack, "plan", "-out=first", caller=admin(beta)))
    assert_ok(rehearsal.run(stack, "apply", "first", caller=admin(beta)))


@pytest.mark.req("R4.5")
def test_a_plan_that_replaces_a_resource_with_prevent_destroy_is_refused(rehearsal: Rehearsal) -> None:

    def protected(name: str, days: int) -> dict[str, Any]:
        body = {"name": name, "retention_in_days": days, "lifecycle": {"prevent_destroy": True}}
        return config(resource={LOG_GROUP: {"api": body}})

    stack, caller = applied(rehearsal, protected("api", 7))
    rehearsal.stack("app", protected("api", 30))
    assert actions_of(plan_of(rehearsal, stack, caller)) == {f"{LOG_GROUP}.api": ["update"]}
    rehearsal.stack("app", protected("api-renamed", 7))
    for command in (["plan"], ["apply", "-auto-approve"]):
        assert_refused(rehearsal.run(stack, *command, caller=caller), "cannot be destroyed", f"{LOG_GROUP}.api")


@pytest.mark.req("R4.5")
def test_removing_a_protected_resources_block_plans_its_deletion(rehearsal: Rehearsal) -> None:
    resource = log_groups(web=7)
    resource[LOG_GROUP]["api"] = {"name": "api", "lifecycle": {"prevent_destroy": True}}
    stack, caller = applied(rehearsal, config(resource=resource))
    rehearsal.stack("app", config(resource=log_groups(web=7)))
    assert actions_of(plan_of(rehearsal, stack, caller))[f"{LOG_GROUP}.api"] == ["delete"]


@pytest.mark.req("R4.5")
def test_the_plan_document_has_the_shapes_plan_summary_reads(rehearsal: Rehearsal) -> None:
    outputs = {"kept": {"value": "${aws_cloudwatch_log_group.kept.name}"}, "version": {"value": "1"}}
    stack, caller = applied(rehearsal, config(resource=log_groups(kept=7, renamed=7, dropped=7), output=outputs))
    assert rehearsal.run(stack, "plan", "-detailed-exitcode", caller=caller).code == 0

    resource = log_groups(kept=30, added=7)
    resource[LOG_GROUP]["renamed"] = {"name": "renamed-v2", "retention_in_days": 7}
    outputs = {**outputs, "version": {"value": "2"}, "added": {"value": "${aws_cloudwatch_log_group.added.arn}"}}
    rehearsal.stack("app", config(resource=resource, output=outputs))
    assert rehearsal.run(stack, "plan", "-detailed-exitcode", caller=caller).code == 2
    document = plan_of(rehearsal, stack, caller)
    assert actions_of(document) == {
        f"{LOG_GROUP}.kept": ["update"],
        f"{LOG_GROUP}.added": ["create"],
        f"{LOG_GROUP}.renamed": ["delete", "create"],
        f"{LOG_GROUP}.dropped": ["delete"],
    }
    changes = document["output_changes"]
    assert {name: change["actions"] for name, change in changes.items()} == {
        "kept": ["no-op"],
        "version": ["update"],
        "added": ["create"],
    }
    assert changes["added"]["after_unknown"] is True and changes["version"]["after"] == "2"

    summary = parse_plan("app", document, "show -json tfplan")
    assert summary.counts() == {"create": 1, "update": 1, "replace": 1, "destroy": 1}
    assert summary.output_changes == {"version": "update", "added": "create"}
    assert [change.address for change in summary.data_losses] == [f"{LOG_GROUP}.renamed", f"{LOG_GROUP}.dropped"]


@pytest.mark.req("R6.2")
def test_remote_state_shows_an_output_only_once_its_stack_applied_it(rehearsal: Rehearsal) -> None:
    beta = rehearsal.account("beta")
    bucket = rehearsal.bucket(beta)
    producer_outputs: dict[str, Any] = {"region": {"value": REGION}}
    producer = rehearsal.stack(
        "network", config(backend=s3_backend(bucket, "network.tfstate"), output=producer_outputs)
    )
    assert_ok(rehearsal.run(producer, "init", caller=admin(beta)))
    assert_ok(rehearsal.run(producer, "apply", "-auto-approve", caller=admin(beta)))

    remote = {"backend": "s3", "config": {"bucket": bucket, "key": "network.tfstate", "region": REGION}}
    consumer = rehearsal.stack(
        "backend",
        config(
            data={"terraform_remote_state": {"network": remote}},
            output={"vpc": {"value": "${data.terraform_remote_state.network.outputs.vpc_id}"}},
        ),
    )
    assert_ok(rehearsal.run(consumer, "init", caller=admin(beta)))
    assert_refused(rehearsal.run(consumer, "plan", caller=admin(beta)), "Unsupported attribute", '"vpc_id"')

    rehearsal.stack(
        "network",
        config(
            backend=s3_backend(bucket, "network.tfstate"), output={**producer_outputs, "vpc_id": {"value": "vpc-1"}}
        ),
    )
    assert_ok(rehearsal.run(producer, "plan", "-out=tfplan", caller=admin(beta)))
    assert_refused(rehearsal.run(consumer, "plan", caller=admin(beta)), "Unsupported attribute", '"vpc_id"')
    assert_ok(rehearsal.run(producer, "apply", "tfplan", caller=admin(beta)))
    assert plan_of(rehearsal, consumer, admin(beta))["output_changes"]["vpc"]["after"] == "vpc-1"


@pytest.mark.req("R6.2")
def test_a_changed_backend_needs_init_and_migrate_state_moves_the_state_into_the_bucket(rehearsal: Rehearsal) -> None:
    stack, caller = applied(rehearsal, config(resource=log_groups(api=7)))
    beta = rehearsal.world.accounts["beta"]
    bucket = rehearsal.bucket(beta)
    rehearsal.stack("app", config(backend=s3_backend(bucket, "app.tfstate"), resource=log_groups(api=7)))
    assert_refused(rehearsal.run(stack, "plan", caller=caller), "Backend initialization required")
    assert_refused(rehearsal.run(stack, "init", caller=caller), "-migrate-state")
    assert_ok(rehearsal.run(stack, "init", "-migrate-state", caller=caller))

    stored = json.loads(rehearsal.client(beta, "s3").get_object(Bucket=bucket, Key="app.tfstate")["Body"].read())
    assert list(stored["resources"]) == [f"{LOG_GROUP}.api"]
    planned = rehearsal.run(stack, "plan", "-detailed-exitcode", caller=caller)
    assert planned.code == 0 and "No changes" in planned.out, planned


@pytest.mark.req("R4.5")
def test_for_each_values_plan_and_stay_stable(rehearsal: Rehearsal) -> None:
    """`each.value` (the certificate validation records of prod) is wiring, not a resource reference."""
    resource = log_groups(api=7)
    resource[LOG_GROUP]["per_zone"] = {
        "for_each": "${{ for key, val in aws_cloudwatch_log_group.api: key => val }}",
        "name": "${each.value.name}",
    }
    stack, caller = applied(rehearsal, config(resource=resource))
    assert rehearsal.run(stack, "plan", "-detailed-exitcode", caller=caller).code == 0


@pytest.mark.req("R4.3")
def test_an_argument_named_like_a_meta_argument_inside_a_block_is_kept(rehearsal: Rehearsal) -> None:
    """A pipeline stage condition's rule has `provider` (VariableCheck): only a body's own meta-arguments go."""
    resource = log_groups(api=7)
    resource[LOG_GROUP]["api"]["tags"] = {"provider": "VariableCheck", "lifecycle": "kept"}
    resource[LOG_GROUP]["api"]["lifecycle"] = {"prevent_destroy": False}
    stack, caller = applied(rehearsal, config(resource=resource))
    document = plan_of(rehearsal, stack, caller)
    (change,) = document["resource_changes"]
    assert change["change"]["before"]["tags"] == {"provider": "VariableCheck", "lifecycle": "kept"}
    assert "lifecycle" not in change["change"]["before"], "the body's own meta-argument is not an argument"


# -- what bootstrap leaves for the stage stacks to find ---------------------------------------------


def secret_reader(name: str) -> dict[str, Any]:
    """A stack that reads a secret by name, as the `<stage>` stack does, and outputs what it found."""
    lookup = "data.aws_secretsmanager_secret.settings"
    return config(
        data={"aws_secretsmanager_secret": {"settings": {"name": name}}},
        output={key: {"value": f"${{{lookup}.{key}}}"} for key in ("arn", "name", "id")},
    )


@pytest.mark.req("R5.1")
def test_reading_a_secret_that_does_not_exist_is_refused_until_bootstrap_created_it(rehearsal: Rehearsal) -> None:
    beta = rehearsal.account("beta")
    stack = rehearsal.stack("backend", secret_reader("canvalo/beta/backend"))
    assert_ok(rehearsal.run(stack, "init", caller=admin(beta)))
    refused = rehearsal.run(stack, "plan", caller=admin(beta))
    assert_refused(refused, "reading Secrets Manager Secret (canvalo/beta/backend): couldn't find resource")
    assert len(refused.err.strip().splitlines()) == 1, refused.err

    bootstrap = rehearsal.stack(
        "bootstrap", config(resource={"aws_secretsmanager_secret": {"backend": {"name": "canvalo/beta/backend"}}})
    )
    assert_ok(rehearsal.run(bootstrap, "init", caller=admin(beta)))
    assert_ok(rehearsal.run(bootstrap, "apply", "-auto-approve", caller=admin(beta)))
    arn = rehearsal.client(beta, "secretsmanager").describe_secret(SecretId="canvalo/beta/backend")["ARN"]
    outputs = plan_of(rehearsal, stack, admin(beta))["output_changes"]
    assert {key: change["after"] for key, change in outputs.items()} == {
        "arn": arn,
        "name": "canvalo/beta/backend",
        "id": arn,
    }


def zone_reader(domain: str) -> dict[str, Any]:
    """A stack that finds a public hosted zone by name, as prod's backend and frontend do."""
    lookup = "data.aws_route53_zone.domain"
    return config(
        data={"aws_route53_zone": {"domain": {"name": domain, "private_zone": False}}},
        output={key: {"value": f"${{{lookup}.{key}}}"} for key in ("zone_id", "name_servers")},
    )


@pytest.mark.req("R8.7")
def test_finding_a_hosted_zone_that_does_not_exist_is_refused_until_bootstrap_created_it(
    rehearsal: Rehearsal,
) -> None:
    prod = rehearsal.account("prod")
    stack = rehearsal.stack("frontend", zone_reader("canvalo.example.com"))
    assert_ok(rehearsal.run(stack, "init", caller=admin(prod)))
    assert_refused(rehearsal.run(stack, "plan", caller=admin(prod)), "no matching Route 53 Hosted Zone found")

    bootstrap = rehearsal.stack(
        "bootstrap",
        config(
            resource={"aws_route53_zone": {"zone": {"name": "canvalo.example.com"}}},
            output={"name_servers": {"value": "${aws_route53_zone.zone.name_servers}"}},
        ),
    )
    assert_ok(rehearsal.run(bootstrap, "init", caller=admin(prod)))
    assert_ok(rehearsal.run(bootstrap, "apply", "-auto-approve", caller=admin(prod)))
    (zone,) = rehearsal.client(prod, "route53").list_hosted_zones()["HostedZones"]
    zone_id = zone["Id"].split("/")[-1]
    servers = rehearsal.client(prod, "route53").get_hosted_zone(Id=zone_id)["DelegationSet"]["NameServers"]
    assert servers, "moto gives a public zone its name servers"
    shown = json.loads(rehearsal.run(bootstrap, "output", "-json", caller=admin(prod)).out)
    assert shown["name_servers"]["value"] == servers, "the administrator delegates the domain to these"

    outputs = plan_of(rehearsal, stack, admin(prod))["output_changes"]
    assert (outputs["zone_id"]["after"], outputs["name_servers"]["after"]) == (zone_id, servers)
    assert_ok(rehearsal.run(bootstrap, "apply", "-auto-approve", caller=admin(prod)))
    assert len(rehearsal.client(prod, "route53").list_hosted_zones()["HostedZones"]) == 1, "applied twice, one zone"


@pytest.mark.req("R4.5")
def test_an_applied_ssm_parameter_is_in_aws_for_the_preflight_to_read(rehearsal: Rehearsal) -> None:
    beta = rehearsal.account("beta")
    name = "/canvalo/beta/bootstrap-version"

    def parameter(value: str) -> dict[str, Any]:
        return config(resource={"aws_ssm_parameter": {"version": {"name": name, "type": "String", "value": value}}})

    stack = rehearsal.stack("bootstrap", parameter("1"))
    assert_ok(rehearsal.run(stack, "init", caller=admin(beta)))
    assert_ok(rehearsal.run(stack, "plan", caller=admin(beta)))
    with pytest.raises(ClientError, match="ParameterNotFound"):
        rehearsal.client(beta, "ssm").get_parameter(Name=name)
    assert_ok(rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)))
    assert rehearsal.client(beta, "ssm").get_parameter(Name=name)["Parameter"]["Value"] == "1"
    rehearsal.stack("bootstrap", parameter("2"))
    assert_ok(rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)))
    assert rehearsal.client(beta, "ssm").get_parameter(Name=name)["Parameter"]["Value"] == "2"


@pytest.mark.req("R4.5")
def test_state_list_shows_nothing_before_the_first_apply_and_every_resource_after(rehearsal: Rehearsal) -> None:
    beta = rehearsal.account("beta")
    stack = rehearsal.stack(
        "app", config(backend=s3_backend(rehearsal.bucket(beta), "app.tfstate"), resource=log_groups(web=7, api=7))
    )
    assert_ok(rehearsal.run(stack, "init", caller=admin(beta)))
    empty = rehearsal.run(stack, "state", "list", caller=admin(beta))
    assert (empty.code, empty.out) == (0, "")
    assert_ok(rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)))
    listed = rehearsal.run(stack, "state", "list", caller=admin(beta))
    assert_ok(listed)
    assert listed.out.splitlines() == [f"{LOG_GROUP}.api", f"{LOG_GROUP}.web"]
    assert_refused(rehearsal.run(stack, "state", "rm", f"{LOG_GROUP}.api", caller=admin(beta)), "does not model")


@pytest.mark.req("R5.1")
def test_output_raw_prints_one_output_as_the_readmes_put_secret_value_uses_it(rehearsal: Rehearsal) -> None:
    outputs = {"backend_secret_name": {"value": "canvalo/beta/backend"}}
    stack, caller = applied(rehearsal, config(output=outputs))
    shown = rehearsal.run(stack, "output", "-raw", "backend_secret_name", caller=caller)
    assert (shown.code, shown.out) == (0, "canvalo/beta/backend")
    assert_refused(rehearsal.run(stack, "output", "-raw", "missing", caller=caller), 'Output "missing" not found')


def test_terraform_escapes_are_literal_characters_not_interpolations() -> None:
    text = "a $${STAGE^} ${aws_s3_bucket.b.id} %%{if}"
    assert [inner for _, _, inner in expressions(text)] == ["aws_s3_bucket.b.id"]
    assert literal("$${STAGE^} %%{x}") == "${STAGE^} %{x}"


@pytest.mark.req("R10.7")
def test_a_replaced_task_definition_is_deregistered_and_a_service_moved_off_it_is_planned_back(
    rehearsal: Rehearsal,
) -> None:
    """As the provider and Terraform's refresh do: what pipelines/restore.py meets after a failed smoke check."""
    beta = rehearsal.account("beta")
    stack = service_stack(rehearsal, beta, with_secret=False)
    push_image(rehearsal, beta)
    assert_ok(rehearsal.run(stack, "init", caller=admin(beta)))
    assert_ok(rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)))
    ecs = rehearsal.client(beta, "ecs")
    first = ecs.describe_services(cluster="api", services=["api"])["services"][0]["taskDefinition"]
    document = json.loads((stack / "cdk.tf.json").read_text())
    task = document["resource"]["aws_ecs_task_definition"]["api"]
    task["memory"] = "1024"
    (stack / "cdk.tf.json").write_text(json.dumps(document))
    assert_ok(rehearsal.run(stack, "apply", "-auto-approve", caller=admin(beta)))
    assert ecs.describe_task_definition(taskDefinition=first)["taskDefinition"]["status"] == "INACTIVE"

    ecs.update_service(cluster="api", service="api", taskDefinition=first)
    assert actions_of(plan_of(rehearsal, stack, admin(beta)))["aws_ecs_service.api"] == ["update"]
