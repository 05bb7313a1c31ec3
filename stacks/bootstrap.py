"""`bootstrap-<stage>`: what must exist in an account before any other stack can keep state there,
and what a person must fill in before the stage's first deploy."""

from __future__ import annotations

from cdktn import TerraformOutput, TerraformResourceLifecycle
from cdktn_provider_aws.route53_zone import Route53Zone
from cdktn_provider_aws.secretsmanager_secret import SecretsmanagerSecret
from cdktn_provider_aws.ssm_parameter import SsmParameter
from constructs import Construct

from modules.deploy_role import DeployRole, WorkloadBoundary
from modules.plan_role import PlanRole
from modules.state_backend import StateBackend
from names import BOOTSTRAP_VERSION, bootstrap_version_parameter
from stacks.base import StageStack, deploy_scope
from stacks.config import ProjectConfig, StageConfig

# The keys of the stage's backend secret (R5.1); its value is set out of band, never by Terraform.
SECRET_KEYS = ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_PUB_KEY")


class BootstrapStack(StageStack):
    """State bucket, lock table, workload boundary; for gamma/prod the deploy role that the stage's Apply
    assumes and the read-only plan role that the pipeline's Plan assumes; the backend's secret and, for a
    stage with a domain, its public hosted zone; the bootstrap version.

    Applied once per account by an administrator with the account's own credentials (the deploy role
    does not exist yet), first with local state, then migrated into the bucket it creates. The secret
    and the zone live here, not in the stacks that use them, so that the administrator can set the
    secret's value and delegate the domain before the pipeline's first deploy needs them.
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
        protected = stage.deletion_protection
        self.state = StateBackend(
            self,
            "state",
            bucket_name=project.state_bucket(stage),
            lock_table_name=project.lock_table(stage),
        )
        deploy_rights = deploy_scope(
            project, stage, state_bucket_arn=self.state.bucket.arn, lock_table_arn=self.state.lock_table.arn
        )
        self.boundary = WorkloadBoundary(
            self,
            "workload-boundary",
            name=project.permissions_boundary_name,
            path=project.iam_path,
            region=stage.region,
            secret_arn=deploy_rights.backend_secret_arn,
            secret_reader_arn=deploy_rights.secret_reader_arn,
        )
        TerraformOutput(self, "state_bucket", value=self.state.bucket.bucket)
        TerraformOutput(self, "lock_table", value=self.state.lock_table.name)
        if stage.cross_account_deploy:
            self.deploy_role = DeployRole(
                self,
                "deploy-role",
                deploy_scope=deploy_rights,
                pipeline_account_id=project.pipeline_stage.account_id,
                pipeline_apply_role_arn=project.pipeline_apply_role_arn(stage),
                break_glass_principals=stage.break_glass_principals,
            )
            TerraformOutput(self, "deploy_role_arn", value=self.deploy_role.role.arn)
            # What the pipeline's Plan actions and drift check assume: they run before any approval.
            self.plan_role = PlanRole(
                self,
                "plan-role",
                deploy_scope=deploy_rights,
                role_name=project.plan_role_name,
                pipeline_account_id=project.pipeline_stage.account_id,
                pipeline_plan_role_arn=project.pipeline_plan_role_arn,
                break_glass_principals=stage.break_glass_principals,
            )
            TerraformOutput(self, "plan_role_arn", value=self.plan_role.role.arn)

        # No value, ever: the administrator puts it after this apply (README "Secrets"); the stage's stack
        # reads the secret by name and sets its resource policy, which names the task execution role.
        self.backend_secret = SecretsmanagerSecret(
            self,
            "backend-secret",
            name=project.backend_secret_name(stage),
            description=f"Supabase settings of the {stage.name} backend: JSON keys {', '.join(SECRET_KEYS)}",
            recovery_window_in_days=stage.secret_recovery_window_days,
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if protected else None,
        )
        TerraformOutput(self, "backend_secret_name", value=self.backend_secret.name)

        if stage.domain_name:
            # The administrator delegates the domain to these name servers; the backend and frontend
            # stacks find the zone by name, and ACM's DNS validation waits until the delegation works.
            self.zone = Route53Zone(
                self,
                "zone",
                name=stage.domain_name,
                comment=f"Canvalo {stage.name}: delegate {stage.domain_name} to this zone's name servers",
                lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if protected else None,
            )
            TerraformOutput(self, "name_servers", value=self.zone.name_servers)

        self.version = SsmParameter(
            self,
            "bootstrap-version",
            name=bootstrap_version_parameter(project.app_name, stage.name),
            type="String",
            value=str(BOOTSTRAP_VERSION),
            description=f"Version of bootstrap-{stage.name} applied here; the pipeline refuses to deploy over an older one",
        )
