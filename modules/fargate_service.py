"""One container on ECS Fargate behind a load balancer target group: cluster, task, service, roles, scaling."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cdktn import ITerraformDependable, TerraformResourceLifecycle
from cdktn_provider_aws.appautoscaling_policy import (
    AppautoscalingPolicy,
    AppautoscalingPolicyTargetTrackingScalingPolicyConfiguration,
    AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecification,
)
from cdktn_provider_aws.appautoscaling_target import AppautoscalingTarget
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement
from cdktn_provider_aws.ecs_cluster import EcsCluster, EcsClusterSetting
from cdktn_provider_aws.ecs_service import (
    EcsService,
    EcsServiceAlarms,
    EcsServiceDeploymentCircuitBreaker,
    EcsServiceLoadBalancer,
    EcsServiceNetworkConfiguration,
)
from cdktn_provider_aws.ecs_task_definition import (
    EcsTaskDefinition,
    EcsTaskDefinitionRuntimePlatform,
    EcsTaskDefinitionVolume,
)
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.security_group import SecurityGroup
from cdktn_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktn_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from modules.iam import assume_role_document, policy_document, statement
from modules.logs import LOG_RETENTION_DAYS

CONTAINER_NAME = "app"
ECR_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage")


@dataclass(frozen=True)
class ContainerHealthCheck:
    """ECS marks the container unhealthy after `retries` failed runs of `command`, `interval_seconds`
    apart, and replaces the task (R2.3)."""

    command: tuple[str, ...]
    interval_seconds: int = 10
    timeout_seconds: int = 5
    retries: int = 2
    start_period_seconds: int = 10

    @property
    def seconds_to_unhealthy(self) -> int:
        return self.interval_seconds * self.retries + self.timeout_seconds


@dataclass(frozen=True)
class TaskSize:
    """Fargate cpu (1/1024 vCPU) and memory (MiB), and the task count: fixed, or scaled on average CPU
    between `min_tasks` and `max_tasks` when they differ (R2.6, R7.1-R7.3)."""

    cpu: int
    memory: int
    min_tasks: int
    max_tasks: int
    # Average CPU that target-tracking auto scaling holds the service at (R2.6): the same in every stage.
    cpu_target_percent: int = 60

    def __post_init__(self) -> None:
        if not 10 <= self.cpu_target_percent <= 90:
            raise ValueError(f"cpu_target_percent={self.cpu_target_percent}: use 10 to 90")

    @property
    def autoscaling(self) -> bool:
        return self.max_tasks > self.min_tasks


@dataclass(frozen=True)
class ShutdownTiming:
    """How a task stops, shortest first (R1.5): the ALB stops sending new requests to a draining task for
    `deregistration_delay_seconds`; the app then gets SIGTERM and finishes in-flight requests within
    `graceful_shutdown_seconds` (its GRACEFUL_SHUTDOWN_SECONDS); ECS sends SIGKILL only after
    `stop_timeout_seconds`. The same in every stage: construct defaults, not settings."""

    deregistration_delay_seconds: int = 15
    graceful_shutdown_seconds: int = 20
    stop_timeout_seconds: int = 30

    def __post_init__(self) -> None:
        if not 0 < self.graceful_shutdown_seconds < self.stop_timeout_seconds <= 120:
            raise ValueError(
                f"graceful_shutdown_seconds={self.graceful_shutdown_seconds} must be above 0 and below "
                f"stop_timeout_seconds={self.stop_timeout_seconds} (at most 120, ECS's limit)"
            )
        if not 0 <= self.deregistration_delay_seconds < self.graceful_shutdown_seconds:
            raise ValueError(
                f"deregistration_delay_seconds={self.deregistration_delay_seconds} must be 0 or more and below "
                f"graceful_shutdown_seconds={self.graceful_shutdown_seconds}: requests still arrive while it drains"
            )


class FargateService(Construct):
    """A single-container Fargate service in private subnets, reachable only from its load balancer.

    Deployments replace tasks without losing capacity (minimum healthy 100%) and roll back on their own
    when new tasks keep failing (circuit breaker) or one of `deployment_alarm_names` goes to ALARM while
    the deployment and its bake time last (deployment alarms). The root filesystem is read-only; `writable_paths`
    get task-local scratch volumes. Secrets arrive as `secrets` (`valueFrom` = `<secret arn>:<key>::`):
    ECS reads them with the execution role when a task starts, so the task role cannot read them and a
    changed value reaches each task at its next start (R5.2-R5.4).
    Egress is HTTPS only: the image registry, Secrets Manager, Bedrock and Supabase all speak it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        account_id: str,
        region: str,
        image: str,
        image_repository_arn: str,
        size: TaskSize,
        container_port: int,
        environment: Mapping[str, str],
        secret_arn: str,
        secret_keys: Sequence[str],
        health_check: ContainerHealthCheck,
        shutdown: ShutdownTiming = ShutdownTiming(),
        # A mount point inside the container (a task-local volume), not a temporary file on this machine.
        writable_paths: Sequence[str] = ("/tmp",),  # noqa: S108
        log_group_name: str,
        log_retention_days: int = LOG_RETENTION_DAYS,
        task_policy_statements: Sequence[DataAwsIamPolicyDocumentStatement],
        role_path: str,
        permissions_boundary_arn: str,
        vpc_id: str,
        subnet_ids: Sequence[str],
        target_group_arn: str,
        load_balancer_security_group_id: str,
        service_depends_on: Sequence[ITerraformDependable],
        deployment_alarm_names: Sequence[str] = (),
        protected: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = CloudwatchLogGroup(
            self,
            "logs",
            name=log_group_name,
            retention_in_days=log_retention_days,
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if protected else None,
        )
        self.cluster = EcsCluster(
            self, "cluster", name=name, setting=[EcsClusterSetting(name="containerInsights", value="enabled")]
        )
        self._roles(
            name=name,
            account_id=account_id,
            region=region,
            image_repository_arn=image_repository_arn,
            secret_arn=secret_arn,
            task_policy_statements=task_policy_statements,
            role_path=role_path,
            permissions_boundary_arn=permissions_boundary_arn,
        )
        self._task_definition(
            name=name,
            region=region,
            image=image,
            size=size,
            container_port=container_port,
            environment=environment,
            secret_arn=secret_arn,
            secret_keys=secret_keys,
            health_check=health_check,
            stop_timeout_seconds=shutdown.stop_timeout_seconds,
            writable_paths=writable_paths,
            log_group_name=log_group_name,
        )
        self._security_group(
            name=name,
            vpc_id=vpc_id,
            container_port=container_port,
            load_balancer_security_group_id=load_balancer_security_group_id,
        )
        self._service(
            name=name,
            size=size,
            container_port=container_port,
            subnet_ids=subnet_ids,
            target_group_arn=target_group_arn,
            deployment_alarm_names=deployment_alarm_names,
            service_depends_on=service_depends_on,
        )
        self.scaling_target = self._scaling(name=name, size=size)

    def _roles(
        self,
        *,
        name: str,
        account_id: str,
        region: str,
        image_repository_arn: str,
        secret_arn: str,
        task_policy_statements: Sequence[DataAwsIamPolicyDocumentStatement],
        role_path: str,
        permissions_boundary_arn: str,
    ) -> None:
        # One trust for both roles: ECS tasks of this account and region only (no confused deputy).
        self._trust = assume_role_document(
            self,
            "ecs-tasks-trust",
            principals={"Service": ["ecs-tasks.amazonaws.com"]},
            conditions=[
                ("StringEquals", "aws:SourceAccount", [account_id]),
                ("ArnLike", "aws:SourceArn", [f"arn:aws:ecs:{region}:{account_id}:*"]),
            ],
        )
        self.execution_role, self.execution_policy = self._role(
            "execution",
            name=name,
            description="ECS pulls the image, writes logs and reads the secret for the tasks",
            role_path=role_path,
            permissions_boundary_arn=permissions_boundary_arn,
            statements=[
                statement(sid="PullImage", actions=ECR_PULL_ACTIONS, resources=[image_repository_arn]),
                # GetAuthorizationToken has no resource-level permissions: it returns a registry login.
                statement(sid="RegistryLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
                statement(
                    sid="WriteLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[f"{self.log_group.arn}:*"],
                ),
                statement(sid="ReadSecret", actions=["secretsmanager:GetSecretValue"], resources=[secret_arn]),
            ],
        )
        self.task_role, self.task_policy = self._role(
            "task",
            name=name,
            description="what the application itself may call",
            role_path=role_path,
            permissions_boundary_arn=permissions_boundary_arn,
            statements=task_policy_statements,
        )

    def _task_definition(
        self,
        *,
        name: str,
        region: str,
        image: str,
        size: TaskSize,
        container_port: int,
        environment: Mapping[str, str],
        secret_arn: str,
        secret_keys: Sequence[str],
        health_check: ContainerHealthCheck,
        stop_timeout_seconds: int,
        writable_paths: Sequence[str],
        log_group_name: str,
    ) -> None:
        volumes = {f"scratch-{index}": path for index, path in enumerate(writable_paths)}
        self.container_definition: dict[str, object] = {
            "name": CONTAINER_NAME,
            "image": image,
            "essential": True,
            "portMappings": [{"containerPort": container_port, "protocol": "tcp"}],
            # ECS drops a variable whose value is empty from the definition it stores, so the provider would
            # see a difference and replace the task definition at every plan (hashicorp/terraform-provider-aws
            # issue 39533); an absent variable is what the app reads as empty anyway.
            "environment": [{"name": key, "value": value} for key, value in sorted(environment.items()) if value],
            "secrets": [{"name": key, "valueFrom": f"{secret_arn}:{key}::"} for key in secret_keys],
            "healthCheck": {
                "command": list(health_check.command),
                "interval": health_check.interval_seconds,
                "timeout": health_check.timeout_seconds,
                "retries": health_check.retries,
                "startPeriod": health_check.start_period_seconds,
            },
            "stopTimeout": stop_timeout_seconds,
            "readonlyRootFilesystem": True,
            "privileged": False,
            "mountPoints": [
                {"sourceVolume": volume, "containerPath": path, "readOnly": False} for volume, path in volumes.items()
            ],
            # An init process reaps zombies and forwards SIGTERM to the app for a graceful shutdown.
            "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": log_group_name,
                    "awslogs-region": region,
                    "awslogs-stream-prefix": CONTAINER_NAME,
                    # A slow log service must not block the app; the buffer bounds what can be lost.
                    "mode": "non-blocking",
                    "max-buffer-size": "25m",
                },
            },
        }
        self.task_definition = EcsTaskDefinition(
            self,
            "task",
            family=name,
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(size.cpu),
            memory=str(size.memory),
            runtime_platform=EcsTaskDefinitionRuntimePlatform(
                operating_system_family="LINUX", cpu_architecture="X86_64"
            ),
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn,
            volume=[EcsTaskDefinitionVolume(name=volume) for volume in volumes],
            container_definitions=json.dumps([self.container_definition]),
            # Each change registers a new revision and, without this, deregisters the old one. A deployment
            # that fails rolls back to the revision the service ran before (circuit breaker, deployment
            # alarms), which ECS cannot start once it is INACTIVE; skip_destroy keeps every revision
            # registered (terraform-provider-aws, internal/service/ecs/task_definition.go: the delete
            # returns without DeregisterTaskDefinition when skip_destroy is set).
            skip_destroy=True,
        )

    def _security_group(
        self, *, name: str, vpc_id: str, container_port: int, load_balancer_security_group_id: str
    ) -> None:
        self.security_group = SecurityGroup(
            self,
            "security-group",
            name=f"{name}-tasks",
            description=f"{name} tasks: requests from the load balancer only",
            vpc_id=vpc_id,
            # No in-line `ingress`/`egress` (see LoadBalancer): the rule resources below are the only rules.
        )
        VpcSecurityGroupIngressRule(
            self,
            "from-load-balancer",
            security_group_id=self.security_group.id,
            description="Requests and health checks from the load balancer",
            ip_protocol="tcp",
            from_port=container_port,
            to_port=container_port,
            referenced_security_group_id=load_balancer_security_group_id,
        )
        VpcSecurityGroupEgressRule(
            self,
            "load-balancer-to-tasks",
            security_group_id=load_balancer_security_group_id,
            description="Requests and health checks to the tasks",
            ip_protocol="tcp",
            from_port=container_port,
            to_port=container_port,
            referenced_security_group_id=self.security_group.id,
        )
        VpcSecurityGroupEgressRule(
            self,
            "https-out",
            security_group_id=self.security_group.id,
            description="HTTPS to ECR, Secrets Manager, CloudWatch Logs, Bedrock and Supabase through NAT",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
        )

    def _service(
        self,
        *,
        name: str,
        size: TaskSize,
        container_port: int,
        subnet_ids: Sequence[str],
        target_group_arn: str,
        deployment_alarm_names: Sequence[str],
        service_depends_on: Sequence[ITerraformDependable],
    ) -> None:
        self.service = EcsService(
            self,
            "service",
            name=name,
            cluster=self.cluster.arn,
            task_definition=self.task_definition.arn,
            launch_type="FARGATE",
            platform_version="LATEST",
            desired_count=size.min_tasks,
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            # Tasks that never get healthy fail the deployment (circuit breaker); tasks that get healthy and
            # then answer errors trip a deployment alarm (see ServiceAlarms.deployment_alarms). Either way
            # ECS goes back to the last COMPLETED deployment, and the apply's verify_rollout fails the stage.
            deployment_circuit_breaker=EcsServiceDeploymentCircuitBreaker(enable=True, rollback=True),
            alarms=EcsServiceAlarms(alarm_names=list(deployment_alarm_names), enable=True, rollback=True)
            if deployment_alarm_names
            else None,
            # Time for a new task to pass its first load balancer checks before ECS acts on their result.
            health_check_grace_period_seconds=30,
            load_balancer=[
                EcsServiceLoadBalancer(
                    target_group_arn=target_group_arn, container_name=CONTAINER_NAME, container_port=container_port
                )
            ],
            network_configuration=EcsServiceNetworkConfiguration(
                subnets=list(subnet_ids), security_groups=[self.security_group.id], assign_public_ip=False
            ),
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            # An apply finishes only when the new tasks are healthy and baked (or rolled back), so the
            # pipeline's tests that follow run against the version just deployed.
            wait_for_steady_state=True,
            # The target group must belong to a listener before a service can register into it. The roles'
            # policies are separate resources the task definition does not reference: without them first,
            # the first tasks start with an execution role that may not yet pull the image or read the
            # secret (and a task role without its grants), fail, and trip the circuit breaker.
            depends_on=[*service_depends_on, self.execution_policy, self.task_policy],
            # Auto scaling owns the running count once the service exists.
            lifecycle=TerraformResourceLifecycle(ignore_changes=["desired_count"]) if size.autoscaling else None,
        )

    def _scaling(self, *, name: str, size: TaskSize) -> AppautoscalingTarget | None:
        if not size.autoscaling:
            return None
        scaling_target = AppautoscalingTarget(
            self,
            "scaling-target",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=f"service/{self.cluster.name}/{self.service.name}",
            min_capacity=size.min_tasks,
            max_capacity=size.max_tasks,
        )
        AppautoscalingPolicy(
            self,
            "cpu-scaling",
            name=f"{name}-cpu",
            policy_type="TargetTrackingScaling",
            service_namespace=scaling_target.service_namespace,
            scalable_dimension=scaling_target.scalable_dimension,
            resource_id=scaling_target.resource_id,
            target_tracking_scaling_policy_configuration=AppautoscalingPolicyTargetTrackingScalingPolicyConfiguration(
                target_value=size.cpu_target_percent,
                predefined_metric_specification=AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecification(
                    predefined_metric_type="ECSServiceAverageCPUUtilization"
                ),
                # Add capacity quickly under load; give it back slowly so a burst does not flap.
                scale_out_cooldown=60,
                scale_in_cooldown=300,
            ),
        )
        return scaling_target

    def _role(
        self,
        purpose: str,
        *,
        name: str,
        description: str,
        role_path: str,
        permissions_boundary_arn: str,
        statements: Sequence[DataAwsIamPolicyDocumentStatement],
    ) -> tuple[IamRole, IamRolePolicy]:
        role = IamRole(
            self,
            f"{purpose}-role",
            name=f"{name}-{purpose}",
            path=role_path,
            description=f"{name}: {description}",
            assume_role_policy=self._trust.json,
            permissions_boundary=permissions_boundary_arn,
        )
        permissions = policy_document(self, f"{purpose}-permissions", statements)
        policy = IamRolePolicy(self, f"{purpose}-policy", role=role.name, name=purpose, policy=permissions.json)
        return role, policy
