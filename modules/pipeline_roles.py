"""The pipeline's IAM roles and the permissions boundary that caps them and every role they create.

The pipeline's roles need more than the workload boundary allows (CodeBuild, CodePipeline, deploying
beta), so they carry their own boundary, built from their own policies: every action they use, but
IAM, STS and KMS only as their statements allow (on the same resources, under the same conditions), and
every Deny any of them carries. A role created by a pipeline role must carry this boundary or the workload
boundary, and no pipeline role may change a boundary, so whatever a commit asks for, the pipeline cannot
mint a role with more than this ceiling.

The Denies are copied because an inline policy is no guard against the role that may rewrite it: the
update role may put any policy on the other pipeline roles (within this boundary). A Deny meant for
some pipeline roles only says so itself, with an `aws:PrincipalArn` condition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from cdktn_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement
from cdktn_provider_aws.iam_policy import IamPolicy
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from modules.iam import policy_document, statement
from modules.plan_role import covers, without_covered

# Services whose permissions the boundary copies statement by statement, with their resources and
# conditions, instead of by service on "*": IAM and STS, so that a role the pipeline may change or create
# still creates and changes roles only inside a boundary; and KMS, since `kms:*` on "*" would let the update
# role give another pipeline role any key of the account (and, with kms:TagResource, claim one by its tags).
SCOPED_SERVICES = ("iam", "sts", "kms")
# The KMS actions a boundary may still hold on "*": IAM authorizes CreateKey and ListAliases on "*" only,
# since their API names no key (Service Authorization Reference, "Actions defined by AWS Key Management
# Service": no resource type); and TagResource as CreateKey calls it for the tags of the key it makes, which
# takes a grant "in an IAM policy that isn't restricted to particular KMS keys" (KMS developer guide,
# "Controlling access to tags"). Any other KMS grant on "*" is refused (boundary_statements).
KMS_ACTIONS_WITHOUT_RESOURCE_SCOPE = ("kms:CreateKey", "kms:ListAliases", "kms:TagResource")
# Every field of a statement, for copying one with some changed.
STATEMENT_FIELDS = (
    "sid",
    "effect",
    "actions",
    "not_actions",
    "resources",
    "not_resources",
    "principals",
    "not_principals",
    "condition",
)


def ceiling_actions(actions: Iterable[str]) -> list[str]:
    """`actions`, sorted, without those another wildcard among them already covers (`s3:Get*` under `s3:*`,
    `codepipeline:ListActionExecutions` under `codepipeline:List*`): a boundary near IAM's size limit
    spends no characters on them."""
    # `covers`, not fnmatch: a `?` never stands for a wildcard, so no action is dropped that is not covered
    # (this also merges the actions of Denies, where dropping one too many would lift a Deny).
    return sorted(without_covered(sorted(set(actions))))


def copied(item: DataAwsIamPolicyDocumentStatement, **changes: Any) -> DataAwsIamPolicyDocumentStatement:
    """`item` with `changes` (field name to value; `sid=None` leaves the copy without one)."""
    fields: dict[str, Any] = {name: getattr(item, name) for name in STATEMENT_FIELDS}
    fields["effect"] = fields["effect"] or "Allow"
    return DataAwsIamPolicyDocumentStatement(**{**fields, **changes})


def _service(action: str) -> str:
    # Action names are case-insensitive to IAM: `KMS:Decrypt` is KMS's too.
    return action.split(":")[0].lower()


def _combined(
    first: DataAwsIamPolicyDocumentStatement, second: DataAwsIamPolicyDocumentStatement
) -> DataAwsIamPolicyDocumentStatement | None:
    """One statement for both when they differ only in their resources (their union) or only in their actions
    (theirs): exactly what the two allowed, or denied, together. None when they differ in more."""
    if first.resources and second.resources and copied(first, resources=None) == copied(second, resources=None):
        # Resource patterns match as action patterns do (`*` and `?`, here case-sensitive): `covers` holds.
        return copied(first, resources=without_covered([*first.resources, *second.resources]))
    if first.actions and second.actions and copied(first, actions=None) == copied(second, actions=None):
        return copied(first, actions=ceiling_actions([*first.actions, *second.actions]))
    return None


def _one_per_rule(items: Iterable[DataAwsIamPolicyDocumentStatement]) -> list[DataAwsIamPolicyDocumentStatement]:
    """`items`, every two that _combined makes one made one (each apply role's deploy-role grant, on every
    later stage's role; every grant on the pipeline's key), in the order each rule first appears."""
    merged: list[DataAwsIamPolicyDocumentStatement] = []
    for item in items:
        position = len(merged)
        while (partner := next((i for i, kept in enumerate(merged) if _combined(kept, item)), None)) is not None:
            item = _combined(merged.pop(partner), item) or item
            position = min(position, partner)
        merged.insert(position, item)
    return merged


def _unconditional_deny(item: DataAwsIamPolicyDocumentStatement) -> bool:
    """A Deny of its actions on its resources whoever asks, whatever the request: one that covers others."""
    return (
        item.effect == "Deny"
        and bool(item.actions)
        and bool(item.resources)
        and not (item.condition or item.not_actions or item.not_resources or item.principals or item.not_principals)
    )


def _denied_elsewhere(
    action: str, resources: Sequence[str], others: Sequence[DataAwsIamPolicyDocumentStatement]
) -> bool:
    """Whether `others` deny `action` on each of `resources`."""
    return all(
        any(
            any(covers(a, action) for a in other.actions or [])
            and any(covers(r, resource) for r in other.resources or [])
            for other in others
        )
        for resource in resources
    )


def _without_what_others_deny(
    denies: Sequence[DataAwsIamPolicyDocumentStatement], own: Sequence[DataAwsIamPolicyDocumentStatement]
) -> list[DataAwsIamPolicyDocumentStatement]:
    """The copied `denies` without each action that another Deny, one with no condition, already denies on
    every resource of its statement (`iam:DeleteRolePermissionsBoundary` on the update role, denied on every
    role by NeverRemoveABoundary), and without a Deny left with none. An action is dropped only for the Denies
    as they are at that point, and one of those loses an action later only to another that denies it in
    turn: together the Denies still deny every request they did (tests/infra/test_escalation.py checks one
    request per action and resource of every role's Deny)."""
    kept = list(denies)
    for index, item in enumerate(kept):
        if not (item.actions and item.resources):
            continue
        others = [s for s in (*own, *kept[:index], *kept[index + 1 :]) if _unconditional_deny(s)]
        kept[index] = copied(
            item, actions=[a for a in item.actions if not _denied_elsewhere(a, item.resources, others)]
        )
    return [item for item in kept if item.actions or item.not_actions]


def _refuse_kms_on_every_key(item: DataAwsIamPolicyDocumentStatement) -> None:
    """A KMS grant on "*" that names a key would be one on every key of the account in the boundary:
    the synth fails, for the role's statement to name the keys."""
    unscoped = [
        a
        for a in item.actions or []
        if _service(a) == "kms" and a not in KMS_ACTIONS_WITHOUT_RESOURCE_SCOPE and "*" in (item.resources or [])
    ]
    if unscoped:
        raise ValueError(f"a pipeline role grants {', '.join(unscoped)} on every key: name the keys")


def boundary_statements(
    *,
    role_statements: Iterable[Sequence[DataAwsIamPolicyDocumentStatement]],
    protected_policy_arns: Sequence[str],
    denied: Sequence[DataAwsIamPolicyDocumentStatement] = (),
    reviewer_arn: str,
) -> list[DataAwsIamPolicyDocumentStatement]:
    """The ceiling of the given roles' policies: their actions, their IAM/STS/KMS statements' grants as
    written, and every one of their Denies besides the boundary's own; `denied`, Denies for the boundary
    alone (one that spares some of its roles, say so by aws:PrincipalArn). `reviewer_arn`: the one role
    that may answer approvals.

    The copies carry no Sid, and statements that differ only in their resources or only in their actions are
    one (_one_per_rule), a Deny's action another Deny covers dropped (_without_what_others_deny): the largest
    boundary is near IAM's 6,144 characters, and each rule is still the roles' own, in their policies."""
    own = [
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
    denies = [copied(item, sid=None) for item in denied]
    for statements in role_statements:
        for item in statements:
            if (item.effect or "Allow") != "Allow":
                denies.append(copied(item, sid=None))
                continue
            item_actions = list(item.actions or [])
            actions |= {a for a in item_actions if _service(a) not in SCOPED_SERVICES}
            # Only the scoped actions: the statement's others are in PipelineActions already.
            if in_scope := [a for a in item_actions if _service(a) in SCOPED_SERVICES]:
                scoped.append(copied(item, sid=None, actions=in_scope))
    scoped = _one_per_rule(scoped)
    for item in scoped:
        _refuse_kms_on_every_key(item)
    return [
        statement(
            sid="PipelineActions",
            actions=ceiling_actions(actions),
            # A boundary is a ceiling, not a grant: each role's own policy scopes the resources.
            resources=["*"],
        ),
        *scoped,
        *own,
        *_without_what_others_deny(_one_per_rule(denies), own),
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
