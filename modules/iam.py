"""Small helpers so that every IAM policy in the project is a typed, scoped policy document."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cdktn_provider_aws.data_aws_iam_policy_document import (
    DataAwsIamPolicyDocument,
    DataAwsIamPolicyDocumentStatement,
    DataAwsIamPolicyDocumentStatementCondition,
    DataAwsIamPolicyDocumentStatementPrincipals,
)
from constructs import Construct


def statement(
    *,
    sid: str,
    actions: Sequence[str],
    resources: Sequence[str],
    effect: str = "Allow",
    principals: Mapping[str, Sequence[str]] | None = None,
    conditions: Sequence[tuple[str, str, Sequence[str]]] = (),
) -> DataAwsIamPolicyDocumentStatement:
    """One statement; `principals` maps a principal type to identifiers, `conditions` are (test, key, values)."""
    return DataAwsIamPolicyDocumentStatement(
        sid=sid,
        effect=effect,
        actions=list(actions),
        resources=list(resources),
        principals=[
            DataAwsIamPolicyDocumentStatementPrincipals(type=kind, identifiers=list(ids))
            for kind, ids in (principals or {}).items()
        ]
        or None,
        condition=[
            DataAwsIamPolicyDocumentStatementCondition(test=test, variable=key, values=list(values))
            for test, key, values in conditions
        ]
        or None,
    )


def assume_role_document(
    scope: Construct,
    construct_id: str,
    *,
    principals: Mapping[str, Sequence[str]],
    conditions: Sequence[tuple[str, str, Sequence[str]]] = (),
) -> DataAwsIamPolicyDocument:
    return DataAwsIamPolicyDocument(
        scope,
        construct_id,
        statement=[
            statement(
                sid="AssumeRole",
                actions=["sts:AssumeRole"],
                resources=[],
                principals=principals,
                conditions=conditions,
            )
        ],
    )


def policy_document(
    scope: Construct, construct_id: str, statements: Sequence[DataAwsIamPolicyDocumentStatement]
) -> DataAwsIamPolicyDocument:
    return DataAwsIamPolicyDocument(scope, construct_id, statement=list(statements))


def deny_insecure_transport(bucket_arn: str) -> DataAwsIamPolicyDocumentStatement:
    """Bucket policy statement that refuses any request not made over TLS."""
    return statement(
        sid="DenyInsecureTransport",
        effect="Deny",
        actions=["s3:*"],
        resources=[bucket_arn, f"{bucket_arn}/*"],
        principals={"*": ["*"]},
        conditions=[("Bool", "aws:SecureTransport", ["false"])],
    )


# What keeping an existing role takes, short of creating, deleting or re-trusting it or granting it
# anything new: the pipeline's update role gets these on the pipeline's roles.
ROLE_MAINTENANCE_ACTIONS = (
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListRolePolicies",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:DeleteRolePolicy",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:UpdateRole",
    "iam:UpdateRoleDescription",
)
# ... and deleting it: the deploy roles get these on the stage's workload roles. Neither list has
# iam:UpdateAssumeRolePolicy: see no_trust_policy_changes.
ROLE_LIFECYCLE_ACTIONS = (*ROLE_MAINTENANCE_ACTIONS, "iam:DeleteRole")


def no_trust_policy_changes() -> DataAwsIamPolicyDocumentStatement:
    """No deploying role may rewrite a role's trust policy, on any role.

    IAM has no condition key that inspects the document UpdateAssumeRolePolicy (or CreateRole) writes, so
    a grant of it on a role is a grant to make that role trust anyone, another account included: the
    task execution role, the one reader of a stage's secret, or the pipeline's deploy role, which the
    gamma and prod deploy roles trust by ARN. The roles the stacks create keep the trust they were
    created with; a change to it (which the plan summary flags as broadening anyway) is applied by an
    administrator. CreateRole stays, held to a permissions boundary, which is what caps a new role.
    """
    return statement(sid="NoTrustPolicyChanges", effect="Deny", actions=["iam:UpdateAssumeRolePolicy"], resources=["*"])


def key_administered_through_iam(account_id: str) -> DataAwsIamPolicyDocumentStatement:
    """The key-policy statement that lets the account's IAM policies grant use of the key.

    Without it only the key policy itself could grant access, and a key whose policy names no
    working administrator can never be managed again.
    """
    return statement(
        sid="AccountAdministersThroughIam",
        actions=["kms:*"],
        # In a key policy "*" means this key.
        resources=["*"],
        principals={"AWS": [f"arn:aws:iam::{account_id}:root"]},
    )
