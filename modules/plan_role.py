"""The read-only role in a gamma/prod account that the pipeline's Plan actions and drift check assume.

A plan runs before any approval, so whoever can act as the pipeline's plan role must not be able to
change a stage. This role may read what deploying may touch (the read-only part of deploy_permissions)
and take and release Terraform's state lock, and nothing else:
- every Allow of the deploy permissions is narrowed to its Describe/Get/List(/Head) actions, on the same
  resources and under the same conditions; every Deny of them is kept as it is;
- the lock: the S3 lock file `<state key>.tflock` may be created and deleted, the lock table's lock item
  put and deleted; the state objects themselves stay read-only, and so does the table's state digest;
- no secret value is readable, whatever a `Get*` would match: an explicit Deny wins over any Allow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from cdktn_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from modules.deploy_role import DeployScope, break_glass_statement, deploy_permissions, pipeline_role_trust
from modules.iam import policy_document, statement

# What a service-wide or leading wildcard is narrowed to: `svc:*` -> `svc:Describe*`, `svc:Get*`, `svc:List*`,
# and `svc:*Alarm*` -> `svc:Describe*Alarm*`... (each a subset of the original pattern that only reads).
WILDCARD_READ_VERBS = ("Describe", "Get", "List")
# The verbs of an explicit action (or of a pattern starting with one) that only read. A verb is a whole
# CamelCase word: what follows it is an upper-case letter, a wildcard or nothing ("Get*", "GetObject").
READ_VERB = re.compile(r"^(Describe|Get|List|Head)(?=[A-Z*?]|$)")
# Values no plan needs and that could hold secret material; denied whatever an Allow (a `Get*`) matches.
# kms:Decrypt is no read verb, so never allowed here; the deny keeps it so whatever a later Allow says.
# The Terraform state (SSE-S3) and the Describe calls on encrypted resources need no kms:Decrypt.
SECRET_VALUE_ACTIONS = ("secretsmanager:GetSecretValue", "kms:Decrypt")


def read_only_actions(action: str) -> list[str]:
    """The read-only actions within one action pattern; [] when it has none.

    Fails closed: a pattern that neither starts with a read verb nor with `*` (`s3:PutObject`, `ec2:?et*`,
    `*`) reads nothing here.
    """
    service, separator, name = action.partition(":")
    if not separator or not service or "*" in service or "?" in service:
        return []
    if name.startswith("*"):
        return [f"{service}:{verb}{name}" for verb in WILDCARD_READ_VERBS]
    return [action] if READ_VERB.match(name) else []


def covers(pattern: str, other: str) -> bool:
    """Whether every action `other` matches is also matched by `pattern` (`ec2:Describe*` covers
    `ec2:Describe*Vpc*`): `pattern`'s `*` may stand for any part of `other`, wildcards included; a `?` in
    `pattern` could stand for one of `other`'s wildcards, which is not covering, so it never covers."""
    if "?" in pattern:
        return False
    glob = "".join(".*" if c == "*" else re.escape(c) for c in pattern)
    return re.fullmatch(glob, other, re.DOTALL) is not None


def without_covered(actions: Iterable[str]) -> list[str]:
    """`actions` in order, without repeats and without a pattern another one covers (of two that cover
    each other, such as `s3:Get*` and `s3:Get**`, the first)."""
    unique = list(dict.fromkeys(actions))
    return [
        a
        for i, a in enumerate(unique)
        if not any(covers(b, a) and (j < i or not covers(a, b)) for j, b in enumerate(unique) if j != i)
    ]


def read_only_statements(
    statements: Iterable[DataAwsIamPolicyDocumentStatement],
) -> list[DataAwsIamPolicyDocumentStatement]:
    """Each Allow narrowed to its read-only actions (same sid, resources and conditions), Allows left with
    none dropped; Denies kept as they are. An Allow with NotAction has no read-only form: refused."""
    narrowed = []
    for item in statements:
        if (item.effect or "Allow") == "Deny":
            narrowed.append(item)
            continue
        if item.not_actions:
            raise ValueError(f"statement {item.sid}: an Allow with NotAction cannot be narrowed to reads")
        actions = without_covered(read for action in item.actions or () for read in read_only_actions(action))
        if actions:
            narrowed.append(
                DataAwsIamPolicyDocumentStatement(
                    sid=item.sid,
                    effect="Allow",
                    actions=actions,
                    resources=item.resources,
                    not_resources=item.not_resources,
                    principals=item.principals,
                    condition=item.condition,
                )
            )
    return narrowed


def state_lock_statements(scope: DeployScope) -> list[DataAwsIamPolicyDocumentStatement]:
    """Taking and releasing the lock of the stage's stacks' state, and nothing more of the state.

    The S3 backend (use_lockfile, Terraform's internal/backend/remote-state/s3) puts `<key>.tflock` with
    If-None-Match and deletes it to unlock; with dynamodb_table set it also puts and deletes the item whose
    LockID is `<bucket>/<key>`. The item `<bucket>/<key>-md5`, the state's digest, is written only with the
    state, so the condition leaves it out. The stage's one workload stack is named after the stage
    (stacks/workload.py), its key `<stage>/terraform.tfstate` (stacks/base.py): the same key the deploy
    permissions' state statement holds to.
    """
    state_key = f"{scope.stage_name}/terraform.tfstate"
    return [
        statement(
            sid="TerraformLockFiles",
            actions=["s3:PutObject", "s3:DeleteObject"],
            resources=[f"{scope.state_bucket_arn}/{state_key}.tflock"],
        ),
        statement(
            sid="TerraformLockItems",
            actions=["dynamodb:PutItem", "dynamodb:DeleteItem"],
            resources=[scope.lock_table_arn],
            # LeadingKeys is the item's partition key (LockID), a set: ForAllValues, and PutItem and
            # DeleteItem always name one. The table belongs to this account's one state bucket.
            conditions=[("ForAllValues:StringLike", "dynamodb:LeadingKeys", [f"*/{state_key}"])],
        ),
    ]


def plan_permissions(scope: DeployScope) -> list[DataAwsIamPolicyDocumentStatement]:
    """What planning the stage's stacks (and the pipeline's preflight before it) may do: read, and lock."""
    return [
        *read_only_statements(deploy_permissions(scope)),
        *state_lock_statements(scope),
        statement(sid="NeverReadSecretValues", effect="Deny", actions=SECRET_VALUE_ACTIONS, resources=["*"]),
    ]


class PlanRole(Construct):
    """The role in a gamma/prod account that the pipeline's plan role assumes for Plan and the drift check,
    and that the stage's break-glass administrators may assume to look without touching."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deploy_scope: DeployScope,
        role_name: str,
        pipeline_account_id: str,
        pipeline_plan_role_arn: str,
        break_glass_principals: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        trust = [pipeline_role_trust(pipeline_account_id, pipeline_plan_role_arn)]
        if break_glass_principals:
            trust.append(break_glass_statement(deploy_scope.account_id, break_glass_principals))
        self.role = IamRole(
            self,
            "role",
            name=role_name,
            path=deploy_scope.iam_path,
            description=f"Plans Canvalo {deploy_scope.stage_name} read-only; assumed by the pipeline's plan role",
            assume_role_policy=policy_document(self, "trust", trust).json,
        )
        permissions = policy_document(self, "permissions", plan_permissions(deploy_scope))
        IamRolePolicy(self, "plan", role=self.role.name, name="plan", policy=permissions.json)
