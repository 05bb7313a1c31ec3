"""`bootstrap-<stage>`: what must exist in an account before any other stack can keep state there."""

from __future__ import annotations

from cdktn import TerraformOutput
from constructs import Construct

from modules.deploy_role import DeployRole, WorkloadBoundary
from modules.state_backend import StateBackend
from stacks.base import StageStack
from stacks.config import ProjectConfig, StageConfig


class BootstrapStack(StageStack):
    """State bucket, lock table, workload boundary and, for gamma/prod, the pipeline's deploy role.

    Applied once per account by an administrator with the account's own credentials (the deploy role
    does not exist yet), first with local state, then migrated into the bucket it creates.
    """

    def __init__(self, scope: Construct, *, project: ProjectConfig, stage: StageConfig) -> None:
        super().__init__(
            scope,
            project=project,
            stage=stage,
            component="bootstrap",
            stack_id=f"bootstrap-{stage.name}",
            assume_deploy_role=False,
            remote_state=project.bootstrap_state == "s3",
        )
        self.state = StateBackend(
            self,
            "state",
            bucket_name=project.state_bucket(stage),
            lock_table_name=project.lock_table(stage),
        )
        self.boundary = WorkloadBoundary(self, "workload-boundary", project=project, stage=stage)
        TerraformOutput(self, "state_bucket", value=self.state.bucket.bucket)
        TerraformOutput(self, "lock_table", value=self.state.lock_table.name)
        if stage.cross_account_deploy:
            self.deploy_role = DeployRole(
                self,
                "deploy-role",
                project=project,
                stage=stage,
                state_bucket_arn=self.state.bucket.arn,
                lock_table_arn=self.state.lock_table.arn,
            )
            TerraformOutput(self, "deploy_role_arn", value=self.deploy_role.role.arn)
