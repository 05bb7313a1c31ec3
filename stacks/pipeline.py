"""`pipeline`: the CodePipeline in the beta account that promotes a commit to beta, gamma and prod (R4.7).

Who applies this stack: an administrator of the beta account, once, with their own credentials
(`cdktn deploy pipeline`); from then on the pipeline's UpdatePipeline action, whose role may manage
only this stack's resources and state. Three things stay with an administrator: the update role itself,
creating or deleting any pipeline role, and the two boundaries (the pipeline's roles', and the deploy
role's), which no pipeline role may change (so a commit cannot widen what the pipeline may do without a
person applying it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from cdktn import TerraformOutput, TerraformResourceLifecycle
from cdktn_provider_aws.codestarconnections_connection import CodestarconnectionsConnection
from cdktn_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement
from cdktn_provider_aws.ssm_parameter import SsmParameter
from constructs import Construct

from modules.codebuild_project import BUILD_IMAGE, DEBIAN_TEST_IMAGE, CodeBuildProject, GitHubSource, ScheduledBuild
from modules.container_registry import ContainerRegistry
from modules.deploy_role import DeployScope, deploy_guards, deploy_permissions
from modules.iam import ROLE_MAINTENANCE_ACTIONS, statement
from modules.pipeline import (
    BUILDSPECS,
    PIPELINE_OWNED,
    TERRAFORM_VERSION,
    DeliveryPipeline,
    PipelineProjects,
    StageDeployment,
)
from modules.pipeline_artifacts import PipelineArtifactStore
from modules.pipeline_notifications import NotificationTopic
from modules.pipeline_roles import PipelineBoundary, ServiceRole, boundary_statements
from modules.pipeline_toolkit import PipelineToolkit, toolkit_sha256
from modules.plan_role import read_only_statements, state_lock_statements
from names import (
    NEVER_DEPLOYED,
    NOTHING_PUBLISHED,
    deployed_commit_parameter,
    drift_digest_parameter,
    parameter_arn,
    release_parameter,
)
from stacks.base import StageStack, deploy_scope
from stacks.config import ProjectConfig, StageConfig
from stacks.run_environment import run_environment

# The checkout the stack is synthesized from: the toolkit's hash and the privileged buildspecs are read here.
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
# Where the pipeline stack keeps its state in the beta state bucket (its stack id, stacks/base.py).
PIPELINE_STATE_PREFIX = "pipeline/"
# Daily, before the working day in Europe: drift found overnight is in the morning's mail.
DRIFT_SCHEDULE = "cron(0 5 * * ? *)"
# A Bake runs in the plan project: its timeout leaves this much beyond the longest bake for installing the toolkit.
BAKE_MARGIN_MINUTES = 15
# Every boundary's name ends so: one ARN pattern protects them all.
BOUNDARY_SUFFIX = "-boundary"
# Services that assume the pipeline's roles.
CODEBUILD = "codebuild.amazonaws.com"
CODEPIPELINE = "codepipeline.amazonaws.com"
EVENTS = "events.amazonaws.com"


@dataclass(frozen=True, kw_only=True)
class PipelineResources:
    """The ARNs of what the pipeline stack manages, for the role that applies it (and the other roles'
    policies that name them)."""

    bucket_arn: str
    key_arn: str
    key_alias_arn: str
    repository_arn: str
    topic_arn: str
    # `canvalo-beta-pipeline`: the pipeline, its projects, roles and schedule are named under it.
    name_prefix: str
    log_groups: str
    # The SSM parameters the deploy action and the drift check keep their state in.
    parameter_arns: tuple[str, ...]


def update_pipeline_permissions(
    *,
    arn: Callable[[str, str], str],
    region: str,
    pipeline_arn: str,
    pipeline_roles: str,
    deploy_role_arn: str,
    update_role_arn: str,
    boundary_arn: str,
    deploy_boundary_arn: str,
    plan_boundary_arn: str,
    state_bucket_arn: str,
    state_key_prefix: str,
    lock_table_arn: str,
    resources: PipelineResources,
    stage_guards: Sequence[DataAwsIamPolicyDocumentStatement],
) -> list[DataAwsIamPolicyDocumentStatement]:
    """What applying the `pipeline` stack takes (R4.4), and nothing of the stages' stacks.

    `pipeline_roles` is the pattern of the pipeline's own roles (`<prefix>-*`), which carry the pipeline
    boundary; the deploy role carries its own. `stage_guards` are the Denies every role near the stage
    carries (modules/deploy_role.py deploy_guards): with them in this policy the pipeline boundary, which
    copies every Deny of its roles, holds them too.
    """
    every_role = [pipeline_roles, deploy_role_arn]
    return [
        *_own_state_statements(state_bucket_arn, state_key_prefix, lock_table_arn),
        *_manage_the_pipeline_and_its_projects(arn, pipeline_arn, resources.name_prefix),
        *_manage_the_artifacts_registry_and_topic(resources),
        *_manage_the_rule_schedule_logs_and_parameters(arn, region, resources),
        *_manage_the_roles_within_their_boundaries(
            pipeline_roles=pipeline_roles,
            deploy_role_arn=deploy_role_arn,
            every_role=every_role,
            boundary_arn=boundary_arn,
            deploy_boundary_arn=deploy_boundary_arn,
            plan_boundary_arn=plan_boundary_arn,
        ),
        *_what_only_an_administrator_changes(update_role_arn, every_role),
        *stage_guards,
    ]


def _own_state_statements(
    state_bucket_arn: str, state_key_prefix: str, lock_table_arn: str
) -> list[DataAwsIamPolicyDocumentStatement]:
    return [
        statement(
            sid="PipelineStackState",
            actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            resources=[f"{state_bucket_arn}/{state_key_prefix}*"],
        ),
        statement(
            sid="PipelineStackStateList",
            actions=["s3:ListBucket"],
            resources=[state_bucket_arn],
            conditions=[("StringLike", "s3:prefix", [f"{state_key_prefix}*"])],
        ),
        statement(
            sid="PipelineStackLock",
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:DescribeTable"],
            resources=[lock_table_arn],
        ),
    ]


def _manage_the_pipeline_and_its_projects(
    arn: Callable[[str, str], str], pipeline_arn: str, prefix: str
) -> list[DataAwsIamPolicyDocumentStatement]:
    return [
        statement(
            sid="ManageThePipelineAndRestartIt",
            # What Terraform does with aws_codepipeline, and self_update's restart: nothing that approves,
            # overrides a condition, retries or rolls back a stage (a person's decisions). StartPipelineExecution
            # takes sourceRevisions with no condition key to bind them; the pinned toolkit (self_update)
            # restarts at the execution's own revision.
            # GetPipeline, GetPipelineExecution, GetPipelineState; the List reads (ListTagsForResource);
            # TagResource, UntagResource; StartPipelineExecution, StopPipelineExecution. Patterns, because the
            # pipeline boundary, which lists every pipeline role's actions, must stay under IAM's 6,144
            # characters. (Not "*Tag*": it would match OverrideStageCondition.)
            actions=[
                "codepipeline:GetPipeline*",
                "codepipeline:UpdatePipeline",
                "codepipeline:List*",
                "codepipeline:*TagResource",
                "codepipeline:St*PipelineExecution",
            ],
            resources=[pipeline_arn],
        ),
        statement(
            sid="ReadThePipelineProjects",
            # Read only: every change to a build project stops the self-update for an administrator
            # (plan_summary's pipeline gates), and no pipeline role but CodePipeline's starts a build. Else
            # StartBuild with a buildspecOverride, or UpdateProject, on apply-prod runs any command as
            # prod's Apply role.
            actions=["codebuild:BatchGetProjects"],
            resources=[arn("codebuild", f"project/{prefix}-*")],
        ),
        statement(
            sid="ManageTheRepositoryConnection",
            actions=["codestar-connections:*", "codeconnections:*"],
            # The connection's id is generated on creation; its name is the pipeline's to choose.
            resources=[arn("codestar-connections", "connection/*"), arn("codeconnections", "connection/*")],
        ),
    ]


def _manage_the_artifacts_registry_and_topic(resources: PipelineResources) -> list[DataAwsIamPolicyDocumentStatement]:
    return [
        statement(
            sid="ManageTheArtifacts",
            actions=["s3:*"],
            resources=[resources.bucket_arn, f"{resources.bucket_arn}/*"],
        ),
        statement(sid="ManageThePipelineKey", actions=["kms:*"], resources=[resources.key_arn]),
        statement(
            sid="ManageThePipelineKeyAlias",
            actions=["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"],
            resources=[resources.key_alias_arn],
        ),
        statement(sid="ManageTheRegistry", actions=["ecr:*"], resources=[resources.repository_arn]),
        statement(sid="ManageTheTopic", actions=["sns:*"], resources=[resources.topic_arn]),
        statement(
            sid="ManageTheTopicsSubscriptions",
            # notificationEmail's aws_sns_topic_subscription: Subscribe acts on the topic (ManageTheTopic);
            # every read (after Subscribe, and at each refresh) calls GetSubscriptionAttributes and a destroy
            # Unsubscribe, on the subscription, whose ARN is the topic's followed by `:<subscription id>`
            # (terraform-provider-aws, internal/service/sns/topic_subscription.go). The provider calls
            # SetSubscriptionAttributes only to change attributes this stack does not set.
            actions=["sns:GetSubscriptionAttributes", "sns:Unsubscribe"],
            resources=[f"{resources.topic_arn}:*"],
        ),
    ]


def _manage_the_rule_schedule_logs_and_parameters(
    arn: Callable[[str, str], str], region: str, resources: PipelineResources
) -> list[DataAwsIamPolicyDocumentStatement]:
    return [
        statement(
            sid="ManageTheNotificationRule",
            actions=["codestar-notifications:*"],
            resources=[arn("codestar-notifications", "notificationrule/*")],
        ),
        statement(
            sid="ManageTheDriftSchedule",
            actions=["events:*"],
            resources=[arn("events", f"rule/{resources.name_prefix}-*")],
        ),
        statement(
            sid="ManageThePipelineLogGroups",
            actions=["logs:*"],
            resources=[resources.log_groups, f"{resources.log_groups}:*"],
        ),
        statement(
            sid="ManageTheDriftParameters",
            actions=[
                "ssm:PutParameter",
                "ssm:GetParameter",
                "ssm:GetParameters",
                "ssm:DeleteParameter",
                "ssm:AddTagsToResource",
                "ssm:RemoveTagsFromResource",
                "ssm:ListTagsForResource",
            ],
            resources=list(resources.parameter_arns),
        ),
        statement(
            sid="ListCallsWithoutResourceScope",
            actions=[
                "logs:DescribeLogGroups",
                "kms:ListAliases",
                "ssm:DescribeParameters",
                "ec2:DescribeAccountAttributes",
            ],
            # Terraform reads log groups, aliases and parameters' metadata through list calls that take no
            # resource ARN; pike lists the account's EC2 attributes for the repository policy.
            resources=["*"],
            conditions=[("StringEquals", "aws:RequestedRegion", [region])],
        ),
    ]


def _manage_the_roles_within_their_boundaries(
    *,
    pipeline_roles: str,
    deploy_role_arn: str,
    every_role: list[str],
    boundary_arn: str,
    deploy_boundary_arn: str,
    plan_boundary_arn: str,
) -> list[DataAwsIamPolicyDocumentStatement]:
    def own_role(kind: str) -> str:
        return pipeline_roles.removesuffix("*") + kind

    return [
        statement(
            sid="ManagePipelineRoles",
            actions=ROLE_MAINTENANCE_ACTIONS,
            resources=every_role,
        ),
        statement(
            sid="ChangeRolesOnlyWithinTheBoundary",
            actions=["iam:PutRolePolicy", "iam:PutRolePermissionsBoundary"],
            resources=[pipeline_roles],
            # The plan role, under the same prefix, carries a boundary of its own (read-only, smaller).
            conditions=[("StringEquals", "iam:PermissionsBoundary", [boundary_arn, plan_boundary_arn])],
        ),
        statement(
            sid="ChangeDeployRoleWithinItsBoundary",
            actions=["iam:PutRolePolicy", "iam:PutRolePermissionsBoundary"],
            resources=[deploy_role_arn],
            conditions=[("StringEquals", "iam:PermissionsBoundary", [deploy_boundary_arn])],
        ),
        # Only the roles of what the update role may change: the pipeline's (UpdatePipeline) and the drift
        # schedule's (PutTargets). Never a project's role: a project running as apply-prod's role is prod.
        statement(
            sid="PassPipelineAndScheduleRoles",
            actions=["iam:PassRole"],
            resources=[own_role("codepipeline"), own_role("drift-schedule")],
            conditions=[("StringEquals", "iam:PassedToService", [CODEPIPELINE, EVENTS])],
        ),
        statement(
            sid="ReadBoundaries",
            actions=["iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions"],
            resources=[boundary_arn, deploy_boundary_arn, plan_boundary_arn],
        ),
    ]


def _what_only_an_administrator_changes(
    update_role_arn: str, every_role: list[str]
) -> list[DataAwsIamPolicyDocumentStatement]:
    return [
        statement(
            sid="OnlyAnAdministratorChangesTheUpdateRole",
            effect="Deny",
            actions=[
                "iam:DeleteRole",
                "iam:DeleteRolePolicy",
                "iam:PutRolePolicy",
                "iam:AttachRolePolicy",
                "iam:UpdateAssumeRolePolicy",
                "iam:PutRolePermissionsBoundary",
                "iam:DeleteRolePermissionsBoundary",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:UpdateRole",
            ],
            resources=[update_role_arn],
        ),
        # A new pipeline role, or one deleted and recreated under its name, could trust anyone: the
        # gamma and prod deploy roles trust `canvalo-pipeline-deploy` by ARN. Creating or deleting a role
        # always broadens (plan_summary: a new trust policy is an added Allow, a role's destroy is not
        # on its safe list), so self_update never applies it: an administrator does.
        statement(
            sid="OnlyAdministratorsCreateOrDeleteRoles",
            effect="Deny",
            actions=["iam:CreateRole", "iam:DeleteRole"],
            resources=every_role,
        ),
    ]


@dataclass(frozen=True)
class PipelineAccount:
    """The pipeline's account and region (the beta stage's), and the names the project gives things there."""

    project: ProjectConfig
    stage: StageConfig

    @property
    def account_id(self) -> str:
        return self.stage.account_id

    @property
    def region(self) -> str:
        return self.stage.region

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"

    def role_arn(self, name: str) -> str:
        return self.project.role_arn(self.account_id, name)

    def policy_arn(self, name: str) -> str:
        return f"arn:aws:iam::{self.account_id}:policy{self.project.iam_path}{name}"

    def parameter_arn(self, name: str) -> str:
        return parameter_arn(name, region=self.region, account_id=self.account_id)

    def log_group(self, kind: str) -> str:
        return self.project.log_group_name(self.stage, f"pipeline/{kind}")

    def log_streams(self, *kinds: str) -> list[str]:
        return [self.arn("logs", f"log-group:{self.log_group(kind)}:*") for kind in kinds]


@dataclass(frozen=True, kw_only=True)
class ProjectNames:
    """The pipeline's CodeBuild projects by kind: the buildspec each runs, its name and its ARN."""

    # Stage name -> the kind of its Apply project.
    apply_kinds: Mapping[str, str]
    buildspecs: Mapping[str, str]
    names: Mapping[str, str]
    arns: Mapping[str, str]

    @classmethod
    def of(cls, project: ProjectConfig, account: PipelineAccount, prefix: str) -> ProjectNames:
        # Each stage's Apply is its own project and role: "deploy" for the stage in this account (beta),
        # "apply-<stage>" for each cross-account stage, the only pipeline role its deploy role trusts.
        apply_kinds = {s.name: f"apply-{s.name}" if s.cross_account_deploy else "deploy" for s in project.stages}
        buildspecs = {**BUILDSPECS, **{kind: BUILDSPECS["deploy"] for kind in apply_kinds.values()}}
        names = {kind: f"{prefix}-{kind}" for kind in buildspecs}
        arns = {kind: account.arn("codebuild", f"project/{name}") for kind, name in names.items()}
        return cls(apply_kinds=apply_kinds, buildspecs=buildspecs, names=names, arns=arns)

    def buildspec(self, kind: str, toolkit: PipelineToolkit) -> str:
        """A pipeline-owned buildspec (and every Apply's) inline from this checkout, after the toolkit's check;
        any other, its path in the commit the build runs."""
        path = self.buildspecs[kind]
        if kind in PIPELINE_OWNED or kind in self.apply_kinds.values():
            return toolkit.inline_buildspec((REPOSITORY_ROOT / path).read_text(), source=path)
        return path

    def for_pipeline(self) -> PipelineProjects:
        return PipelineProjects(
            update_pipeline=self.names["update-pipeline"],
            test=self.names["test"],
            build=self.names["build"],
            plan=self.names["plan"],
            review=self.names["review"],
            apply={name: self.names[kind] for name, kind in self.apply_kinds.items()},
            post_deploy_tests=self.names["smoke"],
        )


@dataclass(frozen=True, kw_only=True)
class RoleNames:
    """The pipeline's roles by kind, and the three boundaries that cap them."""

    names: Mapping[str, str]
    # The pipeline's own roles, `<prefix>-*`; the deploy role is named apart.
    own_roles: str
    deploy_role_arn: str
    update_role_arn: str
    boundary_names: Mapping[str, str]
    boundary_arn: str
    deploy_boundary_arn: str
    plan_boundary_arn: str

    @classmethod
    def of(cls, project: ProjectConfig, account: PipelineAccount, prefix: str, apply_kinds: Iterable[str]) -> RoleNames:
        names = {
            kind: f"{prefix}-{kind}"
            for kind in ("codepipeline", "update-pipeline", "test", "build", "smoke", "plan", "review", *apply_kinds)
        }
        names["drift-schedule"] = f"{prefix}-drift-schedule"
        names["deploy"] = project.pipeline_deploy_role_name
        app = project.app_name
        boundary_names = {
            "pipeline": f"{app}-pipeline-boundary",
            "deploy": f"{app}-pipeline-deploy-boundary",
            "plan": f"{app}-pipeline-plan-boundary",
        }
        return cls(
            names=names,
            own_roles=f"arn:aws:iam::{account.account_id}:role{project.iam_path}{prefix}-*",
            deploy_role_arn=account.role_arn(names["deploy"]),
            update_role_arn=account.role_arn(names["update-pipeline"]),
            boundary_names=boundary_names,
            boundary_arn=account.policy_arn(boundary_names["pipeline"]),
            deploy_boundary_arn=account.policy_arn(boundary_names["deploy"]),
            plan_boundary_arn=account.policy_arn(boundary_names["plan"]),
        )

    @property
    def every_role(self) -> list[str]:
        return [self.own_roles, self.deploy_role_arn]


@dataclass(frozen=True, kw_only=True)
class StateParameters:
    """The SSM parameters the deploy action and the drift check keep their state in, by name and ARN."""

    # What the drift check keeps between runs, in this account: the commit each stage last applied
    # (the deploy action writes it after an Apply), and the digest of the last drift report mailed.
    deployed_commit_names: Mapping[str, str]
    deployed_commit_arns: Mapping[str, str]
    drift_digest_name: str
    drift_digest_arn: str
    # What each stage's Apply deployed (commit, image, execution, time), for `make status`.
    release_names: Mapping[str, str]
    release_arns: Mapping[str, str]

    @classmethod
    def of(cls, project: ProjectConfig, account: PipelineAccount, last_stage: str) -> StateParameters:
        app = project.app_name
        deployed_commit_names = {s.name: deployed_commit_parameter(app, s.name) for s in project.stages}
        drift_digest_name = drift_digest_parameter(app, last_stage)
        release_names = {s.name: release_parameter(app, s.name) for s in project.stages}
        return cls(
            deployed_commit_names=deployed_commit_names,
            deployed_commit_arns={name: account.parameter_arn(p) for name, p in deployed_commit_names.items()},
            drift_digest_name=drift_digest_name,
            drift_digest_arn=account.parameter_arn(drift_digest_name),
            release_names=release_names,
            release_arns={name: account.parameter_arn(p) for name, p in release_names.items()},
        )

    @property
    def arns(self) -> tuple[str, ...]:
        return (*self.deployed_commit_arns.values(), *self.release_arns.values(), self.drift_digest_arn)


@dataclass(frozen=True, kw_only=True)
class PipelineNames:
    """What the stack names before it creates anything: every name and ARN its resources and policies use."""

    account: PipelineAccount
    prefix: str
    projects: ProjectNames
    roles: RoleNames
    parameters: StateParameters
    pipeline_arn: str
    # The stage whose drift the daily check looks for.
    last_stage: str
    # Beta's deploy rights, its state bucket and lock table (the pipeline stack's state lives there too).
    beta_deploy_scope: DeployScope
    stage_plan_roles: list[str]

    @classmethod
    def of(cls, project: ProjectConfig) -> PipelineNames:
        stage = project.pipeline_stage
        account = PipelineAccount(project, stage)
        prefix = project.pipeline_name
        projects = ProjectNames.of(project, account, prefix)
        last_stage = project.stages[-1].name
        return cls(
            account=account,
            prefix=prefix,
            projects=projects,
            roles=RoleNames.of(project, account, prefix, projects.apply_kinds.values()),
            parameters=StateParameters.of(project, account, last_stage),
            pipeline_arn=account.arn("codepipeline", prefix),
            last_stage=last_stage,
            beta_deploy_scope=deploy_scope(
                project,
                stage,
                state_bucket_arn=f"arn:aws:s3:::{project.state_bucket(stage)}",
                lock_table_arn=account.arn("dynamodb", f"table/{project.lock_table(stage)}"),
            ),
            stage_plan_roles=[r for s in project.stages if (r := project.plan_role_arn(s))],
        )

    @property
    def state_bucket_arn(self) -> str:
        return self.beta_deploy_scope.state_bucket_arn

    @property
    def lock_table_arn(self) -> str:
        return self.beta_deploy_scope.lock_table_arn


@dataclass(frozen=True, kw_only=True)
class BuildSetup:
    """What every CodeBuild project of the pipeline is made with."""

    names: PipelineNames
    toolkit: PipelineToolkit
    # The `CANVALO_*` settings this stack was deployed with.
    settings: Mapping[str, str]
    key_arn: str


class PipelineStack(StageStack):
    """CodeStar connection, CodePipeline V2, CodeBuild projects and roles, ECR, artifacts, SNS, drift schedule."""

    def __init__(self, scope: Construct, *, project: ProjectConfig) -> None:
        stage = project.pipeline_stage
        super().__init__(scope, project=project, stage=stage, component="pipeline", stack_id="pipeline")
        self.prefix = project.pipeline_name
        names = PipelineNames.of(project)
        resources = self._resources_the_policies_name(names)
        self.drift_parameters = self._state_parameters(names)
        connection_arn = self._repository_connection()
        service_roles = self._roles(names, resources, connection_arn)
        self._projects(names, resources, connection_arn)
        self._pipeline(names, resources, connection_arn, service_roles["codepipeline"])
        self._outputs(resources, connection_arn)

    def _resources_the_policies_name(self, names: PipelineNames) -> PipelineResources:
        """The artifact store, the registry and the topic; their ARNs and the others the roles' policies name."""
        project, stage, account = self.project, self.stage, names.account
        prefix, account_id, app = names.prefix, account.account_id, project.app_name
        self.artifacts = PipelineArtifactStore(
            self,
            "artifacts",
            name=prefix,
            bucket_name=project.artifact_bucket,
            account_id=account_id,
            region=account.region,
            protected=stage.deletion_protection,
            # What each stage's Apply records of what it applied, for the drift check: its own stage's only.
            apply_roles={s.name: project.pipeline_apply_role_arn(s) for s in project.stages},
        )
        bucket_arn, key_arn = self.artifacts.bucket.arn, self.artifacts.key.arn
        self.registry = ContainerRegistry(
            self,
            "registry",
            name=project.ecr_repository_name,
            pullers={
                s.name: (s.account_id, f"arn:aws:iam::{s.account_id}:role{project.iam_path}{s.resource_name(app, '*')}")
                for s in project.stages
                if s.account_id != account_id
            },
            automation_roles=f"arn:aws:iam::{account_id}:role{project.iam_path}*",
        )
        self.notifications = NotificationTopic(
            self,
            "notifications",
            name=f"{prefix}-notifications",
            kms_key_id=key_arn,
            account_id=account_id,
            email=project.notification_email,
        )
        return PipelineResources(
            bucket_arn=bucket_arn,
            key_arn=key_arn,
            key_alias_arn=account.arn("kms", f"alias/{prefix}"),
            repository_arn=self.registry.repository.arn,
            topic_arn=self.notifications.topic.arn,
            name_prefix=prefix,
            log_groups=account.arn("logs", f"log-group:{account.log_group('*')}"),
            parameter_arns=names.parameters.arns,
        )

    def _state_parameters(self, names: PipelineNames) -> list[SsmParameter]:
        parameters = names.parameters
        return [
            *(
                self._placeholder_parameter(
                    f"drift-state-{stage_name}-deployed-commit",
                    parameter,
                    NEVER_DEPLOYED,
                    f"Commit the {stage_name} stage last applied; the pipeline's deploy action writes it",
                )
                for stage_name, parameter in parameters.deployed_commit_names.items()
            ),
            *(
                self._placeholder_parameter(
                    f"release-{stage_name}",
                    parameter,
                    NEVER_DEPLOYED,
                    f"What the {stage_name} stage's last Apply deployed (JSON); the deploy action writes it",
                )
                for stage_name, parameter in parameters.release_names.items()
            ),
            self._placeholder_parameter(
                "drift-state-digest",
                parameters.drift_digest_name,
                NOTHING_PUBLISHED,
                f"Digest of the last drift report of {names.last_stage} mailed; the drift check writes it",
            ),
        ]

    def _placeholder_parameter(self, construct_id: str, name: str, value: str, description: str) -> SsmParameter:
        """Created with a placeholder; its value belongs to the deploy action or the drift check."""
        return SsmParameter(
            self,
            construct_id,
            name=name,
            type="String",
            insecure_value=value,
            description=description,
            lifecycle=TerraformResourceLifecycle(ignore_changes=["insecure_value"]),
        )

    def _repository_connection(self) -> str:
        """The configured connection's ARN, or that of the one this stack creates."""
        if self.project.codestar_connection_arn:
            return self.project.codestar_connection_arn
        # Created PENDING: someone authorizes it once in the console (Developer Tools > Connections).
        self.connection = CodestarconnectionsConnection(
            self, "github-connection", name=self.project.connection_name, provider_type="GitHub"
        )
        return self.connection.arn

    def _roles(self, names: PipelineNames, resources: PipelineResources, connection_arn: str) -> dict[str, ServiceRole]:
        """Every role's policy, the boundaries built from them, then the roles."""
        project = self.project
        statements = _role_statements(project, names, resources, connection_arn)
        # `make status` from a laptop: the operators' roles may assume the read-only plan role under one session
        # name, and such a session may do nothing but assume the stages' plan roles (which trust this role alone):
        # not the artifacts, the state locks, the drift digest or the topic that the role's builds use.
        also_trusted: dict[str, list[DataAwsIamPolicyDocumentStatement]] = {}
        if project.operator_roles:
            also_trusted["plan"] = [_operators_read_through_the_plan_role(project, names.account.account_id)]
            statements["plan"].append(_operator_sessions_only_assume_the_plan_roles(project, statements["plan"]))
        self._boundaries(names, statements)
        return self._service_roles(names, statements, also_trusted)

    def _boundaries(
        self, names: PipelineNames, statements: Mapping[str, list[DataAwsIamPolicyDocumentStatement]]
    ) -> None:
        # Two ceilings, each built from the policies of the roles it caps (the deploy role's alone is
        # nearly a managed policy's 6,144 characters): the update role may rewrite the other roles'
        # policies, but not beyond their boundary, which holds every Deny they carry.
        roles = names.roles
        # One pattern for the four boundaries in this account (the pipeline's three and the workload's), so
        # that each boundary stays under a managed policy's 6,144 characters.
        protected_policies = [names.account.policy_arn(f"*{BOUNDARY_SUFFIX}")]
        for boundary in (
            roles.boundary_arn,
            roles.deploy_boundary_arn,
            roles.plan_boundary_arn,
            self.project.permissions_boundary_arn(self.stage),
        ):
            if not fnmatchcase(boundary, protected_policies[0]):
                raise ValueError(f"{boundary} is not named *{BOUNDARY_SUFFIX} under the project's IAM path")
        only_the_update_role_writes_the_pipeline_state = _only_the_update_role_writes_the_pipeline_state(names)
        self.boundaries = {
            kind: PipelineBoundary(
                self,
                construct_id,
                name=roles.boundary_names[kind],
                path=self.project.iam_path,
                description=description,
                statements=boundary_statements(
                    role_statements=[v for k, v in statements.items() if _bounded_by(k) == kind],
                    protected_policy_arns=protected_policies,
                    denied=[] if kind == "deploy" else [only_the_update_role_writes_the_pipeline_state],
                    reviewer_arn=names.account.role_arn(roles.names["review"]),
                ),
            )
            for kind, construct_id, description in (
                ("pipeline", "boundary", "Ceiling for the Canvalo pipeline's roles but the deploy and plan roles"),
                ("deploy", "deploy-boundary", "Ceiling for the Canvalo pipeline's deploy role"),
                ("plan", "plan-boundary", "Ceiling for the Canvalo pipeline's read-only plan role"),
            )
        }
        self.boundary, self.deploy_boundary = self.boundaries["pipeline"], self.boundaries["deploy"]

    def _service_roles(
        self,
        names: PipelineNames,
        statements: Mapping[str, list[DataAwsIamPolicyDocumentStatement]],
        also_trusted: Mapping[str, list[DataAwsIamPolicyDocumentStatement]],
    ) -> dict[str, ServiceRole]:
        services = {"codepipeline": CODEPIPELINE, "drift-schedule": EVENTS}
        service_roles = {
            kind: ServiceRole(
                self,
                f"{kind}-role",
                name=names.roles.names[kind],
                path=self.project.iam_path,
                description=f"Canvalo pipeline: {kind}",
                service=services.get(kind, CODEBUILD),
                statements=role_statements,
                permissions_boundary=self.boundaries[_bounded_by(kind)].policy,
                source_account=names.account.account_id,
                also_trusted=also_trusted.get(kind, ()),
            )
            for kind, role_statements in statements.items()
        }
        self.roles = {kind: service_role.role for kind, service_role in service_roles.items()}
        return service_roles

    def _projects(self, names: PipelineNames, resources: PipelineResources, connection_arn: str) -> None:
        project = self.project
        setup = BuildSetup(
            names=names,
            toolkit=PipelineToolkit(toolkit_sha256(REPOSITORY_ROOT)),
            settings=project.environment_settings,
            key_arn=resources.key_arn,
        )
        terraform = {"TERRAFORM_VERSION": TERRAFORM_VERSION}
        self.projects = {
            "update-pipeline": self._codebuild(
                setup,
                "update-pipeline",
                role="update-pipeline",
                environment={**terraform, "PIPELINE_NAME": names.prefix},
            ),
            # `make test` runs pytest, checkov and the browser tests: the medium size keeps it in minutes.
            # It tests the repository's own fixture configuration, never the administrator's settings.
            "test": self._codebuild(
                setup,
                "test",
                role="test",
                compute_type="BUILD_GENERAL1_MEDIUM",
                image=DEBIAN_TEST_IMAGE,
                administrator_settings=False,
            ),
            "build": self._codebuild(
                setup,
                "build",
                role="build",
                compute_type="BUILD_GENERAL1_MEDIUM",
                # docker build needs the Docker daemon, which only privileged mode provides.
                privileged=True,
                environment={"ECR_REPOSITORY_URI": self.registry.repository.repository_url},
            ),
            # Plan is read-only however long a stage's refresh takes; the project also runs each Bake.
            "plan": self._codebuild(
                setup,
                "plan",
                role="plan",
                # It plans and bakes every stage, so it gets every stage's run-time values, and the artifact
                # bucket, where it puts the summary the approval links to (pipelines/publish_summary.py).
                environment={**terraform, **run_environment(project, project.stages)},
                timeout_minutes=max([60, *(s.bake_minutes + BAKE_MARGIN_MINUTES for s in project.stages)]),
            ),
            # Answers a stage's approval when its plan needs no person; waits a few minutes for its token at most.
            # The pinned toolkit's install takes TERRAFORM_VERSION in every project that runs it.
            "review": self._codebuild(
                setup,
                "review",
                role="review",
                environment={
                    **terraform,
                    "PIPELINE_NAME": names.prefix,
                    "NOTIFICATION_TOPIC_ARN": self.notifications.topic.arn,
                },
                timeout_minutes=15,
            ),
            # A CloudFront update inside one apply can take most of an hour.
            **{
                kind: self._codebuild(
                    setup,
                    kind,
                    role=kind,
                    environment={
                        **terraform,
                        **_who_approves(project.stage(name), names),
                        **run_environment(project, [project.stage(name)]),
                    },
                    timeout_minutes=120,
                )
                for name, kind in names.projects.apply_kinds.items()
            },
            "smoke": self._codebuild(setup, "smoke", role="smoke", timeout_minutes=20),
        }
        # Outside the pipeline, so it clones the branch itself (for the toolkit, which it runs only if pinned); it
        # plans the stack prod's last Apply recorded as the plan role, which reads prod through prod's plan role.
        # CodeBuild refuses a project whose source authenticates through a connection that is not AVAILABLE, and
        # the connection this stack creates starts PENDING until a person authorizes it: the project and its
        # schedule wait for `connectionAvailable`.
        if project.connection_available:
            self._drift_check(setup, terraform, resources, connection_arn)

    def _drift_check(
        self, setup: BuildSetup, terraform: dict[str, str], resources: PipelineResources, connection_arn: str
    ) -> None:
        names = setup.names
        drift = self._codebuild(
            setup,
            "drift",
            role="plan",
            environment={
                **terraform,
                "STAGE": names.last_stage,
                "NOTIFICATION_TOPIC_ARN": resources.topic_arn,
                # drift_failure.sh's deduplication, which cannot load the configuration for the name.
                "DRIFT_DIGEST_PARAMETER": names.parameters.drift_digest_name,
                **run_environment(self.project, [self.project.stage(names.last_stage)]),
            },
            github_source=GitHubSource(
                repository=self.project.repository, branch=self.project.branch, connection_arn=connection_arn
            ),
        )
        self.projects["drift"] = drift
        ScheduledBuild(
            self,
            "drift-schedule",
            name=f"{names.prefix}-drift",
            description=f"Daily plan-only check that {names.last_stage} still matches the code",
            schedule_expression=DRIFT_SCHEDULE,
            project_arn=drift.project.arn,
            role_arn=self.roles["drift-schedule"].arn,
        )

    def _codebuild(
        self,
        setup: BuildSetup,
        kind: str,
        *,
        role: str,
        environment: dict[str, str] | None = None,
        privileged: bool = False,
        compute_type: str = "BUILD_GENERAL1_SMALL",
        timeout_minutes: int = 60,
        github_source: GitHubSource | None = None,
        image: str = BUILD_IMAGE,
        administrator_settings: bool = True,
    ) -> CodeBuildProject:
        """`administrator_settings`: the project also gets the `CANVALO_*` settings this stack was
        deployed with, so every synth and config load in it sees them and a self-update keeps them."""
        if administrator_settings:
            clashes = setup.settings.keys() & (environment or {}).keys()
            # A raise, not an assert: cdktf.json runs the app with `python -O`.
            if clashes:
                raise ValueError(f"the {kind} project sets {', '.join(sorted(clashes))} itself")
            environment = {**(environment or {}), **setup.settings}
        projects = setup.names.projects
        return CodeBuildProject(
            self,
            f"{kind}-project",
            name=projects.names[kind],
            description=f"Canvalo pipeline: runs {projects.buildspecs[kind]}",
            buildspec=projects.buildspec(kind, setup.toolkit),
            service_role_arn=self.roles[role].arn,
            kms_key_arn=setup.key_arn,
            log_group_name=setup.names.account.log_group(kind),
            environment=environment,
            privileged=privileged,
            compute_type=compute_type,
            timeout_minutes=timeout_minutes,
            github_source=github_source,
            image=image,
        )

    def _pipeline(
        self,
        names: PipelineNames,
        resources: PipelineResources,
        connection_arn: str,
        codepipeline_role: ServiceRole,
    ) -> None:
        self.pipeline = DeliveryPipeline(
            self,
            "pipeline",
            name=names.prefix,
            role_arn=self.roles["codepipeline"].arn,
            artifact_bucket=self.artifacts.bucket.bucket,
            kms_key_arn=resources.key_arn,
            connection_arn=connection_arn,
            repository=self.project.repository,
            branch=self.project.branch,
            projects=names.projects.for_pipeline(),
            deployments=[_stage_deployment(s) for s in self.project.stages],
            # The projects its actions run (all but drift, which runs outside it) and its role's grants.
            depends_on=[
                *(built.project for kind, built in self.projects.items() if kind != "drift"),
                codepipeline_role.policy,
            ],
        ).pipeline
        self.notifications.notify_on_pipeline_events(
            "pipeline-events", name=f"{names.prefix}-events", pipeline_arn=self.pipeline.arn
        )

    def _outputs(self, resources: PipelineResources, connection_arn: str) -> None:
        TerraformOutput(self, "pipeline_name", value=self.pipeline.name)
        TerraformOutput(self, "connection_arn", value=connection_arn)
        TerraformOutput(self, "ecr_repository_url", value=self.registry.repository.repository_url)
        TerraformOutput(self, "artifact_bucket", value=self.artifacts.bucket.bucket)
        TerraformOutput(self, "notification_topic_arn", value=resources.topic_arn)


def _stage_deployment(stage: StageConfig) -> StageDeployment:
    return StageDeployment(
        name=stage.name,
        approval_before_apply=stage.approval_before_apply,
        post_deploy_tests=stage.post_deploy_tests,
        bake_minutes=stage.bake_minutes,
        deployment_window=stage.deployment_window,
        deployment_window_time_zone=stage.deployment_window_time_zone,
    )


def _who_approves(stage: StageConfig, names: PipelineNames) -> dict[str, str]:
    """What the stage's Apply checks its approval against (pipelines/approval_check.py): in the Apply project's
    own environment, so that changing who may approve what is a build-project change, an administrator's."""
    deployment = _stage_deployment(stage)
    return {
        "PIPELINE_NAME": names.prefix,
        "APPROVAL": deployment.approval,
        "APPROVER_ROLES": ",".join(stage.approver_roles),
        "REVIEW_ROLE": names.roles.names["review"],
        "PERSON_APPROVES": deployment.person_approves,
    }


def _role_statements(
    project: ProjectConfig, names: PipelineNames, resources: PipelineResources, connection_arn: str
) -> dict[str, list[DataAwsIamPolicyDocumentStatement]]:
    """Each pipeline role's policy, by role kind (the order the roles are created in)."""
    account = names.account
    use_connection = _use_the_connection(connection_arn)
    never_write_the_pipeline_state = _never_write_the_pipeline_state(names.state_bucket_arn)
    # Beta's Apply deploys with this account's rights: these keep it off the pipeline's own resources and state.
    pipeline_guards = [_never_touch_the_pipeline(names, resources), never_write_the_pipeline_state]
    return {
        "codepipeline": _codepipeline_statements(names, resources, use_connection),
        "update-pipeline": _update_pipeline_statements(names, resources),
        # The test project runs the repository's own tests: no deploy rights, no role to assume.
        "test": _codebuild_basics(account, resources, "test", writes_artifacts=False),
        "build": _build_statements(account, resources),
        "smoke": _codebuild_basics(account, resources, "smoke", writes_artifacts=False),
        # Every Plan and the drift check: reads beta and, through their plan roles, gamma and prod; writes
        # nothing of any stage but its state locks.
        "plan": _plan_statements(names, resources, use_connection),
        "review": _review_statements(project, names, resources),
        **{
            kind: [
                *_codebuild_basics(account, resources, kind, writes_artifacts=True),
                *_apply_statements(project.stage(name), project=project, names=names, pipeline_guards=pipeline_guards),
            ]
            for name, kind in names.projects.apply_kinds.items()
        },
        "drift-schedule": [
            statement(
                sid="StartTheDriftCheck", actions=["codebuild:StartBuild"], resources=[names.projects.arns["drift"]]
            )
        ],
    }


def _bounded_by(kind: str) -> str:
    """Which roles each boundary caps: the deploy role and the plan role each have their own, the rest share one."""
    return kind if kind in ("deploy", "plan") else "pipeline"


def _codebuild_basics(
    account: PipelineAccount, resources: PipelineResources, *log_kinds: str, writes_artifacts: bool
) -> list[DataAwsIamPolicyDocumentStatement]:
    """Every CodeBuild role: its own log groups, and the artifacts its actions read (and write). The writes are on
    the whole bucket, as CodePipeline's artifact folder is not part of its reference; `applied/<stage>/`, which
    the drift check plans, is fenced by the bucket's policy instead: only that stage's Apply role writes there
    (modules/pipeline_artifacts.py)."""
    object_actions = ["s3:GetObject", "s3:GetObjectVersion"]
    key_actions = ["kms:Decrypt", "kms:DescribeKey"]
    if writes_artifacts:
        object_actions.append("s3:PutObject")
        key_actions += ["kms:Encrypt", "kms:GenerateDataKey*"]
    return [
        statement(
            sid="WriteOwnLogs",
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=account.log_streams(*log_kinds),
        ),
        statement(sid="PipelineArtifacts", actions=object_actions, resources=[f"{resources.bucket_arn}/*"]),
        statement(
            sid="PipelineArtifactBucket",
            actions=["s3:GetBucketLocation", "s3:GetBucketAcl"],
            resources=[resources.bucket_arn],
        ),
        statement(sid="PipelineArtifactKey", actions=key_actions, resources=[resources.key_arn]),
    ]


def _use_the_connection(connection_arn: str) -> DataAwsIamPolicyDocumentStatement:
    return statement(
        sid="UseTheRepositoryConnection",
        actions=[
            "codestar-connections:UseConnection",
            "codeconnections:UseConnection",
            "codestar-connections:GetConnectionToken",
            "codeconnections:GetConnectionToken",
        ],
        resources=[connection_arn],
    )


def _never_write_the_pipeline_state(state_bucket_arn: str) -> DataAwsIamPolicyDocumentStatement:
    return statement(
        sid="NeverWriteThePipelineState",
        effect="Deny",
        actions=["s3:PutObject", "s3:DeleteObject"],
        resources=[f"{state_bucket_arn}/{PIPELINE_STATE_PREFIX}*"],
    )


def _only_the_update_role_writes_the_pipeline_state(names: PipelineNames) -> DataAwsIamPolicyDocumentStatement:
    # The pipeline's roles may be given s3:* (the update role manages the artifact bucket with it).
    never_write_the_pipeline_state = _never_write_the_pipeline_state(names.state_bucket_arn)
    return statement(
        sid="OnlyTheUpdateRoleWritesThePipelineState",
        effect="Deny",
        actions=never_write_the_pipeline_state.actions or [],
        resources=never_write_the_pipeline_state.resources or [],
        conditions=[("ArnNotEquals", "aws:PrincipalArn", [names.roles.update_role_arn])],
    )


def _never_touch_the_pipeline(names: PipelineNames, resources: PipelineResources) -> DataAwsIamPolicyDocumentStatement:
    return statement(
        sid="NeverTouchThePipeline",
        effect="Deny",
        # The beta deploy permissions reach every `canvalo-beta-*` role, bucket, topic, key
        # and log group in this account; the pipeline's own are not the deploy's to change.
        actions=[
            "iam:*",
            "s3:DeleteBucket",
            "s3:PutBucketPolicy",
            "s3:DeleteBucketPolicy",
            "s3:PutLifecycleConfiguration",
            "s3:PutEncryptionConfiguration",
            "kms:ScheduleKeyDeletion",
            "kms:DisableKey",
            "kms:PutKeyPolicy",
            "sns:DeleteTopic",
            "sns:SetTopicAttributes",
            "logs:DeleteLogGroup",
            "logs:PutRetentionPolicy",
        ],
        resources=[
            *names.roles.every_role,
            names.roles.boundary_arn,
            resources.bucket_arn,
            resources.key_arn,
            resources.topic_arn,
            resources.log_groups,
        ],
    )


def _codepipeline_statements(
    names: PipelineNames, resources: PipelineResources, use_connection: DataAwsIamPolicyDocumentStatement
) -> list[DataAwsIamPolicyDocumentStatement]:
    return [
        statement(
            sid="PipelineArtifacts",
            actions=["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
            resources=[f"{resources.bucket_arn}/*"],
        ),
        statement(
            sid="PipelineArtifactBucket",
            actions=["s3:GetBucketVersioning", "s3:GetBucketLocation"],
            resources=[resources.bucket_arn],
        ),
        statement(
            sid="PipelineArtifactKey",
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:DescribeKey"],
            resources=[resources.key_arn],
        ),
        use_connection,
        statement(
            sid="RunThePipelinesBuilds",
            actions=["codebuild:StartBuild", "codebuild:BatchGetBuilds", "codebuild:StopBuild"],
            resources=[arn for kind, arn in names.projects.arns.items() if kind != "drift"],
        ),
    ]


def _update_pipeline_statements(
    names: PipelineNames, resources: PipelineResources
) -> list[DataAwsIamPolicyDocumentStatement]:
    roles, state_bucket_arn = names.roles, names.state_bucket_arn
    return [
        *_codebuild_basics(names.account, resources, "update-pipeline", writes_artifacts=False),
        *update_pipeline_permissions(
            arn=names.account.arn,
            region=names.account.region,
            pipeline_arn=names.pipeline_arn,
            pipeline_roles=roles.own_roles,
            deploy_role_arn=roles.deploy_role_arn,
            update_role_arn=roles.update_role_arn,
            boundary_arn=roles.boundary_arn,
            deploy_boundary_arn=roles.deploy_boundary_arn,
            plan_boundary_arn=roles.plan_boundary_arn,
            state_bucket_arn=state_bucket_arn,
            state_key_prefix=PIPELINE_STATE_PREFIX,
            lock_table_arn=names.lock_table_arn,
            resources=resources,
            stage_guards=[
                *deploy_guards(names.beta_deploy_scope),
                # The beta stacks' state is the deploy role's alone.
                statement(
                    sid="NeverWriteTheStagesState",
                    effect="Deny",
                    actions=["s3:PutObject", "s3:DeleteObject"],
                    resources=[f"{state_bucket_arn}/{names.beta_deploy_scope.stage_name}/*"],
                ),
            ],
        ),
    ]


def _build_statements(
    account: PipelineAccount, resources: PipelineResources
) -> list[DataAwsIamPolicyDocumentStatement]:
    return [
        *_codebuild_basics(account, resources, "build", writes_artifacts=True),
        statement(
            sid="RegistryLogin",
            actions=["ecr:GetAuthorizationToken"],
            # GetAuthorizationToken is account-wide: it takes no resource ARN.
            resources=["*"],
        ),
        statement(
            sid="PushTheBackendImage",
            actions=[
                "ecr:BatchCheckLayerAvailability",
                "ecr:InitiateLayerUpload",
                "ecr:UploadLayerPart",
                "ecr:CompleteLayerUpload",
                "ecr:PutImage",
                "ecr:BatchGetImage",
                "ecr:DescribeImages",
            ],
            resources=[resources.repository_arn],
        ),
    ]


def _plan_statements(
    names: PipelineNames, resources: PipelineResources, use_connection: DataAwsIamPolicyDocumentStatement
) -> list[DataAwsIamPolicyDocumentStatement]:
    beta = names.beta_deploy_scope
    return [
        *_codebuild_basics(names.account, resources, "plan", "drift", writes_artifacts=True),
        *read_only_statements(deploy_permissions(beta)),
        *state_lock_statements(beta),
        statement(sid="AssumeStagePlanRoles", actions=["sts:AssumeRole"], resources=names.stage_plan_roles),
        # The preflight before each stage's plan checks that the image it will run was pushed.
        statement(
            sid="FindTheReleasedImage",
            actions=["ecr:DescribeImages"],
            resources=[resources.repository_arn],
        ),
        statement(sid="ReportDrift", actions=["sns:Publish"], resources=[resources.topic_arn]),
        # The drift project checks the commit the last stage applied (it reads the stack JSON that Apply recorded,
        # `applied/<last stage>/`, with the artifact grant above) and mails each report once.
        statement(
            sid="ReadTheCheckedStagesCommit",
            actions=["ssm:GetParameter"],
            resources=[names.parameters.deployed_commit_arns[names.last_stage]],
        ),
        statement(
            sid="RememberTheLastDriftReport",
            actions=["ssm:GetParameter", "ssm:PutParameter"],
            resources=[names.parameters.drift_digest_arn],
        ),
        use_connection,
        # Not kms:Decrypt, as the stage plan roles deny: this role reads the artifacts with the pipeline's key.
        statement(
            sid="NeverReadSecretValues",
            effect="Deny",
            actions=["secretsmanager:GetSecretValue"],
            resources=["*"],
        ),
    ]


def _apply_statements(
    target: StageConfig,
    *,
    project: ProjectConfig,
    names: PipelineNames,
    pipeline_guards: Sequence[DataAwsIamPolicyDocumentStatement],
) -> list[DataAwsIamPolicyDocumentStatement]:
    """A stage's Apply: beta's deploys with this account's rights (R4.8); a cross-account stage's may
    only assume that stage's deploy role (R4.6). Each records the commit it applied, and one after an
    approval reads who gave it."""
    deploy_role = project.deploy_role_arn(target)
    release_arn = names.parameters.release_arns[target.name]
    found = (
        [
            statement(
                # Alike for every stage but its resource, so the boundary holds them as one statement (boundary_statements).
                sid="AssumeTheStageDeployRole",
                actions=["sts:AssumeRole"],
                resources=[deploy_role],
            )
        ]
        if deploy_role
        else [*deploy_permissions(names.beta_deploy_scope), *pipeline_guards]
    )
    found.append(
        statement(
            sid="RecordTheDeployedCommit",
            actions=["ssm:PutParameter"],
            resources=[names.parameters.deployed_commit_arns[target.name], release_arn],
        )
    )
    # The last verified release, which a failed smoke check restores (pipelines/drift.py previous).
    found.append(statement(sid="ReadTheLastVerifiedRelease", actions=["ssm:GetParameter"], resources=[release_arn]))
    found.append(
        statement(sid="ReadWhoApproved", actions=["codepipeline:ListActionExecutions"], resources=[names.pipeline_arn])
    )
    return found


def _review_statements(
    project: ProjectConfig, names: PipelineNames, resources: PipelineResources
) -> list[DataAwsIamPolicyDocumentStatement]:
    """Review: answer the stages' approvals (Apply accepts its answer only for a plan that needs no person)."""
    return [
        *_codebuild_basics(names.account, resources, "review", writes_artifacts=False),
        statement(
            sid="FindTheApprovalsToken", actions=["codepipeline:GetPipelineState"], resources=[names.pipeline_arn]
        ),
        statement(
            sid="AnswerTheStagesApprovals",
            actions=["codepipeline:PutApprovalResult"],
            # An approval action's ARN is `<pipeline ARN>/<stage>/<action>`
            # (https://docs.aws.amazon.com/codepipeline/latest/userguide/approvals-iam-permissions.html).
            resources=[f"{names.pipeline_arn}/{_stage_deployment(s).approval}" for s in project.stages],
        ),
        statement(sid="MailTheApprovers", actions=["sns:Publish"], resources=[resources.topic_arn]),
        # Publishing to a topic encrypted with a customer managed key takes GenerateDataKey and Decrypt on
        # that key (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html); Decrypt is in the
        # basics.
        statement(sid="EncryptTheMail", actions=["kms:GenerateDataKey*"], resources=[resources.key_arn]),
    ]


def _operators_read_through_the_plan_role(project: ProjectConfig, account_id: str) -> DataAwsIamPolicyDocumentStatement:
    return statement(
        sid="OperatorsReadThroughThePlanRole",
        # A source identity set by the operator's identity provider must be passed on (IAM User Guide,
        # "Permissions required to set source identity").
        actions=["sts:AssumeRole", "sts:SetSourceIdentity"],
        resources=[],
        principals={"AWS": [f"arn:aws:iam::{account_id}:root"]},
        conditions=[
            ("ArnLike", "aws:PrincipalArn", list(project.operator_role_patterns)),
            ("StringEquals", "sts:RoleSessionName", [project.status_session_name]),
        ],
    )


def _operator_sessions_only_assume_the_plan_roles(
    project: ProjectConfig, plan_statements: Sequence[DataAwsIamPolicyDocumentStatement]
) -> DataAwsIamPolicyDocumentStatement:
    used = {a.split(":")[0] for s in plan_statements if s.effect == "Allow" for a in s.actions or []}
    return statement(
        sid="OperatorSessionsOnlyAssumeThePlanRoles",
        effect="Deny",
        actions=[f"{service}:*" for service in sorted(used - {"sts"})],
        # Every action of every service the role may use but STS, wherever.
        resources=["*"],
        # A role session's aws:userid is `<role id>:<session name>`.
        conditions=[("StringLike", "aws:userid", [f"*:{project.status_session_name}"])],
    )
