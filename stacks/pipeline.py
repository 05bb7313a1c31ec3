"""`pipeline`: the CodePipeline in the beta account that promotes a commit to beta, gamma and prod (R4.7).

Who applies this stack: an administrator of the beta account, once, with their own credentials
(`cdktn deploy pipeline`); from then on the pipeline's UpdatePipeline action, whose role may manage
only this stack's resources and state. Three things stay with an administrator: the update role itself,
creating or deleting any pipeline role, and the two boundaries (the pipeline's roles', and the deploy
role's), which no pipeline role may change (so a commit cannot widen what the pipeline may do without a
person applying it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cdktn import TerraformOutput, TerraformResourceLifecycle
from cdktn_provider_aws.codestarconnections_connection import CodestarconnectionsConnection
from cdktn_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement
from cdktn_provider_aws.ssm_parameter import SsmParameter
from constructs import Construct

from modules.codebuild_project import BUILD_IMAGE, DEBIAN_TEST_IMAGE, CodeBuildProject, GitHubSource, ScheduledBuild
from modules.container_registry import ContainerRegistry
from modules.deploy_role import deploy_guards, deploy_permissions
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
from pipelines.drift_parameters import (
    NEVER_DEPLOYED,
    NOTHING_PUBLISHED,
    deployed_commit_parameter,
    drift_digest_parameter,
    parameter_arn,
    release_parameter,
)
from stacks.base import StageStack, deploy_scope
from stacks.config import ProjectConfig, StageConfig

# The checkout the stack is synthesized from: the toolkit's hash and the privileged buildspecs are read here.
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
# Where the pipeline stack keeps its state in the beta state bucket (its stack id, stacks/base.py).
PIPELINE_STATE_PREFIX = "pipeline/"
# Daily, before the working day in Europe: drift found overnight is in the morning's mail.
DRIFT_SCHEDULE = "cron(0 5 * * ? *)"
# A Bake runs in the plan project: its timeout leaves this much beyond the longest bake for installing the toolkit.
BAKE_MARGIN_MINUTES = 15
# Services that assume the pipeline's roles.
CODEBUILD = "codebuild.amazonaws.com"
CODEPIPELINE = "codepipeline.amazonaws.com"
EVENTS = "events.amazonaws.com"


@dataclass(frozen=True, kw_only=True)
class PipelineResources:
    """The ARNs of what the pipeline stack manages, for the role that applies it."""

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
    prefix = resources.name_prefix
    every_role = [pipeline_roles, deploy_role_arn]
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
        statement(
            sid="ManageThePipelineAndRestartIt",
            actions=["codepipeline:*"],
            resources=[pipeline_arn, f"{pipeline_arn}/*"],
        ),
        statement(
            sid="ManageThePipelineProjects",
            actions=["codebuild:*"],
            resources=[arn("codebuild", f"project/{prefix}-*")],
        ),
        statement(
            sid="ManageTheRepositoryConnection",
            actions=["codestar-connections:*", "codeconnections:*"],
            # The connection's id is generated on creation; its name is the pipeline's to choose.
            resources=[arn("codestar-connections", "connection/*"), arn("codeconnections", "connection/*")],
        ),
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
        statement(
            sid="ManageTheNotificationRule",
            actions=["codestar-notifications:*"],
            resources=[arn("codestar-notifications", "notificationrule/*")],
        ),
        statement(
            sid="ManageTheDriftSchedule",
            actions=["events:*"],
            resources=[arn("events", f"rule/{prefix}-*")],
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
        statement(
            sid="ManageThePipelineRoles",
            actions=ROLE_MAINTENANCE_ACTIONS,
            resources=every_role,
        ),
        statement(
            sid="ChangePipelineRolesOnlyWithinTheBoundary",
            actions=["iam:PutRolePolicy", "iam:PutRolePermissionsBoundary"],
            resources=[pipeline_roles],
            # The plan role, under the same prefix, carries a boundary of its own (read-only, smaller).
            conditions=[("StringEquals", "iam:PermissionsBoundary", [boundary_arn, plan_boundary_arn])],
        ),
        statement(
            sid="ChangeTheDeployRoleOnlyWithinItsBoundary",
            actions=["iam:PutRolePolicy", "iam:PutRolePermissionsBoundary"],
            resources=[deploy_role_arn],
            conditions=[("StringEquals", "iam:PermissionsBoundary", [deploy_boundary_arn])],
        ),
        statement(
            sid="PassPipelineRolesToTheirServices",
            actions=["iam:PassRole"],
            resources=every_role,
            conditions=[("StringEquals", "iam:PassedToService", [CODEBUILD, CODEPIPELINE, EVENTS])],
        ),
        statement(
            sid="ReadTheBoundaries",
            actions=["iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions"],
            resources=[boundary_arn, deploy_boundary_arn, plan_boundary_arn],
        ),
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
            sid="OnlyAnAdministratorCreatesOrDeletesPipelineRoles",
            effect="Deny",
            actions=["iam:CreateRole", "iam:DeleteRole"],
            resources=every_role,
        ),
        *stage_guards,
    ]


class PipelineStack(StageStack):
    """CodeStar connection, CodePipeline V2, CodeBuild projects and roles, ECR, artifacts, SNS, drift schedule."""

    def __init__(self, scope: Construct, *, project: ProjectConfig) -> None:
        stage = project.pipeline_stage
        super().__init__(scope, project=project, stage=stage, component="pipeline", stack_id="pipeline")
        app, account, region = project.app_name, stage.account_id, stage.region
        self.prefix = prefix = project.pipeline_name

        def arn(service: str, resource: str) -> str:
            return f"arn:aws:{service}:{region}:{account}:{resource}"

        def role_arn(name: str) -> str:
            return project.role_arn(account, name)

        def log_group(kind: str) -> str:
            return project.log_group_name(stage, f"pipeline/{kind}")

        def log_streams(*kinds: str) -> list[str]:
            return [arn("logs", f"log-group:{log_group(kind)}:*") for kind in kinds]

        # Each stage's Apply is its own project and role: "deploy" for the stage in this account (beta),
        # "apply-<stage>" for each cross-account stage, the only pipeline role its deploy role trusts.
        apply_kinds = {s.name: f"apply-{s.name}" if s.cross_account_deploy else "deploy" for s in project.stages}
        buildspec_of = {**BUILDSPECS, **{kind: BUILDSPECS["deploy"] for kind in apply_kinds.values()}}
        project_names = {kind: f"{prefix}-{kind}" for kind in buildspec_of}
        project_arns = {kind: arn("codebuild", f"project/{name}") for kind, name in project_names.items()}
        role_names = {
            kind: f"{prefix}-{kind}"
            for kind in ("codepipeline", "update-pipeline", "test", "build", "smoke", "plan", *apply_kinds.values())
        }
        role_names["drift-schedule"] = f"{prefix}-drift-schedule"
        role_names["deploy"] = project.pipeline_deploy_role_name
        own_roles = f"arn:aws:iam::{account}:role{project.iam_path}{prefix}-*"
        pipeline_roles = [own_roles, role_arn(role_names["deploy"])]
        update_role_arn = role_arn(role_names["update-pipeline"])
        pipeline_arn = arn("codepipeline", prefix)
        boundary_names = {
            "pipeline": f"{app}-pipeline-boundary",
            "deploy": f"{app}-pipeline-deploy-boundary",
            "plan": f"{app}-pipeline-plan-boundary",
        }
        boundary_arn, deploy_boundary_arn, plan_boundary_arn = (
            f"arn:aws:iam::{account}:policy{project.iam_path}{boundary_names[kind]}"
            for kind in ("pipeline", "deploy", "plan")
        )
        state_bucket_arn = f"arn:aws:s3:::{project.state_bucket(stage)}"
        lock_table_arn = arn("dynamodb", f"table/{project.lock_table(stage)}")
        beta_deploy_scope = deploy_scope(
            project, stage, state_bucket_arn=state_bucket_arn, lock_table_arn=lock_table_arn
        )
        stage_plan_roles = [r for s in project.stages if (r := project.plan_role_arn(s))]
        last_stage = project.stages[-1].name
        # What the drift check keeps between runs, in this account: the commit each stage last applied
        # (the deploy action writes it after an Apply), and the digest of the last drift report mailed.
        deployed_commit_names = {s.name: deployed_commit_parameter(app, s.name) for s in project.stages}
        drift_digest_name = drift_digest_parameter(app, last_stage)
        deployed_commit_arns = {
            name: parameter_arn(parameter, region=region, account_id=account)
            for name, parameter in deployed_commit_names.items()
        }
        drift_digest_arn = parameter_arn(drift_digest_name, region=region, account_id=account)
        # What each stage's Apply deployed (commit, image, execution, time), for `make status`.
        release_names = {s.name: release_parameter(app, s.name) for s in project.stages}
        release_arns = {
            name: parameter_arn(parameter, region=region, account_id=account)
            for name, parameter in release_names.items()
        }

        # Resources the roles' policies name.
        self.artifacts = PipelineArtifactStore(
            self,
            "artifacts",
            name=prefix,
            bucket_name=f"{prefix}-artifacts-{account}",
            account_id=account,
            region=region,
            protected=stage.deletion_protection,
        )
        bucket_arn, key_arn = self.artifacts.bucket.arn, self.artifacts.key.arn
        self.registry = ContainerRegistry(
            self,
            "registry",
            name=project.ecr_repository_name,
            pullers={
                s.name: (s.account_id, f"arn:aws:iam::{s.account_id}:role{project.iam_path}{s.resource_name(app, '*')}")
                for s in project.stages
                if s.account_id != account
            },
        )
        self.notifications = NotificationTopic(
            self,
            "notifications",
            name=f"{prefix}-notifications",
            kms_key_id=key_arn,
            account_id=account,
            email=project.notification_email,
        )
        topic_arn = self.notifications.topic.arn

        def placeholder_parameter(construct_id: str, name: str, value: str, description: str) -> SsmParameter:
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

        self.drift_parameters = [
            *(
                placeholder_parameter(
                    f"drift-state-{stage_name}-deployed-commit",
                    parameter,
                    NEVER_DEPLOYED,
                    f"Commit the {stage_name} stage last applied; the pipeline's deploy action writes it",
                )
                for stage_name, parameter in deployed_commit_names.items()
            ),
            *(
                placeholder_parameter(
                    f"release-{stage_name}",
                    parameter,
                    NEVER_DEPLOYED,
                    f"What the {stage_name} stage's last Apply deployed (JSON); the deploy action writes it",
                )
                for stage_name, parameter in release_names.items()
            ),
            placeholder_parameter(
                "drift-state-digest",
                drift_digest_name,
                NOTHING_PUBLISHED,
                f"Digest of the last drift report of {last_stage} mailed; the drift check writes it",
            ),
        ]
        if project.codestar_connection_arn:
            connection_arn = project.codestar_connection_arn
        else:
            # Created PENDING: someone authorizes it once in the console (Developer Tools > Connections).
            self.connection = CodestarconnectionsConnection(
                self, "github-connection", name=project.connection_name, provider_type="GitHub"
            )
            connection_arn = self.connection.arn

        def build_basics(*log_kinds: str, writes_artifacts: bool) -> list[DataAwsIamPolicyDocumentStatement]:
            """Every CodeBuild role: its own log groups, and the artifacts its actions read (and write)."""
            object_actions = ["s3:GetObject", "s3:GetObjectVersion"]
            key_actions = ["kms:Decrypt", "kms:DescribeKey"]
            if writes_artifacts:
                object_actions.append("s3:PutObject")
                key_actions += ["kms:Encrypt", "kms:GenerateDataKey*"]
            return [
                statement(
                    sid="WriteOwnLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=log_streams(*log_kinds),
                ),
                statement(sid="PipelineArtifacts", actions=object_actions, resources=[f"{bucket_arn}/*"]),
                statement(
                    sid="PipelineArtifactBucket",
                    actions=["s3:GetBucketLocation", "s3:GetBucketAcl"],
                    resources=[bucket_arn],
                ),
                statement(sid="PipelineArtifactKey", actions=key_actions, resources=[key_arn]),
            ]

        use_connection = statement(
            sid="UseTheRepositoryConnection",
            actions=[
                "codestar-connections:UseConnection",
                "codeconnections:UseConnection",
                "codestar-connections:GetConnectionToken",
                "codeconnections:GetConnectionToken",
            ],
            resources=[connection_arn],
        )
        never_write_the_pipeline_state = statement(
            sid="NeverWriteThePipelineState",
            effect="Deny",
            actions=["s3:PutObject", "s3:DeleteObject"],
            resources=[f"{state_bucket_arn}/{PIPELINE_STATE_PREFIX}*"],
        )
        never_touch_the_pipeline = statement(
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
                *pipeline_roles,
                boundary_arn,
                bucket_arn,
                key_arn,
                topic_arn,
                arn("logs", f"log-group:{log_group('*')}"),
            ],
        )

        def apply_statements(target: StageConfig) -> list[DataAwsIamPolicyDocumentStatement]:
            """A stage's Apply: beta's deploys with this account's rights (R4.8); a cross-account stage's may
            only assume that stage's deploy role (R4.6). Each records the commit it applied, and one after an
            approval reads who gave it."""
            deploy_role = project.deploy_role_arn(target)
            found = (
                [
                    statement(
                        sid=f"AssumeThe{target.name.capitalize()}DeployRole",
                        actions=["sts:AssumeRole"],
                        resources=[deploy_role],
                    )
                ]
                if deploy_role
                else [*deploy_permissions(beta_deploy_scope), never_touch_the_pipeline, never_write_the_pipeline_state]
            )
            found.append(
                statement(
                    sid="RecordTheDeployedCommit",
                    actions=["ssm:PutParameter"],
                    resources=[deployed_commit_arns[target.name], release_arns[target.name]],
                )
            )
            # The last verified release, which a failed smoke check restores (pipelines/drift.py previous).
            found.append(
                statement(
                    sid="ReadTheLastVerifiedRelease",
                    actions=["ssm:GetParameter"],
                    resources=[release_arns[target.name]],
                )
            )
            if target.approval_before_apply:
                found.append(
                    statement(
                        sid="ReadWhoApproved", actions=["codepipeline:ListActionExecutions"], resources=[pipeline_arn]
                    )
                )
            return found

        statements: dict[str, list[DataAwsIamPolicyDocumentStatement]] = {
            "codepipeline": [
                statement(
                    sid="PipelineArtifacts",
                    actions=["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
                    resources=[f"{bucket_arn}/*"],
                ),
                statement(
                    sid="PipelineArtifactBucket",
                    actions=["s3:GetBucketVersioning", "s3:GetBucketLocation"],
                    resources=[bucket_arn],
                ),
                statement(
                    sid="PipelineArtifactKey",
                    actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:DescribeKey"],
                    resources=[key_arn],
                ),
                use_connection,
                statement(
                    sid="RunThePipelinesBuilds",
                    actions=["codebuild:StartBuild", "codebuild:BatchGetBuilds", "codebuild:StopBuild"],
                    resources=[arn for kind, arn in project_arns.items() if kind != "drift"],
                ),
            ],
            "update-pipeline": [
                *build_basics("update-pipeline", writes_artifacts=False),
                *update_pipeline_permissions(
                    arn=arn,
                    region=region,
                    pipeline_arn=pipeline_arn,
                    pipeline_roles=own_roles,
                    deploy_role_arn=role_arn(role_names["deploy"]),
                    update_role_arn=update_role_arn,
                    boundary_arn=boundary_arn,
                    deploy_boundary_arn=deploy_boundary_arn,
                    plan_boundary_arn=plan_boundary_arn,
                    state_bucket_arn=state_bucket_arn,
                    state_key_prefix=PIPELINE_STATE_PREFIX,
                    lock_table_arn=lock_table_arn,
                    resources=PipelineResources(
                        bucket_arn=bucket_arn,
                        key_arn=key_arn,
                        key_alias_arn=arn("kms", f"alias/{prefix}"),
                        repository_arn=self.registry.repository.arn,
                        topic_arn=topic_arn,
                        name_prefix=prefix,
                        log_groups=arn("logs", f"log-group:{log_group('*')}"),
                        parameter_arns=(*deployed_commit_arns.values(), *release_arns.values(), drift_digest_arn),
                    ),
                    stage_guards=[
                        *deploy_guards(beta_deploy_scope),
                        # The beta stacks' state is the deploy role's alone.
                        statement(
                            sid="NeverWriteTheStagesState",
                            effect="Deny",
                            actions=["s3:PutObject", "s3:DeleteObject"],
                            resources=[f"{state_bucket_arn}/{stage.name}/*"],
                        ),
                    ],
                ),
            ],
            # The test project runs the repository's own tests: no deploy rights, no role to assume.
            "test": build_basics("test", writes_artifacts=False),
            "build": [
                *build_basics("build", writes_artifacts=True),
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
                    resources=[self.registry.repository.arn],
                ),
            ],
            "smoke": build_basics("smoke", writes_artifacts=False),
            # Every Plan and the drift check: reads beta and, through their plan roles, gamma and prod; writes
            # nothing of any stage but its state locks.
            "plan": [
                *build_basics("plan", "drift", writes_artifacts=True),
                *read_only_statements(deploy_permissions(beta_deploy_scope)),
                *state_lock_statements(beta_deploy_scope),
                statement(sid="AssumeStagePlanRoles", actions=["sts:AssumeRole"], resources=stage_plan_roles),
                # The preflight before each stage's plan checks that the image it will run was pushed.
                statement(
                    sid="FindTheReleasedImage",
                    actions=["ecr:DescribeImages"],
                    resources=[self.registry.repository.arn],
                ),
                statement(sid="ReportDrift", actions=["sns:Publish"], resources=[topic_arn]),
                # The drift project checks the commit the last stage applied and mails each report once.
                statement(
                    sid="ReadTheCheckedStagesCommit",
                    actions=["ssm:GetParameter"],
                    resources=[deployed_commit_arns[last_stage]],
                ),
                statement(
                    sid="RememberTheLastDriftReport",
                    actions=["ssm:GetParameter", "ssm:PutParameter"],
                    resources=[drift_digest_arn],
                ),
                use_connection,
                # Not kms:Decrypt, as the stage plan roles deny: this role reads the artifacts with the pipeline's key.
                statement(
                    sid="NeverReadSecretValues",
                    effect="Deny",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=["*"],
                ),
            ],
            **{
                kind: [
                    *build_basics(kind, writes_artifacts=True),
                    *apply_statements(project.stage(name)),
                ]
                for name, kind in apply_kinds.items()
            },
            "drift-schedule": [
                statement(sid="StartTheDriftCheck", actions=["codebuild:StartBuild"], resources=[project_arns["drift"]])
            ],
        }
        # `make status` from a laptop: the operators' roles may assume the read-only plan role under one session
        # name, and such a session may do nothing but assume the stages' plan roles (which trust this role alone):
        # not the artifacts, the state locks, the drift digest or the topic that the role's builds use.
        also_trusted: dict[str, list[DataAwsIamPolicyDocumentStatement]] = {}
        if project.operator_roles:
            also_trusted["plan"] = [
                statement(
                    sid="OperatorsReadThroughThePlanRole",
                    # A source identity set by the operator's identity provider must be passed on (IAM User Guide,
                    # "Permissions required to set source identity").
                    actions=["sts:AssumeRole", "sts:SetSourceIdentity"],
                    resources=[],
                    principals={"AWS": [f"arn:aws:iam::{account}:root"]},
                    conditions=[
                        ("ArnLike", "aws:PrincipalArn", list(project.operator_role_patterns)),
                        ("StringEquals", "sts:RoleSessionName", [project.status_session_name]),
                    ],
                )
            ]
            used = {a.split(":")[0] for s in statements["plan"] if s.effect == "Allow" for a in s.actions or []}
            statements["plan"].append(
                statement(
                    sid="OperatorSessionsOnlyAssumeThePlanRoles",
                    effect="Deny",
                    actions=[f"{service}:*" for service in sorted(used - {"sts"})],
                    # Every action of every service the role may use but STS, wherever.
                    resources=["*"],
                    # A role session's aws:userid is `<role id>:<session name>`.
                    conditions=[("StringLike", "aws:userid", [f"*:{project.status_session_name}"])],
                )
            )
        # Two ceilings, each built from the policies of the roles it caps (the deploy role's alone is
        # nearly a managed policy's 6,144 characters): the update role may rewrite the other roles'
        # policies, but not beyond their boundary, which holds every Deny they carry.
        protected_policies = [
            boundary_arn,
            deploy_boundary_arn,
            plan_boundary_arn,
            project.permissions_boundary_arn(stage),
        ]
        # Which roles each boundary caps: the deploy role and the plan role each have their own, the rest share one.
        bounded_by = {kind: kind if kind in ("deploy", "plan") else "pipeline" for kind in statements}
        # The pipeline's roles may be given s3:* (the update role manages the artifact bucket with it).
        only_the_update_role_writes_the_pipeline_state = statement(
            sid="OnlyTheUpdateRoleWritesThePipelineState",
            effect="Deny",
            actions=never_write_the_pipeline_state.actions or [],
            resources=never_write_the_pipeline_state.resources or [],
            conditions=[("ArnNotEquals", "aws:PrincipalArn", [update_role_arn])],
        )
        self.boundaries = {
            kind: PipelineBoundary(
                self,
                construct_id,
                name=boundary_names[kind],
                path=project.iam_path,
                description=description,
                statements=boundary_statements(
                    role_statements=[v for k, v in statements.items() if bounded_by[k] == kind],
                    protected_policy_arns=protected_policies,
                    denied=[] if kind == "deploy" else [only_the_update_role_writes_the_pipeline_state],
                ),
            )
            for kind, construct_id, description in (
                ("pipeline", "boundary", "Ceiling for the Canvalo pipeline's roles but the deploy and plan roles"),
                ("deploy", "deploy-boundary", "Ceiling for the Canvalo pipeline's deploy role"),
                ("plan", "plan-boundary", "Ceiling for the Canvalo pipeline's read-only plan role"),
            )
        }
        self.boundary, self.deploy_boundary = self.boundaries["pipeline"], self.boundaries["deploy"]
        services = {"codepipeline": CODEPIPELINE, "drift-schedule": EVENTS}
        service_roles = {
            kind: ServiceRole(
                self,
                f"{kind}-role",
                name=role_names[kind],
                path=project.iam_path,
                description=f"Canvalo pipeline: {kind}",
                service=services.get(kind, CODEBUILD),
                statements=role_statements,
                permissions_boundary=self.boundaries[bounded_by[kind]].policy,
                source_account=account,
                also_trusted=also_trusted.get(kind, ()),
            )
            for kind, role_statements in statements.items()
        }
        self.roles = {kind: service_role.role for kind, service_role in service_roles.items()}

        def codebuild(
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
                clashes = settings.keys() & (environment or {}).keys()
                # A raise, not an assert: cdktf.json runs the app with `python -O`.
                if clashes:
                    raise ValueError(f"the {kind} project sets {', '.join(sorted(clashes))} itself")
                environment = {**(environment or {}), **settings}
            return CodeBuildProject(
                self,
                f"{kind}-project",
                name=project_names[kind],
                description=f"Canvalo pipeline: runs {buildspec_of[kind]}",
                buildspec=(
                    toolkit.inline_buildspec(
                        (REPOSITORY_ROOT / buildspec_of[kind]).read_text(), source=buildspec_of[kind]
                    )
                    if kind in PIPELINE_OWNED or kind in apply_kinds.values()
                    else buildspec_of[kind]
                ),
                service_role_arn=self.roles[role].arn,
                kms_key_arn=key_arn,
                log_group_name=log_group(kind),
                log_retention_days=stage.log_retention_days,
                environment=environment,
                privileged=privileged,
                compute_type=compute_type,
                timeout_minutes=timeout_minutes,
                github_source=github_source,
                image=image,
            )

        settings = project.environment_settings
        terraform = {"TERRAFORM_VERSION": TERRAFORM_VERSION}
        toolkit = PipelineToolkit(toolkit_sha256(REPOSITORY_ROOT))
        self.projects = {
            "update-pipeline": codebuild(
                "update-pipeline",
                role="update-pipeline",
                environment={**terraform, "PIPELINE_NAME": prefix},
            ),
            # `make test` runs pytest, checkov and the browser tests: the medium size keeps it in minutes.
            # It tests the repository's own fixture configuration, never the administrator's settings.
            "test": codebuild(
                "test",
                role="test",
                compute_type="BUILD_GENERAL1_MEDIUM",
                image=DEBIAN_TEST_IMAGE,
                administrator_settings=False,
            ),
            "build": codebuild(
                "build",
                role="build",
                compute_type="BUILD_GENERAL1_MEDIUM",
                # docker build needs the Docker daemon, which only privileged mode provides.
                privileged=True,
                environment={"ECR_REPOSITORY_URI": self.registry.repository.repository_url},
            ),
            # Plan is read-only however long a stage's refresh takes; the project also runs each Bake.
            "plan": codebuild(
                "plan",
                role="plan",
                # Where Plan puts the summary the approval links to (pipelines/publish_summary.py).
                environment={**terraform, "ARTIFACT_BUCKET": self.artifacts.bucket.bucket},
                timeout_minutes=max([60, *(s.bake_minutes + BAKE_MARGIN_MINUTES for s in project.stages)]),
            ),
            # A CloudFront update inside one apply can take most of an hour.
            **{
                kind: codebuild(kind, role=kind, environment=terraform, timeout_minutes=120)
                for kind in apply_kinds.values()
            },
            "smoke": codebuild("smoke", role="smoke", timeout_minutes=20),
        }
        # Outside the pipeline, so it clones the branch itself; it plans as the plan role, which reads prod
        # through prod's read-only plan role. CodeBuild refuses a project whose source authenticates through
        # a connection that is not AVAILABLE, and the connection this stack creates starts PENDING until a
        # person authorizes it: the project and its schedule wait for `connectionAvailable`.
        if project.connection_available:
            drift = codebuild(
                "drift",
                role="plan",
                environment={
                    **terraform,
                    "STAGE": last_stage,
                    "NOTIFICATION_TOPIC_ARN": topic_arn,
                    # drift_failure.sh's deduplication, which cannot load the configuration for the name.
                    "DRIFT_DIGEST_PARAMETER": drift_digest_name,
                },
                github_source=GitHubSource(
                    repository=project.repository, branch=project.branch, connection_arn=connection_arn
                ),
            )
            self.projects["drift"] = drift
            # A full clone (depth 0), not the last commit only: drift.yml checks out the commit the last
            # stage applied, which may be behind the branch head.
            drift.project.add_override("source.git_clone_depth", 0)
            ScheduledBuild(
                self,
                "drift-schedule",
                name=f"{prefix}-drift",
                description=f"Daily plan-only check that {last_stage} still matches the code",
                schedule_expression=DRIFT_SCHEDULE,
                project_arn=drift.project.arn,
                role_arn=self.roles["drift-schedule"].arn,
            )

        self.pipeline = DeliveryPipeline(
            self,
            "pipeline",
            name=prefix,
            role_arn=self.roles["codepipeline"].arn,
            artifact_bucket=self.artifacts.bucket.bucket,
            kms_key_arn=key_arn,
            connection_arn=connection_arn,
            repository=project.repository,
            branch=project.branch,
            projects=PipelineProjects(
                update_pipeline=project_names["update-pipeline"],
                test=project_names["test"],
                build=project_names["build"],
                plan=project_names["plan"],
                apply={name: project_names[kind] for name, kind in apply_kinds.items()},
                post_deploy_tests=project_names["smoke"],
            ),
            deployments=[
                StageDeployment(
                    name=s.name,
                    approval_before_apply=s.approval_before_apply,
                    post_deploy_tests=s.post_deploy_tests,
                    approver_roles=s.approver_roles,
                    bake_minutes=s.bake_minutes,
                    deployment_window=s.deployment_window,
                    deployment_window_time_zone=s.deployment_window_time_zone,
                )
                for s in project.stages
            ],
            # The projects its actions run (all but drift, which runs outside it) and its role's grants.
            depends_on=[
                *(built.project for kind, built in self.projects.items() if kind != "drift"),
                service_roles["codepipeline"].policy,
            ],
        ).pipeline
        self.notifications.notify_on_pipeline_events(
            "pipeline-events", name=f"{prefix}-events", pipeline_arn=self.pipeline.arn
        )

        TerraformOutput(self, "pipeline_name", value=self.pipeline.name)
        TerraformOutput(self, "connection_arn", value=connection_arn)
        TerraformOutput(self, "ecr_repository_url", value=self.registry.repository.repository_url)
        TerraformOutput(self, "artifact_bucket", value=self.artifacts.bucket.bucket)
        TerraformOutput(self, "notification_topic_arn", value=topic_arn)
