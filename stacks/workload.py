"""`<stage>`: everything a stage runs, in one state: its network, backend and frontend (R2, R3, R5, R8, R11).

One plan covers the whole stage, so the frontend's `/api/*` origin is a plain reference to the backend's
load balancer: no remote state between the parts, and no plan waits on another's outputs.
"""

from __future__ import annotations

from cdktn import TerraformOutput
from cdktn_provider_aws.provider import AwsProvider
from constructs import Construct

from stacks.backend import Backend
from stacks.base import StageStack
from stacks.config import ProjectConfig, StageConfig
from stacks.frontend import Frontend
from stacks.network import stage_network


class WorkloadStack(StageStack):
    def __init__(self, scope: Construct, *, project: ProjectConfig, stage: StageConfig) -> None:
        super().__init__(scope, project=project, stage=stage, component="workload", stack_id=stage.name)
        self.network = stage_network(self, project=project, stage=stage)
        # "api", not "backend": the S3 backend construct holds that id in every stack.
        self.backend = Backend(self, "api", project=project, stage=stage, network=self.network, provider=self.aws)
        self.frontend = Frontend(
            self,
            "frontend",
            project=project,
            stage=stage,
            api_origin=self.backend.api_origin,
            regional_provider=self._regional_provider,
        )
        self._outputs()

    def _regional_provider(self, region: str, alias: str) -> AwsProvider:
        return self.aws_provider(f"aws-{region}", region=region, alias=alias)

    def _outputs(self) -> None:
        # The names pipelines/terraform_stage.py exports to the deploy and test actions, and those
        # pipelines/verify_rollout.py reads to check that the service runs what was applied.
        backend, site = self.backend, self.frontend.site
        # A private ALB has no URL of its own: the backend answers under CloudFront's /api/* (/api/health,
        # /api/v1/...), as it does for the pages.
        TerraformOutput(self, "backend_url", value=backend.backend_url or f"{self.frontend.site_url}/api")
        TerraformOutput(self, "backend_alarm_topic_arn", value=backend.alarm_topic.arn)
        TerraformOutput(self, "backend_secret_name", value=backend.secret.name)
        TerraformOutput(self, "backend_cluster_name", value=backend.service.cluster.name)
        TerraformOutput(self, "backend_service_name", value=backend.service.service.name)
        TerraformOutput(self, "backend_task_definition_arn", value=backend.service.task_definition.arn)
        TerraformOutput(self, "vpc_id", value=self.network.vpc.id)
        TerraformOutput(self, "frontend_url", value=self.frontend.site_url)
        TerraformOutput(self, "frontend_bucket", value=site.bucket.bucket.bucket)
        TerraformOutput(self, "frontend_distribution_id", value=site.distribution.id)
        TerraformOutput(self, "frontend_distribution_domain_name", value=site.distribution.domain_name)
