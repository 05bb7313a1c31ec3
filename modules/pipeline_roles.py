"""The pipeline's IAM roles and the permissions boundary that caps them and every role they create.

The pipeline's roles need more than the workload boundary allows (CodeBuild, CodePipeline, deploying
beta), so they carry their own boundary, built from their own policies: every action they use, but
IAM and STS only as their scoped statements allow, and every Deny any of them carries. A role created
by a pipeline role must carry this boundary or the workload boundary, and no pipeline role may change
a boundary, so whatever a commit asks for, the pipeline cannot mint a role with more than this ceiling.

The Denies are copied because an inline policy is no guard against the role that may rewrite it: the
update role may put any policy on the other pipeline roles (within this boundary). A Deny meant for
some pipeline roles only says so itself, with an `aws:PrincipalArn` condition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from cdktn_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement
from cdktn_provider_aws.iam_policy import IamPolicy
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from modules.iam import policy_document, statement

# Services whose permissions the boundary copies statement by statement instead of by service.
SCOPED_SERVICES = ("iam", "sts")


def ceiling_actions(actions: Iterable[str]) -> list[str]:
    """`actions`, sorted, without those another wildcard among them already covers (`s3:Get*` under `s3:*`,
    `codepipeline:ListActionExecutions` under `codepipeline:List*`): a boundary near IAM's size limit
    spends no characters on them."""
    every = set(actions)
    wildcards = {action for action in every if "*" in action or "?" in action}
    return sorted(a for a in every if not any(w != a and fnmatchcase(a, w) for w in wildcards))


def with_resources(
    item: DataAwsIamPolicyDocumentStatement, resources: Sequence[str]
) -> DataAwsIamPolicyDocumentStatement:
    """`item` on `resources` instead of its own."""
    return DataAwsIamPolicyDocumentStatement(
        sid=item.sid,
        effect=item.effect,
        actions=item.actions,
        not_actions=item.not_actions,
        resources=list(resources),
        not_resources=item.not_resources,
        principals=item.principals,
        not_principals=item.not_principals,
        condition=item.condition,
    )


def boundary_statements(
    *,
    role_statements: Iterable[Sequence[DataAwsIamPolicyDocumentStatement]],
    protected_policy_arns: Sequence[str],
    denied: Sequence[DataAwsIamPolicyDocumentStatement] = (),
    reviewer_arn: str,
) -> list[DataAwsIamPolicyDocumentStatement]:
    """The ceiling of the given roles' policies: their actions, their IAM/STS statements as written, and
    every one of their Denies besides the boundary's own; `denied`, Denies for the boundary alone (one
    that spares some of its roles, say so by aws:PrincipalArn). `reviewer_arn`: the one role that may
    answer approvals."""
    denies = [
        statement(
            sid="NeverChangeABoundary",
            effect="Deny",
            actions=[
                "iam:CreatePolicyVersion",
                "iam:DeletePolicy",
                "iam:DeletePolicyVersion",
                "iam:SetDefaultPolicyVersion",
            ],
            resources=list(protected_policy_arns),
        ),
        # DeleteRolePermissionsBoundary acts on a role, not on the policy: on every role, since no
        # pipeline role ever removes a boundary (a boundary is replaced with PutRolePermissionsBoundary).
        statement(
            sid="NeverRemoveABoundary", effect="Deny", actions=["iam:DeleteRolePermissionsBoundary"], resources=["*"]
        ),
        # Approvals are people's, but for Review's answer to a plan that needs none (which each Apply checks):
        # no other pipeline role may answer one, whatever its own policy says.
        statement(
            sid="OnlyReviewApproves",
            effect="Deny",
            actions=["codepipeline:PutApprovalResult"],
            resources=["*"],
            conditions=[("ArnNotEquals", "aws:PrincipalArn", [reviewer_arn])],
        ),
    ]
    actions: set[str] = set()
    scoped: list[DataAwsIamPolicyDocumentStatement] = []

    def add_once(kept: list[DataAwsIamPolicyDocumentStatement], item: DataAwsIamPolicyDocumentStatement) -> None:
        """One statement per sid: roles' statements that share a sid and differ only in their resources
        (each apply role's AssumeTheStageDeployRole) are one rule, kept once on all their resources."""
        same_sid = [index for index, existing in enumerate(kept) if existing.sid == item.sid]
        if not same_sid:
            kept.append(item)
            return
        index = same_sid[0]
        existing = kept[index]
        if with_resources(existing, []) != with_resources(item, []):
            raise ValueError(f"two pipeline role statements named {item.sid}: give them distinct sids")
        resources = [*(existing.resources or []), *(item.resources or [])]
        kept[index] = with_resources(existing, list(dict.fromkeys(resources)))

    for item in denied:
        add_once(denies, item)
    for statements in role_statements:
        for item in statements:
            if item.effect != "Allow":
                add_once(denies, item)
                continue
            item_actions = set(item.actions or [])
            actions |= {a for a in item_actions if a.split(":")[0] not in SCOPED_SERVICES}
            if any(a.split(":")[0] in SCOPED_SERVICES for a in item_actions):
                add_once(scoped, item)
    return [
        statement(
            sid="PipelineActions",
            actions=ceiling_actions(actions),
            # A boundary is a ceiling, not a grant: each role's own policy scopes the resources.
            resources=["*"],
        ),
        *scoped,
        *denies,
    ]


class ServiceRole(Construct):
    """A role that one AWS service assumes, with one inline policy; `statements` stay readable for the boundary."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        path: str,
        description: str,
        service: str,
        statements: Sequence[DataAwsIamPolicyDocumentStatement],
        permissions_boundary: IamPolicy,
        source_account: str,
        also_trusted: Sequence[DataAwsIamPolicyDocumentStatement] = (),
    ) -> None:
        """`also_trusted`: trust statements besides the service's (people's roles reading through a read-only role)."""
        super().__init__(scope, construct_id)
        self.statements = list(statements)
        service_trust = statement(
            sid="AssumeRole",
            actions=["sts:AssumeRole"],
            resources=[],
            principals={"Service": [service]},
            # The confused-deputy guard: only this account's use of the service may assume the role.
            conditions=[("StringEquals", "aws:SourceAccount", [source_account])],
        )
        trust = policy_document(self, "trust", [service_trust, *also_trusted])
        self.role = IamRole(
            self,
            "role",
            name=name,
            path=path,
            description=description,
            assume_role_policy=trust.json,
            permissions_boundary=permissions_boundary.arn,
        )
        permissions = policy_document(self, "permissions", self.statements)
        self.policy = IamRolePolicy(self, "policy", role=self.role.name, name="permissions", policy=permissions.json)


class PipelineBoundary(Construct):
    """A managed policy pipeline roles carry as their permissions boundary (boundary_statements)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        path: str,
        description: str,
        statements: Sequence[DataAwsIamPolicyDocumentStatement],
    ) -> None:
        super().__init__(scope, construct_id)
        document = policy_document(self, "document", statements)
        self.policy = IamPolicy(self, "policy", name=name, path=path, description=description, policy=document.json)
