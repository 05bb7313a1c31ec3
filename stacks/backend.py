"""The API on ECS Fargate behind an ALB, its secret, scaling, alarms and dashboard (R2, R5, R11): a part of the
`<stage>` stack."""

from __future__ import annotations

import re

from cdktn import Op, TerraformVariable
from cdktn_provider_aws.data_aws_route53_zone import DataAwsRoute53Zone
from cdktn_provider_aws.data_aws_secretsmanager_secret import DataAwsSecretsmanagerSecret
from cdktn_provider_aws.provider import AwsProvider
from cdktn_provider_aws.route53_record import Route53Record, Route53RecordAlias
from cdktn_provider_aws.secretsmanager_secret_policy import SecretsmanagerSecretPolicy
from constructs import Construct

from modules.dashboard import ServiceDashboard
from modules.fargate_service import ContainerHealthCheck, FargateService, ShutdownTiming, TaskSize
from modules.iam import policy_document, statement
from modules.load_balancer import CLOUDFRONT_ORIGIN_FACING, HttpsListener, Ingress, LoadBalancer, TargetHealthCheck
from modules.network import Network
from modules.service_alarms import ServiceAlarms
from modules.static_site import ApiOrigin, DnsValidatedCertificate
from names import UNRELEASED_IMAGE_TAG
from stacks.bootstrap import SECRET_KEYS
from stacks.config import ProjectConfig, StageConfig

CONTAINER_PORT = 8000
# The same in every stage; the load balancer drains, the app finishes, ECS stops, in that order (R1.5).
SHUTDOWN = ShutdownTiming()
# The image has no curl; its Python answers the same question.
HEALTH_COMMAND = (
    "CMD",
    "python",
    "-c",
    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}/health', timeout=3)",
)
# R2.3, replaced within 60 s: the ALB takes an unresponsive task out of rotation after 2 failed checks
# 10 s apart (at most 2 x 10 + 5 s timeout = 25 s) and ECS then replaces it; the container check
# (2 x 10 + 5 = 25 s) catches a task whose app hangs even without traffic. That leaves 35 s for the
# replacement to start from the cached image, which is small, and answer /health.
TARGET_HEALTH = TargetHealthCheck(path="/health", interval_seconds=10, timeout_seconds=5, unhealthy_threshold=2)
CONTAINER_HEALTH = ContainerHealthCheck(command=HEALTH_COMMAND, interval_seconds=10, timeout_seconds=5, retries=2)
# Cross-region inference profiles (eu.anthropic..., us.anthropic..., global....) route a call to the
# foundation model in any region of their group.
INFERENCE_PROFILE = re.compile(r"^(?P<group>[a-z]{2,6})\.(?P<model>[a-z0-9-]+\..+)$")


def bedrock_model_arns(model_id: str, *, region: str, account_id: str) -> list[str]:
    """What `bedrock:InvokeModel` on `model_id` needs: the foundation model, or an inference profile
    and the model it routes to (in whichever region of its group that call lands)."""
    profile = INFERENCE_PROFILE.match(model_id)
    if profile is None:
        return [f"arn:aws:bedrock:{region}::foundation-model/{model_id}"]
    return [
        f"arn:aws:bedrock:{region}:{account_id}:inference-profile/{model_id}",
        f"arn:aws:bedrock:*::foundation-model/{profile.group('model')}",
    ]


class Backend(Construct):
    """`api_origin` is where CloudFront's `/api/*` behaviour goes: `api.<domain>` over HTTPS where the
    stage serves HTTPS, the internal ALB through a VPC origin where `private_load_balancer`, else the
    ALB's DNS name; `backend_url` is the backend's own URL (None for a private ALB, which only CloudFront
    reaches). Nothing here depends on the frontend: the CORS origins come from the stage's configuration."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project: ProjectConfig,
        stage: StageConfig,
        network: Network,
        provider: AwsProvider,
    ) -> None:
        super().__init__(scope, construct_id)
        self.project, self.stage = project, stage
        self.name = project.backend_name(stage)
        zone = (
            DataAwsRoute53Zone(self, "zone", name=stage.domain_name, private_zone=False)
            if stage.https and stage.api_domain and stage.domain_name
            else None
        )
        self.load_balancer = self._load_balancer(network, zone, provider)
        self.alb = self.load_balancer.load_balancer
        # bootstrap-<stage> creates the secret, so that its value can be set before the first deploy
        # starts a task (a plan of this stack fails until the stage is bootstrapped).
        self.secret = DataAwsSecretsmanagerSecret(self, "secret", name=project.backend_secret_name(stage))
        # Before the service: some of the alarms are the service's deployment alarms.
        self.alarms = self._alarms()
        self.alarm_topic = self.alarms.topic
        self.service = self._service(network)
        self._refuse_the_unreleased_image()
        self._secret_readable_only_by_the_execution_role()
        self._dashboard()
        self.backend_url = self._api_endpoint(zone)

    def _load_balancer(self, network: Network, zone: DataAwsRoute53Zone | None, provider: AwsProvider) -> LoadBalancer:
        stage = self.stage
        https = None
        if zone is not None and stage.api_domain:
            certificate = DnsValidatedCertificate(
                self, "certificate", domain_name=stage.api_domain, zone_id=zone.zone_id, provider=provider
            )
            https = HttpsListener(certificate_arn=certificate.arn)
        return LoadBalancer(
            self,
            "api",
            name=self.name,
            vpc_id=network.vpc.id,
            subnet_ids=[
                subnet.id
                for subnet in (network.private_subnets if stage.private_load_balancer else network.public_subnets)
            ],
            account_id=stage.account_id,
            access_log_bucket_name=stage.resource_name(self.project.app_name, f"alb-logs-{stage.account_id}"),
            target_port=CONTAINER_PORT,
            health_check=TARGET_HEALTH,
            deregistration_delay_seconds=SHUTDOWN.deregistration_delay_seconds,
            https=https,
            protected=stage.deletion_protection,
            # Internal: reachable only from inside the VPC, where CloudFront's VPC origin connects from;
            # the group admits CloudFront's origin-facing addresses, as AWS sets VPC origins up.
            internal=stage.private_load_balancer,
            ingress=Ingress(managed_prefix_lists=(CLOUDFRONT_ORIGIN_FACING,))
            if stage.private_load_balancer
            else Ingress(cidrs=("0.0.0.0/0",)),
        )

    def _refuse_the_unreleased_image(self) -> None:
        """Plan only an image some build pushed. `unreleased`, the tag of a synthesis without CANVALO_IMAGE_TAG,
        names none: a laptop's `cdktn deploy <stage>` stops before its plan and says what to deploy instead;
        the pipeline always synthesizes with Build's tag. The tag is checked as a variable's validation
        because Terraform refuses a condition that refers to no object, and checkov cannot parse `locals`
        (its terraform_json parser takes only objects as their values). The variable only carries the
        synthesized tag; the task definition names that tag itself, so overriding it changes nothing."""
        tag = TerraformVariable(
            self,
            "synthesized_image_tag",
            type="string",
            default=self.project.image_tag,
            description="The backend image tag this stack was synthesized with (CANVALO_IMAGE_TAG): checked only",
        )
        tag.add_validation(
            condition=Op.neq(tag.string_value, UNRELEASED_IMAGE_TAG),
            error_message=(
                f"The image tag '{UNRELEASED_IMAGE_TAG}' names no pushed image: push the commit so that the "
                "pipeline's Build pushes its image, then run "
                f"CANVALO_IMAGE_TAG=$(bash pipelines/image_tag.sh) cdktn deploy {self.stage.name}"
            ),
        )

    def _service(self, network: Network) -> FargateService:
        project, stage = self.project, self.stage
        return FargateService(
            self,
            "service",
            name=self.name,
            account_id=stage.account_id,
            region=stage.region,
            image=project.image_uri,
            image_repository_arn=(
                f"arn:aws:ecr:{project.pipeline_stage.region}:{project.pipeline_stage.account_id}:"
                f"repository/{project.ecr_repository_name}"
            ),
            size=TaskSize(
                cpu=stage.cpu,
                memory=stage.memory,
                min_tasks=stage.min_tasks,
                max_tasks=stage.max_tasks,
            ),
            container_port=CONTAINER_PORT,
            environment={
                "ENVIRONMENT": stage.name,
                "CORS_ORIGINS": ",".join(stage.frontend_origins),
                "PORT": str(CONTAINER_PORT),
                "AWS_REGION": stage.region,
                "BEDROCK_MODEL_ID": project.bedrock_model_id,
                "GRACEFUL_SHUTDOWN_SECONDS": str(SHUTDOWN.graceful_shutdown_seconds),
                # /health reports it: the post-deploy tests tell this release from one a rollback left running.
                "APP_VERSION": project.image_tag,
            },
            secret_arn=self.secret.arn,
            secret_keys=SECRET_KEYS,
            health_check=CONTAINER_HEALTH,
            shutdown=SHUTDOWN,
            log_group_name=project.log_group_name(stage, "backend"),
            task_policy_statements=[
                statement(
                    sid="InvokeConfiguredModel",
                    actions=["bedrock:InvokeModel"],
                    resources=bedrock_model_arns(
                        project.bedrock_model_id, region=stage.region, account_id=stage.account_id
                    ),
                )
            ],
            role_path=project.iam_path,
            permissions_boundary_arn=project.permissions_boundary_arn(stage),
            vpc_id=network.vpc.id,
            subnet_ids=[subnet.id for subnet in network.private_subnets],
            target_group_arn=self.load_balancer.target_group.arn,
            load_balancer_security_group_id=self.load_balancer.security_group.id,
            service_depends_on=[self.load_balancer.listener],
            deployment_alarm_names=[alarm.alarm_name for alarm in self.alarms.deployment_alarms],
            protected=stage.deletion_protection,
        )

    def _secret_readable_only_by_the_execution_role(self) -> None:
        # Only ECS, starting a task with the execution role, may read the value (R5.3); the task role,
        # operators and the deploy role can set it (PutSecretValue) but not read it back.
        read_only_by_execution_role = policy_document(
            self,
            "secret-policy-document",
            [
                statement(
                    sid="OnlyTheTaskExecutionRoleReads",
                    effect="Deny",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=["*"],
                    principals={"AWS": ["*"]},
                    conditions=[("StringNotEquals", "aws:PrincipalArn", [self.service.execution_role.arn])],
                )
            ],
        )
        SecretsmanagerSecretPolicy(
            self,
            "secret-policy",
            secret_arn=self.secret.arn,
            policy=read_only_by_execution_role.json,
            block_public_policy=True,
        )

    def _alarms(self) -> ServiceAlarms:
        stage = self.stage
        return ServiceAlarms(
            self,
            "alarms",
            name=self.name,
            topic_name=stage.resource_name(self.project.app_name, "alarms"),
            account_id=stage.account_id,
            region=stage.region,
            load_balancer_arn_suffix=self.alb.arn_suffix,
            target_group_arn_suffix=self.load_balancer.target_group.arn_suffix,
            healthy_tasks_threshold=stage.healthy_tasks_alarm_threshold,
        )

    def _dashboard(self) -> None:
        if self.stage.dashboard:
            ServiceDashboard(
                self,
                "dashboard",
                name=self.name,
                region=self.stage.region,
                load_balancer_arn_suffix=self.alb.arn_suffix,
                target_group_arn_suffix=self.load_balancer.target_group.arn_suffix,
                cluster_name=self.service.cluster.name,
                service_name=self.service.service.name,
            )

    def _api_endpoint(self, zone: DataAwsRoute53Zone | None) -> str | None:
        """Sets `api_origin`; returns the backend's URL: `https://api.<domain>` behind its alias record
        where the stage serves HTTPS, the ALB's own DNS name over HTTP where it is internet-facing, and
        None for a private ALB, which only CloudFront reaches."""
        alb, api_domain = self.alb, self.stage.api_domain
        if zone is not None and api_domain:
            Route53Record(
                self,
                "api-alias",
                zone_id=zone.zone_id,
                name=api_domain,
                type="A",
                alias=Route53RecordAlias(name=alb.dns_name, zone_id=alb.zone_id, evaluate_target_health=True),
            )
            self.api_origin = ApiOrigin(domain_name=api_domain, protocol="https-only")
            return f"https://{api_domain}"
        if self.stage.private_load_balancer:
            self.api_origin = ApiOrigin(domain_name=alb.dns_name, protocol="http-only", vpc_origin_load_balancer=alb)
            return None
        self.api_origin = ApiOrigin(domain_name=alb.dns_name, protocol="http-only")
        return f"http://{alb.dns_name}"
