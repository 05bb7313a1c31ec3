"""`<stage>-backend`: Fargate behind an ALB, its secret, scaling, alarms and dashboard, per stage."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from pipelines.verify_rollout import OUTPUT_NAMES
from stacks.backend import HEALTH_COMMAND, bedrock_model_arns
from stacks.config import ConfigError, StageConfig
from tests.infra.conftest import (
    BACKEND,
    NETWORK,
    STAGES,
    Document,
    data_sources,
    one,
    part,
    policy_statements,
    resources,
)
from tests.support.config import fixture_project

ACCOUNTS = {"beta": "111111111111", "gamma": "222222222222", "prod": "333333333333"}
SIZES = {"beta": ("256", "512"), "gamma": ("512", "1024"), "prod": ("1024", "2048")}
TASKS = {"beta": (1, 1), "gamma": (2, 10), "prod": (2, 10)}
SECRET_KEYS = ["SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_PUB_KEY"]
PROD_API_DOMAIN = "api.canvalo.example.com"
CLOUDFRONT_ORIGIN_FACING = "com.amazonaws.global.cloudfront.origin-facing"
EVERYWHERE = {"0.0.0.0/0", "::/0"}
REPOSITORY_ARN = "arn:aws:ecr:eu-west-1:111111111111:repository/canvalo-backend"


def backend(stacks: dict[str, Document], stage: str) -> Document:
    return part(stacks[stage], BACKEND)


def ref(kind: str, document: Document, attribute: str) -> str:
    """`${<kind>.<name>.<attribute>}` for the one resource of that kind."""
    (name,) = resources(document, kind)
    return f"${{{kind}.{name}.{attribute}}}"


def container(document: Document) -> dict[str, Any]:
    (definition,) = json.loads(one(document, "aws_ecs_task_definition")["container_definitions"])
    return dict(definition)


def role(document: Document, suffix: str) -> tuple[str, Document]:
    (found,) = [(k, r) for k, r in resources(document, "aws_iam_role").items() if r["name"].endswith(suffix)]
    return found


def role_statements(document: Document, role_name: str) -> list[Document]:
    (attached,) = [p for p in resources(document, "aws_iam_role_policy").values() if role_name in p["role"]]
    return policy_statements(document, attached["policy"])


def secret_ref(document: Document, attribute: str) -> str:
    """`${data.aws_secretsmanager_secret.<name>.<attribute>}`: the stage's secret, read by name (bootstrap creates it)."""
    (name,) = data_sources(document, "aws_secretsmanager_secret")
    return f"${{data.aws_secretsmanager_secret.{name}.{attribute}}}"


def environment(document: Document) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(document)["environment"]}


def alb_ingress(document: Document) -> list[Document]:
    """The ingress rules of the ALB's security group."""
    (alb_key,) = [key for key in resources(document, "aws_security_group") if key.startswith("api_security-group_")]
    alb = f"${{aws_security_group.{alb_key}.id}}"
    rules = resources(document, "aws_vpc_security_group_ingress_rule").values()
    return [rule for rule in rules if rule["security_group_id"] == alb]


def from_network(network: Document, kind: str, reference: str) -> Document:
    """The network's resource that a backend's `${<kind>.<name>.id}` names: a plain reference in the same state."""
    name = reference.removeprefix(f"${{{kind}.").removesuffix(".id}")
    return resources(network, kind)[name]


@pytest.mark.req("R2.1", "R7.1", "R7.2", "R7.3")
@pytest.mark.parametrize("stage", STAGES)
def test_fargate_service_sized_and_counted_by_stage(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    task = one(document, "aws_ecs_task_definition")
    assert (task["cpu"], task["memory"]) == SIZES[stage]
    assert task["requires_compatibilities"] == ["FARGATE"] and task["network_mode"] == "awsvpc"
    service = one(document, "aws_ecs_service")
    assert service["launch_type"] == "FARGATE"
    assert service["desired_count"] == TASKS[stage][0]
    assert service["task_definition"] == ref("aws_ecs_task_definition", document, "arn")
    network = service["network_configuration"]
    assert network["assign_public_ip"] is False
    assert len(network["subnets"]) == 2 and all("private" in subnet for subnet in network["subnets"])


@pytest.mark.req("R2.6", "R7.3")
@pytest.mark.parametrize("stage", STAGES)
def test_scaling_on_average_cpu_between_stage_bounds(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    targets = resources(document, "aws_appautoscaling_target")
    service = one(document, "aws_ecs_service")
    if stage == "beta":
        assert not targets and not resources(document, "aws_appautoscaling_policy")
        assert "lifecycle" not in service
        return
    (target,) = targets.values()
    assert (target["min_capacity"], target["max_capacity"]) == TASKS[stage]
    assert target["scalable_dimension"] == "ecs:service:DesiredCount"
    cluster, name = ref("aws_ecs_cluster", document, "name"), ref("aws_ecs_service", document, "name")
    assert target["resource_id"] == f"service/{cluster}/{name}"
    policy = one(document, "aws_appautoscaling_policy")
    assert policy["policy_type"] == "TargetTrackingScaling"
    tracking = policy["target_tracking_scaling_policy_configuration"]
    assert tracking["predefined_metric_specification"]["predefined_metric_type"] == "ECSServiceAverageCPUUtilization"
    assert tracking["target_value"] == 60
    # Auto scaling owns the count: a later apply must not reset it to the minimum.
    assert service["lifecycle"]["ignore_changes"] == ["desired_count"]


@pytest.mark.req("R2.2")
@pytest.mark.parametrize("stage", STAGES)
def test_alb_forwards_round_robin_to_task_ips(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    group = one(document, "aws_lb_target_group")
    assert group["target_type"] == "ip" and group["load_balancing_algorithm_type"] == "round_robin"
    assert (group["port"], group["protocol"]) == (8000, "HTTP")
    forwarding = [
        listener
        for listener in resources(document, "aws_lb_listener").values()
        if listener["default_action"][0]["type"] == "forward"
    ]
    assert len(forwarding) == 1
    assert forwarding[0]["default_action"][0]["target_group_arn"] == ref("aws_lb_target_group", document, "arn")
    (registration,) = one(document, "aws_ecs_service")["load_balancer"]
    assert registration == {
        "container_name": container(document)["name"],
        "container_port": 8000,
        "target_group_arn": ref("aws_lb_target_group", document, "arn"),
    }


@pytest.mark.req("R2.3")
@pytest.mark.parametrize("stage", STAGES)
def test_an_unhealthy_task_is_out_of_rotation_and_replaced_within_60_seconds(
    stacks: dict[str, Document], stage: str
) -> None:
    """ALB: unhealthy_threshold x interval + timeout = 2 x 10 + 5 = 25 s until no request reaches the
    task, when ECS starts its replacement; the container check catches a hung app the same way
    (retries x interval + timeout = 25 s). That leaves 35 s of the 60 for the new task to start and
    answer /health; deployments and replacements keep full capacity meanwhile (minimum healthy 100%)."""
    document = backend(stacks, stage)
    check = one(document, "aws_lb_target_group")["health_check"]
    assert check["path"] == "/health" and check["matcher"] == "200"
    out_of_rotation = check["interval"] * check["unhealthy_threshold"] + check["timeout"]
    assert out_of_rotation <= 25
    container_check = container(document)["healthCheck"]
    assert container_check["command"] == list(HEALTH_COMMAND)
    assert "/health" in container_check["command"][-1] and "curl" not in " ".join(container_check["command"])
    marked_unhealthy = container_check["interval"] * container_check["retries"] + container_check["timeout"]
    assert marked_unhealthy <= 25
    assert 60 - max(out_of_rotation, marked_unhealthy) >= 35
    service = one(document, "aws_ecs_service")
    assert service["deployment_minimum_healthy_percent"] == 100
    assert service["deployment_maximum_percent"] == 200
    assert service["deployment_circuit_breaker"] == {"enable": True, "rollback": True}
    # ECS ignores load balancer checks for this long after a start: shorter than the budget above.
    assert service["health_check_grace_period_seconds"] <= 35


@pytest.mark.req("R2.4", "R5.2", "R7.5")
@pytest.mark.parametrize("stage", STAGES)
def test_secrets_reach_the_container_from_the_stages_own_secret(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    definition = container(document)
    secret_arn = secret_ref(document, "arn")
    assert definition["secrets"] == [{"name": key, "valueFrom": f"{secret_arn}:{key}::"} for key in SECRET_KEYS]
    # Not in the environment, not in the image: only references to this stack's own secret.
    assert not set(SECRET_KEYS) & set(environment(document))
    (secret,) = data_sources(document, "aws_secretsmanager_secret").values()
    assert secret["name"] == f"canvalo/{stage}/backend"
    assert document["provider"]["aws"][0]["allowed_account_ids"] == [ACCOUNTS[stage]]


@pytest.mark.req("R5.1")
@pytest.mark.parametrize("stage", STAGES)
def test_the_backend_reads_the_secret_bootstrap_created_and_never_creates_one(
    stacks: dict[str, Document], stage: str
) -> None:
    """The first deploy's tasks need the value at once: the secret exists (and holds its value) before
    this stack is ever planned, so the stack only looks it up, and keeps naming it for the pipeline."""
    document = backend(stacks, stage)
    assert not resources(document, "aws_secretsmanager_secret")
    assert [s["name"] for s in data_sources(document, "aws_secretsmanager_secret").values()] == [
        f"canvalo/{stage}/backend"
    ]
    assert document["output"]["backend_secret_name"]["value"] == secret_ref(document, "name")


@pytest.mark.req("R5.3")
@pytest.mark.parametrize("stage", STAGES)
def test_only_the_task_execution_role_can_read_the_secret(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    secret_arn = secret_ref(document, "arn")
    execution_key, _ = role(document, "-execution")
    task_key, _ = role(document, "-task")
    reads = [s for s in role_statements(document, execution_key) if any("secretsmanager" in a for a in s["actions"])]
    assert reads == [
        {
            "sid": "ReadSecret",
            "effect": "Allow",
            "actions": ["secretsmanager:GetSecretValue"],
            "resources": [secret_arn],
        }
    ]
    task_actions = [a for s in role_statements(document, task_key) for a in s["actions"]]
    assert not any(a.startswith(("secretsmanager:", "kms:")) for a in task_actions)
    # The secret's own policy refuses everyone else, whatever their IAM policies allow.
    secret_policy = one(document, "aws_secretsmanager_secret_policy")
    assert secret_policy["secret_arn"] == secret_arn and secret_policy["block_public_policy"] is True
    (deny,) = policy_statements(document, secret_policy["policy"])
    assert deny["effect"] == "Deny" and deny["actions"] == ["secretsmanager:GetSecretValue"]
    assert deny["condition"] == [
        {
            "test": "StringNotEquals",
            "variable": "aws:PrincipalArn",
            "values": [f"${{aws_iam_role.{execution_key}.arn}}"],
        }
    ]


@pytest.mark.req("R5.4")
@pytest.mark.parametrize("stage", STAGES)
def test_tasks_read_the_current_secret_value_at_each_start(stacks: dict[str, Document], stage: str) -> None:
    """`<arn>:<key>::` leaves version stage and version id empty: ECS resolves AWSCURRENT when it starts
    a task, so a value put after the deploy reaches every task started after it (a forced new
    deployment, a replacement, a scale-out) with no change to the task definition."""
    document = backend(stacks, stage)
    secret_arn = secret_ref(document, "arn")
    for secret in container(document)["secrets"]:
        value_from = secret["valueFrom"]
        assert value_from.startswith(secret_arn)
        json_key, version_stage, version_id = value_from.removeprefix(f"{secret_arn}:").split(":")
        assert (json_key, version_stage, version_id) == (secret["name"], "", "")


@pytest.mark.req("R7.4")
@pytest.mark.parametrize("stage", STAGES)
def test_container_environment_is_the_backends_contract(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    # Same-origin stages allow no cross-origin caller: an absent CORS_ORIGINS, as ECS would drop an empty one.
    cors = {"CORS_ORIGINS": "https://canvalo.example.com"} if stage == "prod" else {}
    assert environment(document) == {
        "ENVIRONMENT": stage,
        **cors,
        "PORT": "8000",
        "AWS_REGION": "eu-west-1",
        "BEDROCK_MODEL_ID": "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "GRACEFUL_SHUTDOWN_SECONDS": "20",
        "APP_VERSION": "unreleased",
    }
    assert container(document)["image"].endswith(":" + environment(document)["APP_VERSION"]), (
        "/health reports the image tag the task runs"
    )


@pytest.mark.req("R4.5")
def test_the_backend_outputs_what_verify_rollout_reads(stacks: dict[str, Document]) -> None:
    document = backend(stacks, "beta")
    assert {name: document["output"][name]["value"] for name in OUTPUT_NAMES} == {
        "backend_cluster_name": ref("aws_ecs_cluster", document, "name"),
        "backend_service_name": ref("aws_ecs_service", document, "name"),
        "backend_task_definition_arn": ref("aws_ecs_task_definition", document, "arn"),
    }


@pytest.mark.parametrize("stage", STAGES)
def test_container_is_hardened_and_stops_gracefully(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    definition = container(document)
    assert definition["image"] == "111111111111.dkr.ecr.eu-west-1.amazonaws.com/canvalo-backend:unreleased"
    assert definition["privileged"] is False and definition["readonlyRootFilesystem"] is True
    assert definition["linuxParameters"] == {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}}
    (scratch,) = definition["mountPoints"]
    assert scratch["containerPath"] == "/tmp" and scratch["readOnly"] is False
    volumes = one(document, "aws_ecs_task_definition")["volume"]
    assert volumes == [{"name": scratch["sourceVolume"]}], "an ephemeral task volume, no host path"
    # The ALB stops sending first, then SIGTERM, then the app drains, and only then SIGKILL.
    deregistration = int(one(document, "aws_lb_target_group")["deregistration_delay"])
    assert (deregistration, definition["stopTimeout"]) == (15, 30)
    assert deregistration < int(environment(document)["GRACEFUL_SHUTDOWN_SECONDS"]) < definition["stopTimeout"]
    assert one(document, "aws_ecs_cluster")["setting"] == [{"name": "containerInsights", "value": "enabled"}]


@pytest.mark.parametrize("stage", STAGES)
def test_tasks_accept_only_the_load_balancer(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    groups = resources(document, "aws_security_group")
    # Rules are separate resources only (test_synth: no group has in-line rules).
    (alb_key,) = [key for key in groups if key.startswith("api_security-group_")]
    (task_key,) = [key for key in groups if key.startswith("api_service_")]
    alb, tasks = f"${{aws_security_group.{alb_key}.id}}", f"${{aws_security_group.{task_key}.id}}"
    ingress = list(resources(document, "aws_vpc_security_group_ingress_rule").values())
    to_tasks = [rule for rule in ingress if rule["security_group_id"] == tasks]
    assert [(r["from_port"], r["to_port"], r.get("referenced_security_group_id")) for r in to_tasks] == [
        (8000, 8000, alb)
    ]
    # Who may reach the ALB: tests below (beta/gamma: CloudFront only; prod: the internet on 80 and 443).
    assert {r["from_port"] for r in ingress if r["security_group_id"] == alb} == (
        {80, 443} if stage == "prod" else {80}
    )
    egress = {(r["security_group_id"], r["from_port"], r.get("cidr_ipv4") or r.get("referenced_security_group_id"))
              for r in resources(document, "aws_vpc_security_group_egress_rule").values()}  # fmt: skip
    assert egress == {(alb, 8000, tasks), (tasks, 443, "0.0.0.0/0")}


@pytest.mark.parametrize("stage", STAGES)
def test_roles_are_named_bounded_and_scoped(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    for _, found in resources(document, "aws_iam_role").items():
        assert found["name"].startswith(f"canvalo-{stage}-") and found["path"] == "/canvalo/"
        assert found["permissions_boundary"] == (
            f"arn:aws:iam::{ACCOUNTS[stage]}:policy/canvalo/canvalo-workload-boundary"
        )
        (trust,) = policy_statements(document, found["assume_role_policy"])
        assert trust["principals"] == [{"type": "Service", "identifiers": ["ecs-tasks.amazonaws.com"]}]
        # Only ECS acting for this account may assume them (no confused deputy).
        assert {"test": "StringEquals", "variable": "aws:SourceAccount", "values": [ACCOUNTS[stage]]} in trust[
            "condition"
        ]
    execution_key, _ = role(document, "-execution")
    by_sid = {s["sid"]: s for s in role_statements(document, execution_key)}
    assert by_sid["PullImage"]["resources"] == [REPOSITORY_ARN]
    assert by_sid["RegistryLogin"] == {
        "sid": "RegistryLogin",
        "effect": "Allow",
        "actions": ["ecr:GetAuthorizationToken"],
        "resources": ["*"],
    }
    assert by_sid["WriteLogs"]["resources"] == [f"{ref('aws_cloudwatch_log_group', document, 'arn')}:*"]
    task_key, _ = role(document, "-task")
    (invoke,) = role_statements(document, task_key)
    assert invoke["actions"] == ["bedrock:InvokeModel"]
    # The default model is a cross-region inference profile: the profile, and the model in any EU region.
    assert invoke["resources"] == [
        f"arn:aws:bedrock:eu-west-1:{ACCOUNTS[stage]}:inference-profile/eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "arn:aws:bedrock:*::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0",
    ]


def test_bedrock_permissions_follow_the_kind_of_model_id() -> None:
    assert bedrock_model_arns("amazon.titan-text-express-v1", region="eu-west-1", account_id="1" * 12) == [
        "arn:aws:bedrock:eu-west-1::foundation-model/amazon.titan-text-express-v1"
    ]
    profile = "eu.anthropic.claude-3-7-sonnet-20250219-v1:0"
    assert bedrock_model_arns(profile, region="eu-west-1", account_id="1" * 12) == [
        f"arn:aws:bedrock:eu-west-1:111111111111:inference-profile/{profile}",
        "arn:aws:bedrock:*::foundation-model/anthropic.claude-3-7-sonnet-20250219-v1:0",
    ]


@pytest.mark.req("R7.6")
@pytest.mark.parametrize("stage", STAGES)
def test_prod_protects_stateful_resources_and_beta_tears_down(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    protected = stage == "prod"
    assert one(document, "aws_lb")["enable_deletion_protection"] is protected
    bucket = one(document, "aws_s3_bucket")
    assert bucket["force_destroy"] is (not protected)
    for kind in ("aws_s3_bucket", "aws_cloudwatch_log_group"):
        lifecycle = one(document, kind).get("lifecycle", {})
        assert lifecycle.get("prevent_destroy", False) is protected, kind


@pytest.mark.req("R8.4")
@pytest.mark.parametrize("stage", ["beta", "gamma"])
def test_beta_and_gamma_serve_http_on_the_alb_name(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    (listener,) = resources(document, "aws_lb_listener").values()
    assert (listener["port"], listener["protocol"]) == (80, "HTTP")
    assert "certificate_arn" not in listener and "ssl_policy" not in listener
    assert not resources(document, "aws_acm_certificate") and not resources(document, "aws_route53_record")
    # The ALB is internal: it has no URL the tests could call; backend_url is CloudFront's /api.
    (distribution,) = resources(stacks[stage], "aws_cloudfront_distribution")
    expected = f"https://${{aws_cloudfront_distribution.{distribution}.domain_name}}/api"
    assert document["output"]["backend_url"]["value"] == expected


@pytest.mark.req("R8.5")
def test_prod_terminates_tls_with_a_dns_validated_certificate(stacks: dict[str, Document]) -> None:
    document = backend(stacks, "prod")
    listeners = {listener["port"]: listener for listener in resources(document, "aws_lb_listener").values()}
    https, http = listeners[443], listeners[80]
    assert https["protocol"] == "HTTPS" and https["ssl_policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert https["certificate_arn"] == ref("aws_acm_certificate_validation", document, "certificate_arn")
    # TLS ends at the ALB; it forwards plain HTTP to the tasks on 8000.
    assert one(document, "aws_lb_target_group")["protocol"] == "HTTP"
    assert http["default_action"] == [
        {"type": "redirect", "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}
    ]
    certificate = one(document, "aws_acm_certificate")
    assert certificate["domain_name"] == PROD_API_DOMAIN and certificate["validation_method"] == "DNS"
    zone = data_sources(document, "aws_route53_zone")
    assert [z["name"] for z in zone.values()] == ["canvalo.example.com"]
    assert document["output"]["backend_url"]["value"] == f"https://{PROD_API_DOMAIN}"


@pytest.mark.req("R8.7")
def test_prod_api_name_points_at_the_alb(stacks: dict[str, Document]) -> None:
    document = backend(stacks, "prod")
    (alias,) = [r for r in resources(document, "aws_route53_record").values() if r.get("alias")]
    assert (alias["name"], alias["type"]) == (PROD_API_DOMAIN, "A")
    assert alias["alias"] == {
        "name": ref("aws_lb", document, "dns_name"),
        "zone_id": ref("aws_lb", document, "zone_id"),
        "evaluate_target_health": True,
    }


@pytest.mark.req("R8.2", "R8.4")
@pytest.mark.parametrize("stage", ["beta", "gamma"])
def test_beta_and_gamma_albs_admit_only_cloudfronts_origin_facing_addresses(
    stacks: dict[str, Document], stage: str
) -> None:
    """Nobody bypasses CloudFront: no rule of the stack admits the internet, and the ALB's only ingress is
    port 80 from the AWS-managed CloudFront origin-facing prefix list, as VPC origins are set up."""
    document = backend(stacks, stage)
    rules = [
        *resources(document, "aws_vpc_security_group_ingress_rule").values(),
        *resources(document, "aws_security_group_rule").values(),
        *(rule for group in resources(document, "aws_security_group").values() for rule in group.get("ingress", [])),
    ]
    open_to_all = [
        rule
        for rule in rules
        for field in ("cidr_ipv4", "cidr_ipv6", "cidr_blocks", "ipv6_cidr_blocks")
        if EVERYWHERE & set(rule[field] if isinstance(rule.get(field), list) else [rule.get(field)])
    ]
    assert not open_to_all, open_to_all
    prefix_lists = data_sources(document, "aws_ec2_managed_prefix_list")
    ingress = alb_ingress(document)
    assert [(rule["ip_protocol"], rule["from_port"], rule["to_port"]) for rule in ingress] == [("tcp", 80, 80)]
    for rule in ingress:
        assert not {"cidr_ipv4", "cidr_ipv6", "referenced_security_group_id"} & set(rule), rule
        name = rule["prefix_list_id"].removeprefix("${data.aws_ec2_managed_prefix_list.").removesuffix(".id}")
        # Looked up by name alone: no filter or id that could select another list.
        assert {key: value for key, value in prefix_lists[name].items() if key != "//"} == {
            "name": CLOUDFRONT_ORIGIN_FACING
        }


@pytest.mark.req("R8.2", "R8.4", "R2.5")
@pytest.mark.parametrize("stage", ["beta", "gamma"])
def test_beta_and_gamma_albs_are_internal_in_a_vpc_a_vpc_origin_can_use(
    stacks: dict[str, Document], stage: str
) -> None:
    """Internal, in the private subnets of the stage's VPC, which has an internet gateway attached: a VPC
    origin requires one (it does not route through it); the listener stays HTTP 80 with no certificate."""
    document, network = backend(stacks, stage), part(stacks[stage], NETWORK)
    balancer = one(document, "aws_lb")
    assert balancer["internal"] is True and balancer["load_balancer_type"] == "application"
    subnets = [from_network(network, "aws_subnet", reference) for reference in balancer["subnets"]]
    assert {subnet["tags"]["tier"] for subnet in subnets} == {"private"}
    (group,) = [
        g for key, g in resources(document, "aws_security_group").items() if key.startswith("api_security-group_")
    ]
    vpc = f"${{aws_vpc.{next(iter(resources(network, 'aws_vpc')))}.id}}"
    assert group["vpc_id"] == vpc
    assert one(network, "aws_internet_gateway")["vpc_id"] == vpc
    assert {subnet["vpc_id"] for subnet in subnets} == {vpc}


@pytest.mark.req("R8.5", "R8.7")
def test_prod_alb_stays_internet_facing_behind_its_https_name(stacks: dict[str, Document]) -> None:
    """Browsers call https://api.<domain> on the ALB itself (R8.3): prod keeps its public ALB."""
    document = backend(stacks, "prod")
    balancer = one(document, "aws_lb")
    assert balancer["internal"] is False
    assert sorted((rule["from_port"], rule["cidr_ipv4"]) for rule in alb_ingress(document)) == [
        (80, "0.0.0.0/0"),
        (443, "0.0.0.0/0"),
    ]
    assert not data_sources(document, "aws_ec2_managed_prefix_list")
    assert document["output"]["backend_url"]["value"] == f"https://{PROD_API_DOMAIN}"


@pytest.mark.req("R8.3", "R8.5")
def test_a_private_load_balancer_behind_a_domain_is_refused_and_by_default_follows_the_domain() -> None:
    """Not a setting: a stage given a domain is called on its ALB (https://api.<domain>), so that ALB is
    internet-facing; one without is internal. Asking for a private ALB is refused with what decides it."""
    with pytest.raises(ConfigError) as refused:
        fixture_project({"CANVALO_PROD_PRIVATE_LOAD_BALANCER": "true"})
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("CANVALO_PROD_PRIVATE_LOAD_BALANCER is no longer a setting: it follows domain_name")
    assert not fixture_project().stage("prod").private_load_balancer
    assert not fixture_project({"CANVALO_BETA_DOMAIN_NAME": "beta.example.org"}).stage("beta").private_load_balancer
    assert fixture_project().stage("gamma").private_load_balancer


@pytest.mark.req("R11.1")
@pytest.mark.parametrize("stage", STAGES)
def test_container_logs_stream_to_a_30_day_log_group(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    group = one(document, "aws_cloudwatch_log_group")
    assert group["name"] == f"/canvalo/{stage}/backend" and group["retention_in_days"] == 30
    logging = container(document)["logConfiguration"]
    assert logging["logDriver"] == "awslogs"
    assert logging["options"]["awslogs-group"] == group["name"]
    assert logging["options"]["awslogs-region"] == "eu-west-1"


@pytest.mark.req("R11.2")
@pytest.mark.parametrize("stage", STAGES)
def test_alb_access_logs_go_to_an_expiring_private_bucket(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    account = ACCOUNTS[stage]
    bucket_name = f"canvalo-{stage}-alb-logs-{account}"
    balancer = one(document, "aws_lb")
    assert balancer["access_logs"] == {"bucket": bucket_name, "prefix": "alb", "enabled": True}
    assert balancer["drop_invalid_header_fields"] is True
    assert one(document, "aws_s3_bucket")["bucket"] == bucket_name
    assert balancer["depends_on"] == [f"aws_s3_bucket_policy.{next(iter(resources(document, 'aws_s3_bucket_policy')))}"]
    encryption = one(document, "aws_s3_bucket_server_side_encryption_configuration")["rule"][0]
    assert encryption["apply_server_side_encryption_by_default"]["sse_algorithm"] == "AES256"
    (rule,) = one(document, "aws_s3_bucket_lifecycle_configuration")["rule"]
    assert rule["expiration"] == [{"days": 90}]
    statements = {s["sid"]: s for s in policy_statements(document, one(document, "aws_s3_bucket_policy")["policy"])}
    log_objects = [f"arn:aws:s3:::{bucket_name}/alb/AWSLogs/{account}/*"]
    service = statements["ElbLogDeliveryService"]
    assert service["principals"] == [
        {"type": "Service", "identifiers": ["logdelivery.elasticloadbalancing.amazonaws.com"]}
    ]
    regional = statements["ElbLogDeliveryRegionalAccount"]
    (elb_account,) = data_sources(document, "aws_elb_service_account")
    assert regional["principals"] == [
        {"type": "AWS", "identifiers": [f"${{data.aws_elb_service_account.{elb_account}.arn}}"]}
    ]
    for grant in (service, regional):
        assert grant["actions"] == ["s3:PutObject"] and grant["resources"] == log_objects


def alarm(document: Document, suffix: str) -> Document:
    (found,) = [
        a for a in resources(document, "aws_cloudwatch_metric_alarm").values() if a["alarm_name"].endswith(suffix)
    ]
    return found


@pytest.mark.req("R11.3", "R11.4")
@pytest.mark.parametrize("stage", STAGES)
def test_every_alarm_notifies_the_stages_encrypted_topic(stacks: dict[str, Document], stage: str) -> None:
    document = backend(stacks, stage)
    topic = one(document, "aws_sns_topic")
    assert topic["name"] == f"canvalo-{stage}-alarms"
    assert topic["kms_master_key_id"] == ref("aws_kms_key", document, "arn")
    assert one(document, "aws_kms_key")["enable_key_rotation"] is True
    key_statements = policy_statements(document, one(document, "aws_kms_key")["policy"])
    (cloudwatch,) = [s for s in key_statements if s["sid"] == "CloudWatchAlarmsPublish"]
    assert cloudwatch["principals"] == [{"type": "Service", "identifiers": ["cloudwatch.amazonaws.com"]}]
    assert set(cloudwatch["actions"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    topic_arn = ref("aws_sns_topic", document, "arn")
    alarms = resources(document, "aws_cloudwatch_metric_alarm").values()
    assert len(alarms) == 2
    for found in alarms:
        assert found["alarm_actions"] == [topic_arn] and found["ok_actions"] == [topic_arn]
    (publish,) = policy_statements(document, one(document, "aws_sns_topic_policy")["policy"])
    assert publish["actions"] == ["sns:Publish"] and publish["resources"] == [topic_arn]


@pytest.mark.req("R11.3")
@pytest.mark.parametrize("stage", STAGES)
def test_alarm_when_fewer_healthy_tasks_than_the_stage_runs(stacks: dict[str, Document], stage: str) -> None:
    found = alarm(backend(stacks, stage), "-healthy-tasks")
    assert (found["namespace"], found["metric_name"], found["statistic"]) == (
        "AWS/ApplicationELB",
        "HealthyHostCount",
        "Minimum",
    )
    assert found["comparison_operator"] == "LessThanThreshold"
    # Gamma and prod run 2 or more tasks: fewer than 2 healthy alarms (R11.3); beta runs 1.
    assert found["threshold"] == {"beta": 1, "gamma": 2, "prod": 2}[stage]
    assert found["treat_missing_data"] == "breaching"
    assert set(found["dimensions"]) == {"LoadBalancer", "TargetGroup"}


@pytest.mark.req("R4.5", "R11.4")
@pytest.mark.parametrize("stage", STAGES)
def test_a_release_that_trips_the_5xx_alarm_rolls_itself_back(stacks: dict[str, Document], stage: str) -> None:
    """The 5xx-rate alarm is the service's deployment alarm, beside the circuit breaker. It treats no data as
    not breaching, so a first deploy or a quiet stage starts OK; the healthy-tasks alarm (no data breaches)
    would start those deployments in ALARM, when ECS watches no alarm at all, so it is not one."""
    document = backend(stacks, stage)
    service = one(document, "aws_ecs_service")
    (name,) = [
        n
        for n, a in resources(document, "aws_cloudwatch_metric_alarm").items()
        if a["alarm_name"].endswith("-5xx-rate")
    ]
    assert service["alarms"] == {
        "alarm_names": [f"${{aws_cloudwatch_metric_alarm.{name}.alarm_name}}"],
        "enable": True,
        "rollback": True,
    }
    assert service["deployment_circuit_breaker"] == {"enable": True, "rollback": True}
    assert alarm(document, "-5xx-rate")["treat_missing_data"] == "notBreaching"
    assert alarm(document, "-healthy-tasks")["treat_missing_data"] == "breaching"


class Series:
    """A CloudWatch metric value in a math expression: None is a period without a datapoint."""

    def __init__(self, value: float | None) -> None:
        self.value = value

    def __add__(self, other: Series) -> Series:
        return Series(None if self.value is None or other.value is None else self.value + other.value)

    def __truediv__(self, other: Series) -> Series:
        if self.value is None or other.value is None:
            return Series(None)
        return Series(self.value / other.value if other.value else float("nan"))

    def __mul__(self, factor: float) -> Series:
        return Series(None if self.value is None else self.value * factor)

    def __gt__(self, other: float) -> bool:
        return self.value is not None and self.value > other


def evaluate(expression: str, **metrics: float | None) -> float | None:
    """Evaluate a CloudWatch metric math expression (IF, FILL, + / * >) over one period."""
    python = re.sub(r"\bIF\(", "if_(", re.sub(r"\bFILL\(", "fill(", expression))

    def fill(series: Series, default: float) -> Series:
        return series if series.value is not None else Series(default)

    def if_(condition: bool, then: Series | float, otherwise: Series | float) -> Series:
        chosen = then if condition else otherwise
        return chosen if isinstance(chosen, Series) else Series(chosen)

    namespace = {"fill": fill, "if_": if_, **{name: Series(value) for name, value in metrics.items()}}
    result = eval(python, {"__builtins__": {}}, namespace)  # noqa: S307 - our own constant expression
    assert isinstance(result, Series)
    return result.value


@pytest.mark.req("R11.4")
@pytest.mark.parametrize("stage", STAGES)
def test_alarm_when_over_5_percent_of_requests_fail_over_5_minutes(stacks: dict[str, Document], stage: str) -> None:
    found = alarm(backend(stacks, stage), "-5xx-rate")
    queries = {query["id"]: query for query in found["metric_query"]}
    metrics = {qid: q["metric"] for qid, q in queries.items() if "metric" in q}
    assert {m["metric_name"] for m in metrics.values()} == {
        "HTTPCode_Target_5XX_Count",
        "HTTPCode_ELB_5XX_Count",
        "RequestCount",
    }
    assert all(m["stat"] == "Sum" and m["period"] == 300 for m in metrics.values())
    assert all(not q["return_data"] for q in queries.values() if "metric" in q)
    (rate,) = [q for q in queries.values() if q.get("return_data")]
    assert (found["comparison_operator"], found["threshold"], found["evaluation_periods"]) == (
        "GreaterThanThreshold",
        5,
        1,
    )
    assert found["treat_missing_data"] == "notBreaching"
    ids = {m["metric_name"]: qid for qid, m in metrics.items()}

    def rate_of(target: float | None, elb: float | None, requests: float | None) -> float | None:
        values = {
            ids["HTTPCode_Target_5XX_Count"]: target,
            ids["HTTPCode_ELB_5XX_Count"]: elb,
            ids["RequestCount"]: requests,
        }
        return evaluate(rate["expression"], **values)

    assert rate_of(3, 3, 100) == 6  # over the threshold: alarm
    assert rate_of(5, None, 100) == 5  # no ELB errors reported: 5%, not over
    assert rate_of(None, None, 100) == 0  # no error datapoints: no errors
    assert rate_of(None, None, None) == 0  # no traffic: no error rate, not "missing"
    assert rate_of(None, 2, 10) == 20  # the load balancer's own 5xx count too


@pytest.mark.req("R11.5")
@pytest.mark.parametrize("stage", STAGES)
def test_prod_dashboard_shows_traffic_latency_errors_and_capacity(stacks: dict[str, Document], stage: str) -> None:
    dashboards = resources(backend(stacks, stage), "aws_cloudwatch_dashboard")
    if stage != "prod":
        assert not dashboards
        return
    (dashboard,) = dashboards.values()
    body = json.loads(dashboard["dashboard_body"])
    shown: set[str] = set()
    for widget in body["widgets"]:
        for metric in widget["properties"]["metrics"]:
            options = metric[-1] if isinstance(metric[-1], dict) else {}
            if "expression" in options:
                shown.add("expression:" + options["expression"])
            elif options.get("visible", True):
                shown.add(f"{metric[1]}:{options.get('stat', widget['properties']['stat'])}")
    error_rate = alarm(backend(stacks, stage), "-5xx-rate")
    (rate_expression,) = [q["expression"] for q in error_rate["metric_query"] if "expression" in q]
    assert shown >= {
        "RequestCount:Sum",
        "TargetResponseTime:p50",
        "TargetResponseTime:p99",
        f"expression:{rate_expression}",
        "HealthyHostCount:Minimum",
        "CPUUtilization:Average",
        "MemoryUtilization:Average",
    }


@pytest.mark.parametrize("value", [1, 6, 31])
def test_secret_recovery_window_outside_what_secrets_manager_takes_is_refused(value: int) -> None:
    with pytest.raises(ConfigError, match=r"secret_recovery_window_days=\d+ is invalid: use 0 .* or 7 to 30") as error:
        StageConfig(
            name="gamma",
            account_id="222222222222",
            region="eu-west-1",
            vpc_cidr="10.20.0.0/16",
            nat_gateways=1,
            cpu=512,
            memory=1024,
            min_tasks=2,
            max_tasks=10,
            deletion_protection=False,
            secret_recovery_window_days=value,
        )
    assert "\n" not in str(error.value) and "CANVALO_GAMMA_SECRET_RECOVERY_WINDOW_DAYS" in str(error.value)


@pytest.mark.req("R2.5")
@pytest.mark.parametrize("stage", STAGES)
def test_alb_and_tasks_span_the_networks_zones(stacks: dict[str, Document], stage: str) -> None:
    """The tasks sit in the private subnets; the ALB in the public ones in prod and the private ones in
    beta and gamma (internal, for CloudFront's VPC origin), each subnet in a different zone."""
    document, network = backend(stacks, stage), part(stacks[stage], NETWORK)

    def subnet_of(reference: str) -> Document:
        return from_network(network, "aws_subnet", reference)

    for placed, tier in (
        (one(document, "aws_lb")["subnets"], "public" if stage == "prod" else "private"),
        (one(document, "aws_ecs_service")["network_configuration"]["subnets"], "private"),
    ):
        found = [subnet_of(reference) for reference in placed]
        assert {subnet["tags"]["tier"] for subnet in found} == {tier}
        assert len({subnet["availability_zone"] for subnet in found}) == len(found) >= 2


@pytest.mark.req("R1.5")
@pytest.mark.parametrize(
    ("timing", "words"),
    [
        ({"graceful_shutdown_seconds": 30}, "graceful_shutdown_seconds=30 must be above 0 and below stop_timeout"),
        ({"stop_timeout_seconds": 121, "graceful_shutdown_seconds": 20}, "at most 120, ECS's limit"),
        ({"deregistration_delay_seconds": 20}, "deregistration_delay_seconds=20 must be 0 or more and below"),
    ],
)
def test_shutdown_timings_out_of_order_are_refused_where_they_live(timing: dict[str, int], words: str) -> None:
    """The load balancer drains before the app stops, and the app stops before ECS kills it (R1.5)."""
    from modules.fargate_service import ShutdownTiming

    assert ShutdownTiming() == ShutdownTiming(15, 20, 30)
    with pytest.raises(ValueError, match=words):
        ShutdownTiming(**timing)


@pytest.mark.req("R2.6")
def test_the_cpu_target_is_a_construct_default_checked_where_it_lives() -> None:
    from modules.fargate_service import TaskSize

    assert TaskSize(cpu=256, memory=512, min_tasks=1, max_tasks=2).cpu_target_percent == 60
    with pytest.raises(ValueError, match="cpu_target_percent=95: use 10 to 90"):
        TaskSize(cpu=256, memory=512, min_tasks=1, max_tasks=2, cpu_target_percent=95)
