"""The one place that decides how a stack reaches its account: provider, credentials and state."""

from __future__ import annotations

from cdktn import LocalBackend, S3Backend, S3BackendAssumeRoleConfig, TerraformStack
from cdktn_provider_aws.provider import AwsProvider, AwsProviderAssumeRole, AwsProviderDefaultTags
from constructs import Construct

from modules.deploy_role import DeployScope
from stacks.config import ProjectConfig, StageConfig


def deploy_scope(
    project: ProjectConfig, stage: StageConfig, *, state_bucket_arn: str, lock_table_arn: str
) -> DeployScope:
    """The stage's names and place that its deploy rights (modules/deploy_role.py) are held to."""
    return DeployScope(
        app_name=project.app_name,
        stage_name=stage.name,
        account_id=stage.account_id,
        region=stage.region,
        iam_path=project.iam_path,
        deploy_role_name=project.deploy_role_name,
        permissions_boundary_name=project.permissions_boundary_name,
        backend_secret_name=project.backend_secret_name(stage),
        # FargateService names its roles `<service>-<purpose>`; tests/infra/test_escalation.py checks that
        # this is the role the backend's secret policy names.
        secret_reader_role_name=f"{project.backend_name(stage)}-execution",
        state_bucket_arn=state_bucket_arn,
        lock_table_arn=lock_table_arn,
    )


class StageStack(TerraformStack):
    """A stack deployed into one stage's account, named `<stage>-<component>` unless told otherwise
    (`stack_id`: the workload stack is the bare stage name, so `cdktn deploy beta` deploys beta).

    Every AWS provider pins `allowed_account_ids`, so a plan with the wrong credentials stops before
    it reads anything. Gamma and prod assume the account's deploy role for both the provider and the
    S3 backend (R4.6); beta uses the caller's own credentials, the pipeline's account (R4.8).
    """

    def __init__(
        self,
        scope: Construct,
        *,
        project: ProjectConfig,
        stage: StageConfig,
        component: str,
        stack_id: str | None = None,
        assume_deploy_role: bool = True,
        remote_state: bool = True,
    ) -> None:
        self.stack_id = stack_id or f"{stage.name}-{component}"
        super().__init__(scope, self.stack_id)
        self.project = project
        self.stage = stage
        self.component = component
        self.deploy_role_arn = project.deploy_role_arn(stage) if assume_deploy_role else None
        self.aws = self.aws_provider("aws", region=stage.region)
        if remote_state:
            S3Backend(
                self,
                bucket=project.state_bucket(stage),
                key=f"{self.stack_id}/terraform.tfstate",
                region=stage.region,
                encrypt=True,
                dynamodb_table=project.lock_table(stage),
                use_lockfile=True,
                allowed_account_ids=[stage.account_id],
                assume_role=S3BackendAssumeRoleConfig(
                    role_arn=self.deploy_role_arn, session_name=f"terraform-state-{self.stack_id}"
                )
                if self.deploy_role_arn
                else None,
            )
        else:
            # Relative to cdktf.out/stacks/<stack>/: the project root, so a new synth cannot wipe it.
            LocalBackend(self, path=f"../../../terraform.{self.stack_id}.tfstate")

    @property
    def default_tags(self) -> dict[str, str]:
        return {
            "application": self.project.app_name,
            "stage": self.stage.name,
            "component": self.component,
            "managed-by": "cdktn",
        }

    def aws_provider(self, construct_id: str, *, region: str, alias: str | None = None) -> AwsProvider:
        """An AWS provider for this stack's account; a second one (alias) serves another region."""
        return AwsProvider(
            self,
            construct_id,
            region=region,
            alias=alias,
            allowed_account_ids=[self.stage.account_id],
            default_tags=[AwsProviderDefaultTags(tags=self.default_tags)],
            assume_role=[
                AwsProviderAssumeRole(role_arn=self.deploy_role_arn, session_name=f"terraform-{self.stack_id}")
            ]
            if self.deploy_role_arn
            else None,
        )
