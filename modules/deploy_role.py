"""What deploying this project may do in a stage account, and the role the pipeline assumes to do it.

The deploy permissions cover the services this project manages and no more. These guards keep them
from becoming administrator rights, or a way to the stage's secret:
- IAM actions reach only the stage's roles (`<app>-<stage>-*` under the project's path), and a role may
  only be created or given policies while it carries the workload permissions boundary, which the
  deploy role can neither change nor remove; so no role it makes can do more than the boundary allows.
- No trust policy may be rewritten (modules/iam.py, no_trust_policy_changes), and the role that reads
  the secret may not be deleted: the boundary lets only that role, by ARN, read the secret, so a role
  recreated under its name with another trust policy would be a way in.
- No command of the deploy role's choosing runs in a task (RunTask, StartTask, ExecuteCommand), and
  no log of the project may be read back.
- Terraform state is readable and writable for the stage's own stacks only; the bootstrap stack's
  state is not, and the state bucket and lock table cannot be deleted or have their policies changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdktn_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement
from cdktn_provider_aws.iam_policy import IamPolicy
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from modules.iam import ROLE_LIFECYCLE_ACTIONS, no_trust_policy_changes, policy_document, statement
from names import bootstrap_version_parameter_arn

# Services whose create/list APIs have no resource-level permissions: Resource must be "*", so these
# are held to the stage's region instead (and CloudFront/ACM-for-CloudFront/Route53, which are global,
# to us-east-1 where their API lives).
REGIONAL_ACTIONS_WITHOUT_RESOURCE_SCOPE = (
    "ec2:Describe*",
    "ec2:*Vpc*",
    "ec2:*Subnet*",
    "ec2:*Route*",
    "ec2:*InternetGateway*",
    "ec2:*NatGateway*",
    "ec2:*Address*",
    "ec2:*SecurityGroup*",
    "ec2:*FlowLogs*",
    "ec2:*Tags",
    "elasticloadbalancing:*",
    "ecs:*",
    "application-autoscaling:*",
    "cloudwatch:*Alarm*",
    "cloudwatch:*Dashboard*",
    "cloudwatch:ListTagsForResource",
    "cloudwatch:TagResource",
    "cloudwatch:UntagResource",
    "logs:Describe*",
    "logs:ListTagsForResource",
    "acm:*",
    "kms:CreateKey",
    "kms:ListAliases",
    "secretsmanager:ListSecrets",
    "sns:ListTopics",
)
# What the provider calls on a KMS key right after CreateKey, before its tags may count (deploy_permissions).
KEY_SET_UP_ACTIONS = (
    "kms:EnableKeyRotation",
    "kms:GetKeyRotationStatus",
    "kms:GetKeyPolicy",
    "kms:ListResourceTags",
    "kms:DescribeKey",
)
# No hosted zone create, delete or tagging: bootstrap-<stage> owns the zone; deploys only add records.
GLOBAL_ACTIONS_WITHOUT_RESOURCE_SCOPE = (
    "cloudfront:*",
    "route53:Get*",
    "route53:List*",
    "route53:ChangeResourceRecordSets",
)
# What the project's workload roles (ECS task and execution roles, flow-log role) may ever be granted,
# besides reading the stage's secret (WorkloadBoundary). No kms:Decrypt: the secret is encrypted with
# the AWS-managed key aws/secretsmanager, which needs no KMS grant in the reader's policy (ECS
# developer guide, "Required IAM permissions for Amazon ECS secrets": kms:Decrypt only for a customer
# managed key), and no workload uses another key.
WORKLOAD_BOUNDARY_ACTIONS = (
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "bedrock:InvokeModel",
    "bedrock:InvokeModelWithResponseStream",
)
# Ways to see what a running task holds (its injected secret): a command of the caller's choosing in a
# task (RunTask/StartTask take command overrides; ExecuteCommand opens a shell in a running one), or its
# output read back from the logs. Terraform's aws_ecs_service and aws_ecs_task_definition use none of
# them (pike's mappings, tests/infra/test_terraform_permissions.py), and nothing in the pipeline reads logs.
TASK_INSPECTION_ACTIONS = (
    "ecs:RunTask",
    "ecs:StartTask",
    "ecs:ExecuteCommand",
    "logs:GetLogEvents",
    "logs:FilterLogEvents",
    "logs:StartQuery",
    "logs:StartLiveTail",
    "logs:GetLogRecord",
    "logs:Unmask",
)


@dataclass(frozen=True)
class DeployScope:
    """What a stage's deploy rights are held to: its account and region, the project's names and path."""

    app_name: str
    stage_name: str
    account_id: str
    region: str
    iam_path: str
    deploy_role_name: str
    permissions_boundary_name: str
    backend_secret_name: str
    # The task execution role of the stage's backend: the one role that may read the secret.
    secret_reader_role_name: str
    state_bucket_arn: str
    lock_table_arn: str

    def role_arn(self, role_name: str) -> str:
        return f"arn:aws:iam::{self.account_id}:role{self.iam_path}{role_name}"

    @property
    def permissions_boundary_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:policy{self.iam_path}{self.permissions_boundary_name}"

    @property
    def backend_secret_arn(self) -> str:
        """Exactly the stage's backend secret: Secrets Manager ends its ARN with "-" and 6 random
        characters, which IAM can match only with wildcards."""
        return f"arn:aws:secretsmanager:{self.region}:{self.account_id}:secret:{self.backend_secret_name}-??????"

    @property
    def secret_reader_arn(self) -> str:
        return self.role_arn(self.secret_reader_role_name)


def deploy_permissions(scope: DeployScope) -> list[DataAwsIamPolicyDocumentStatement]:
    """Statements for deploying the stage's stacks; shared by the gamma/prod deploy role and the beta pipeline."""
    app, stage_name = scope.app_name, scope.stage_name
    return [
        *_terraform_state_statements(scope),
        statement(
            sid="ProjectBuckets",
            actions=["s3:*"],
            resources=[f"arn:aws:s3:::{app}-{stage_name}-*", f"arn:aws:s3:::{app}-{stage_name}-*/*"],
        ),
        *_services_without_resource_scope(scope),
        *_project_logs_secrets_and_topics(scope),
        *_project_key_statements(scope),
        *_project_role_statements(scope),
        *deploy_guards(scope),
    ]


def _terraform_state_statements(scope: DeployScope) -> list[DataAwsIamPolicyDocumentStatement]:
    state_bucket_arn, lock_table_arn = scope.state_bucket_arn, scope.lock_table_arn
    return [
        statement(
            sid="TerraformState",
            actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            # The stage's workload stack keeps its state (and S3 lock file) under `<stage>/` (stacks/base.py,
            # stacks/workload.py); bootstrap-<stage> and, in beta, the pipeline keep theirs under other keys.
            resources=[f"{state_bucket_arn}/{scope.stage_name}/*"],
        ),
        statement(sid="TerraformStateList", actions=["s3:ListBucket"], resources=[state_bucket_arn]),
        statement(
            sid="TerraformLock",
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:DescribeTable"],
            resources=[lock_table_arn],
        ),
    ]


def _services_without_resource_scope(scope: DeployScope) -> list[DataAwsIamPolicyDocumentStatement]:
    return [
        statement(
            sid="RegionalServicesWithoutResourceScope",
            actions=REGIONAL_ACTIONS_WITHOUT_RESOURCE_SCOPE,
            # These APIs cannot be scoped by ARN (create/describe calls act before the resource exists).
            resources=["*"],
            conditions=[_requested_in(scope.region)],
        ),
        statement(
            sid="ReadAwsManagedPrefixLists",
            # The entries of AWS-managed prefix lists (CloudFront's origin-facing addresses), which the
            # aws_ec2_managed_prefix_list data source reads; they are owned by "aws", not an account.
            actions=["ec2:GetManagedPrefixListEntries"],
            resources=[f"arn:aws:ec2:{scope.region}:aws:prefix-list/*"],
        ),
        statement(
            sid="CloudFrontCertificatesWithoutResourceScope",
            actions=["acm:*"],
            # CloudFront takes certificates only from us-east-1; RequestCertificate takes no resource ARN.
            resources=["*"],
            conditions=[_requested_in("us-east-1")],
        ),
        statement(
            sid="GlobalServicesWithoutResourceScope",
            actions=GLOBAL_ACTIONS_WITHOUT_RESOURCE_SCOPE,
            # CloudFront and Route53 are global services whose create/list APIs take no resource ARN.
            resources=["*"],
        ),
    ]


def _requested_in(region: str) -> tuple[str, str, list[str]]:
    return ("StringEquals", "aws:RequestedRegion", [region])


def _project_logs_secrets_and_topics(scope: DeployScope) -> list[DataAwsIamPolicyDocumentStatement]:
    account, region, app, stage_name = scope.account_id, scope.region, scope.app_name, scope.stage_name
    return [
        statement(
            sid="ProjectLogGroups",
            actions=["logs:*"],
            resources=[
                f"arn:aws:logs:{region}:{account}:log-group:/{app}/{stage_name}/*",
                f"arn:aws:logs:{region}:{account}:log-group:/{app}/{stage_name}/*:*",
            ],
        ),
        statement(
            sid="ProjectSecretsWithoutValues",
            # bootstrap-<stage> creates and deletes the secret; a deploy reads its metadata and tags
            # (DescribeSecret, for the data source) and manages its resource policy. Never its value.
            # DeleteResourcePolicy is what Terraform's destroy of aws_secretsmanager_secret_policy calls
            # (terraform-provider-aws, internal/service/secretsmanager/secret_policy.go); removing the
            # policy's deny opens the value to no role the deploy role can make, since the workload
            # boundary lets only the execution role read it.
            actions=[
                "secretsmanager:DescribeSecret",
                "secretsmanager:GetResourcePolicy",
                "secretsmanager:PutResourcePolicy",
                "secretsmanager:DeleteResourcePolicy",
            ],
            resources=[scope.backend_secret_arn],
        ),
        statement(
            sid="ReadTheBootstrapVersion",
            # The pipeline's preflight compares it with BOOTSTRAP_VERSION before it deploys the stage.
            actions=["ssm:GetParameter"],
            resources=[bootstrap_version_parameter_arn(app, stage_name, region=region, account_id=account)],
        ),
        statement(
            sid="ProjectTopics",
            actions=["sns:*"],
            resources=[f"arn:aws:sns:{region}:{account}:{app}-*"],
        ),
    ]


def _project_key_statements(scope: DeployScope) -> list[DataAwsIamPolicyDocumentStatement]:
    account, region, app = scope.account_id, scope.region, scope.app_name
    return [
        statement(
            sid="TagNewProjectKeysWithoutResourceScope",
            actions=["kms:TagResource"],
            # CreateKey with tags needs kms:TagResource on every key of the account and region (KMS
            # developer guide, "Controlling access to tags"): the key does not exist yet, so there is no
            # key ARN to name, and it has no tags. Only as this stage's, and only on a key without an
            # `application` tag: a key of another application cannot be claimed by tagging it (ProjectKeys
            # would then grant kms:* on it). Keys the project already owns are retagged through ProjectKeys.
            # IAM cannot tell a new key from an existing untagged one: docs/security.md.
            resources=["*"],
            conditions=[
                ("StringEquals", "aws:RequestTag/application", [app]),
                ("StringEquals", "aws:RequestTag/stage", [scope.stage_name]),
                ("Null", "aws:ResourceTag/application", ["true"]),
                _requested_in(region),
            ],
        ),
        statement(
            sid="ProjectKeys",
            actions=["kms:*"],
            resources=[f"arn:aws:kms:{region}:{account}:key/*"],
            conditions=[("StringEquals", "aws:ResourceTag/application", [app])],
        ),
        statement(
            sid="SetUpNewKeysBeforeTheirTagsCount",
            # Right after CreateKey the provider enables rotation and reads the key back (EnableKeyRotation,
            # GetKeyRotationStatus, GetKeyPolicy, ListResourceTags, DescribeKey), retrying only NotFound
            # (terraform-provider-aws, internal/service/kms/key.go, resourceKeyCreate and findKeyInfo); the
            # key's new tags can take minutes to count for aws:ResourceTag (KMS developer guide, "ABAC for
            # AWS KMS"), so ProjectKeys may still refuse them. These calls hold no tag condition, on this
            # account's keys in the region: none encrypts, decrypts, grants, changes a policy, disables or
            # deletes; enabling rotation only makes a key safer (DisableKeyRotation stays with ProjectKeys),
            # and the reads return metadata, never key material.
            actions=KEY_SET_UP_ACTIONS,
            resources=[f"arn:aws:kms:{region}:{account}:key/*"],
        ),
    ]


def _project_role_statements(scope: DeployScope) -> list[DataAwsIamPolicyDocumentStatement]:
    # The stage's own roles only: not the deploy role, nor (in beta) the pipeline's canvalo-pipeline-deploy.
    project_roles = scope.role_arn(f"{scope.app_name}-{scope.stage_name}-*")
    return [
        statement(
            sid="ProjectRolesReadAndDelete",
            actions=ROLE_LIFECYCLE_ACTIONS,
            resources=[project_roles],
        ),
        statement(
            sid="ProjectRolesOnlyWithinBoundary",
            actions=["iam:CreateRole", "iam:PutRolePolicy", "iam:PutRolePermissionsBoundary"],
            resources=[project_roles],
            conditions=[("StringEquals", "iam:PermissionsBoundary", [scope.permissions_boundary_arn])],
        ),
        statement(
            sid="PassProjectRolesToTheirServices",
            actions=["iam:PassRole"],
            resources=[project_roles],
            conditions=[
                (
                    "StringEquals",
                    "iam:PassedToService",
                    ["ecs-tasks.amazonaws.com", "vpc-flow-logs.amazonaws.com"],
                )
            ],
        ),
        statement(
            sid="ServiceLinkedRoles",
            actions=["iam:CreateServiceLinkedRole"],
            resources=[f"arn:aws:iam::{scope.account_id}:role/aws-service-role/*"],
            conditions=[
                (
                    "StringEquals",
                    "iam:AWSServiceName",
                    [
                        "ecs.amazonaws.com",
                        "elasticloadbalancing.amazonaws.com",
                        "ecs.application-autoscaling.amazonaws.com",
                        # The first CloudFront VPC origin of an account creates AWSServiceRoleForCloudFrontVPCOrigin.
                        "vpcorigin.cloudfront.amazonaws.com",
                    ],
                )
            ],
        ),
    ]


def deploy_guards(scope: DeployScope) -> list[DataAwsIamPolicyDocumentStatement]:
    """The Denies of deploy_permissions: what no role that deploys or runs the pipeline may ever do in the
    stage's account, whatever else its policy allows (the beta pipeline's roles carry them too)."""
    state_bucket_arn, lock_table_arn = scope.state_bucket_arn, scope.lock_table_arn
    boundary_arn = scope.permissions_boundary_arn
    return [
        # DeleteRolePermissionsBoundary acts on a role, not on the boundary policy: denied on every role,
        # since nothing this project deploys removes a boundary.
        statement(
            sid="NeverRemoveABoundary", effect="Deny", actions=["iam:DeleteRolePermissionsBoundary"], resources=["*"]
        ),
        no_trust_policy_changes(),
        # The secret's reader keeps the trust policy it was created with: deleting it would let it be
        # recreated under the same name (and so the same aws:PrincipalArn) with another. Replacing it is
        # an administrator's (a role's destroy is broadening in the plan summary anyway).
        statement(
            sid="NeverReplaceTheSecretReader",
            effect="Deny",
            actions=["iam:DeleteRole"],
            resources=[scope.secret_reader_arn],
        ),
        statement(sid="NeverInspectATask", effect="Deny", actions=TASK_INSPECTION_ACTIONS, resources=["*"]),
        # Written by an administrator only (`make bootstrap`); its state records the deploy role itself.
        statement(
            sid="NeverWriteTheBootstrapState",
            effect="Deny",
            actions=["s3:PutObject", "s3:DeleteObject"],
            resources=[f"{state_bucket_arn}/bootstrap-*"],
        ),
        statement(
            sid="NeverTouchTheBoundaryOrTheState",
            effect="Deny",
            actions=[
                "iam:CreatePolicyVersion",
                "iam:DeletePolicy",
                "iam:SetDefaultPolicyVersion",
                "s3:DeleteBucket",
                "s3:PutBucketPolicy",
                "dynamodb:DeleteTable",
            ],
            resources=[boundary_arn, state_bucket_arn, lock_table_arn],
        ),
        statement(
            sid="NeverChangeTheDeployRoleItself",
            effect="Deny",
            actions=["iam:*"],
            resources=[scope.role_arn(scope.deploy_role_name)],
        ),
    ]


def pipeline_role_trust(pipeline_account_id: str, role_arn: str) -> DataAwsIamPolicyDocumentStatement:
    """Trust in exactly one role of the pipeline account.

    The pipeline account as principal, held to the one role by aws:PrincipalArn: IAM accepts this before
    that role exists (a role ARN as principal is "Invalid principal" until it does, so the account could
    not be bootstrapped before the pipeline), and it still matches after the role is recreated (a role ARN
    principal silently turns into the old role's unique id).
    """
    return statement(
        sid="AssumeRole",
        actions=["sts:AssumeRole"],
        resources=[],
        principals={"AWS": [f"arn:aws:iam::{pipeline_account_id}:root"]},
        conditions=[("ArnEquals", "aws:PrincipalArn", [role_arn])],
    )


def break_glass_statement(account_id: str, principals: Sequence[str]) -> DataAwsIamPolicyDocumentStatement:
    """Trust for the stage account's own administrators, by role ARN pattern (StageConfig.break_glass_principals).

    The account's root as principal, held to the patterns by aws:PrincipalArn like the pipeline's statement:
    a pattern may name a role that does not exist yet, or the SSO roles whose names AWS generates. An
    administrator reaches this role by role chaining, and a chained AssumeRole whose session carries a
    source identity (one an identity provider set) fails unless the target's trust policy also allows
    sts:SetSourceIdentity (IAM User Guide, "Permissions required to set source identity"); the source
    identity then stays on every action taken as this role. No aws:MultiFactorAuthPresent condition:
    IAM Identity Center role sessions do not carry it, so it would lock the administrators out.
    """
    return statement(
        sid="BreakGlassAdministrators",
        actions=["sts:AssumeRole", "sts:SetSourceIdentity"],
        resources=[],
        principals={"AWS": [f"arn:aws:iam::{account_id}:root"]},
        conditions=[("ArnLike", "aws:PrincipalArn", principals)],
    )


class WorkloadBoundary(Construct):
    """The permissions boundary every role of the project carries: the most a workload may do.

    The deploy role may create a role with any trust policy (CreateRole has no condition key for it), so
    this is also what another account could get through such a role: nothing that reads the secret,
    which only `secret_reader_arn` (the backend's task execution role, named before it exists) may read.
    The condition is on aws:PrincipalArn, the role's ARN, which no trust policy changes; the deploy role
    may neither rewrite that role's trust nor delete it to recreate it (deploy_permissions).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        path: str,
        region: str,
        secret_arn: str,
        secret_reader_arn: str,
    ) -> None:
        super().__init__(scope, construct_id)
        in_region = ("StringEquals", "aws:RequestedRegion", [region])
        document = policy_document(
            self,
            "document",
            [
                statement(
                    sid="WorkloadCeiling",
                    actions=WORKLOAD_BOUNDARY_ACTIONS,
                    # A boundary is a ceiling, not a grant: each role's own policy scopes the resources.
                    resources=["*"],
                    conditions=[in_region],
                ),
                statement(
                    sid="OnlyTheSecretReaderReadsTheSecret",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[secret_arn],
                    conditions=[in_region, ("ArnEquals", "aws:PrincipalArn", [secret_reader_arn])],
                ),
            ],
        )
        self.policy = IamPolicy(
            self,
            "policy",
            name=name,
            path=path,
            description="Ceiling for every role the Canvalo deploy creates",
            policy=document.json,
        )


class DeployRole(Construct):
    """The role in a gamma/prod account that the stage's Apply role in the pipeline assumes (R4.6), and
    that the stage's own administrators may assume to break glass from a laptop."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deploy_scope: DeployScope,
        pipeline_account_id: str,
        pipeline_apply_role_arn: str,
        break_glass_principals: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        # Only the role of this stage's Apply action, which runs after the stage's approvals: not the
        # pipeline's plan role, nor another stage's Apply.
        pipeline = pipeline_role_trust(pipeline_account_id, pipeline_apply_role_arn)
        break_glass = (
            [break_glass_statement(deploy_scope.account_id, break_glass_principals)] if break_glass_principals else []
        )
        trust = policy_document(self, "trust", [pipeline, *break_glass])
        self.role = IamRole(
            self,
            "role",
            name=deploy_scope.deploy_role_name,
            path=deploy_scope.iam_path,
            description=f"Deploys Canvalo {deploy_scope.stage_name}; assumed by the pipeline in the beta account",
            assume_role_policy=trust.json,
            # Long enough for a CloudFront distribution update inside one apply.
            max_session_duration=2 * 3600,
        )
        permissions = policy_document(
            self,
            "permissions",
            deploy_permissions(deploy_scope),
        )
        IamRolePolicy(self, "deploy", role=self.role.name, name="deploy", policy=permissions.json)
