"""The stage's VPC (R2.5): a part of the `<stage>` stack."""

from __future__ import annotations

from constructs import Construct

from modules.network import Network
from stacks.config import ProjectConfig, StageConfig


def stage_network(scope: Construct, *, project: ProjectConfig, stage: StageConfig) -> Network:
    return Network(
        scope,
        "network",
        name=stage.resource_name(project.app_name, "network"),
        cidr=stage.vpc_cidr,
        nat_gateways=stage.nat_gateways,
        flow_log_group_name=project.log_group_name(stage, "vpc-flow-logs"),
        role_name=stage.resource_name(project.app_name, "vpc-flow-logs"),
        role_path=project.iam_path,
        permissions_boundary_arn=project.permissions_boundary_arn(stage),
        protected=stage.deletion_protection,
    )
