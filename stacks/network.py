"""`<stage>-network`: the stage's VPC (R2.5)."""

from __future__ import annotations

from cdktn import TerraformOutput
from constructs import Construct

from modules.network import Network
from stacks.base import StageStack
from stacks.config import ProjectConfig, StageConfig


class NetworkStack(StageStack):
    def __init__(self, scope: Construct, *, project: ProjectConfig, stage: StageConfig) -> None:
        super().__init__(scope, project=project, stage=stage, component="network")
        prefix = stage.resource_name(project.app_name, "network")
        self.network = Network(
            self,
            "network",
            name=prefix,
            cidr=stage.vpc_cidr,
            zones=stage.availability_zones,
            nat_gateways=stage.nat_gateways,
            flow_log_group_name=project.log_group_name(stage, "vpc-flow-logs"),
            flow_log_retention_days=stage.log_retention_days,
            role_name=stage.resource_name(project.app_name, "vpc-flow-logs"),
            role_path=project.iam_path,
            permissions_boundary_arn=project.permissions_boundary_arn(stage),
            protected=stage.deletion_protection,
        )
        TerraformOutput(self, "vpc_id", value=self.network.vpc.id)
