"""The pipeline's IAM roles and the permissions boundary that caps them and every role they create.

The pipeline's roles need more than the workload boundary allows (CodeBuild, CodePipeline, deploying
beta), so they carry their own boundary, built from their own policies: every service they use, but
IAM and STS only as their scoped statements allow. A role created by a pipeline role must carry this
boundary or the workload boundary, and no pipeline role may change a boundary, so whatever a commit
asks for, the pipeline cannot mint a role with more than this ceiling.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cdktn_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement
from cdktn_provider_aws.iam_policy import IamPolicy
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from modules.iam import assume_role_document, policy_document, statement

# Services whose permissions the boundary copies statement by statement instead of by service.
SCOPED_SERVICES = ("iam", "sts")


def boundary_statements(
    *, role_statements: Iterable[Sequence[DataAwsIamPolicyDocumentStatement]], protected_policy_arns: Sequence[str]
) -> list[DataAwsIamPolicyDocumentStatement]:
    """The ceiling of the given roles' policies: their services, and their IAM/STS statements as written."""
    services: set[str] = set()
    scoped: list[DataAwsIamPolicyDocumentStatement] = []
    for statements in role_statements:
        for item in statements:
            if item.effect != "Allow":
                continue
            item_services = {action.split(":")[0] for action in item.actions or []}
            services |= item_services - set(SCOPED_SERVICES)
            if not item_services & set(SCOPED_SERVICES):
                continue
            same_sid = [existing for existing in scoped if existing.sid == item.sid]
            if same_sid and same_sid[0] != item:
                raise ValueError(f"two pipeline role statements named {item.sid}: give them distinct sids")
            if not same_sid:
                scoped.append(item)
    return [
        statement(
            sid="PipelineServices",
            actions=sorted(f"{service}:*" for service in services),
            # A boundary is a ceiling, not a grant: each role's own policy scopes the resources.
            resources=["*"],
        ),
        *scoped,
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
        # Approvals are people's: no pipeline role may answer one, whatever its own policy says.
        statement(sid="NeverApprove", effect="Deny", actions=["codepipeline:PutApprovalResult"], resources=["*"]),
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
    ) -> None:
        super().__init__(scope, construct_id)
        self.statements = list(statements)
        trust = assume_role_document(
            self,
            "trust",
            principals={"Service": [service]},
            # The confused-deputy guard: only this account's use of the service may assume the role.
            conditions=[("StringEquals", "aws:SourceAccount", [source_account])],
        )
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
        IamRolePolicy(self, "policy", role=self.role.name, name="permissions", policy=permissions.json)


class PipelineBoundary(Construct):
    """The managed policy every pipeline role carries as its permissions boundary."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        path: str,
        statements: Sequence[DataAwsIamPolicyDocumentStatement],
    ) -> None:
        super().__init__(scope, construct_id)
        document = policy_document(self, "document", statements)
        self.policy = IamPolicy(
            self,
            "policy",
            name=name,
            path=path,
            description="Ceiling for the Canvalo pipeline's roles and any role they create",
            policy=document.json,
        )
