"""An offline evaluator of AWS's IAM decision for one request, over the policies Terraform would deploy.

    decision = evaluate(Request("iam:UpdateAssumeRolePolicy", role_arn, context), principal)

What it models (IAM User Guide, "Policy evaluation logic", for a principal and a resource of one account):
- an explicit Deny in any policy that applies (identity, permissions boundary, resource policy) wins;
- otherwise an identity policy must Allow, and, where the principal has a permissions boundary, the
  boundary must Allow too (the effective permissions are their intersection);
- `Action`/`NotAction` patterns with `*` and `?`, case-insensitive; `Resource`/`NotResource` ARN patterns
  with `*` and `?`, case-sensitive;
- the condition operators the project's policies use: String(Not)Equals, String(Not)Like, Arn(Not)Equals,
  Arn(Not)Like, Null, Bool, each with `...IfExists`, and the ForAnyValue:/ForAllValues: set operators.
  Values within one condition are ORed, conditions of one statement ANDed; a negated operator is true
  when its key is absent (IAM User Guide, "Condition operators").

What it does not model, so a test must not rely on it: a resource policy's Allow (same-account grants to a
role are never needed here: only their Denies are read), SCPs/RCPs, session policies, policy variables.
Anything outside what it models (an unknown operator, a Terraform reference left unresolved, a list
value for a single-valued operator) raises instead of answering, so a test cannot pass by accident.

Policies are read from the synthesized stacks (`cdktf.out/stacks/<stack>/cdk.tf.json`), where every policy
is a `data.aws_iam_policy_document` whose `statement` blocks use Terraform's names (`actions`,
`not_actions`, `resources`, `condition` with `test`/`variable`/`values`); `Stacks.principal` finds a role's
inline policies and its boundary (also in another stack of the same account, such as the workload
boundary that bootstrap-<stage> creates), resolving Terraform references to the ARNs AWS would see.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from typing import Any

Document = Mapping[str, Any]
ContextValue = str | bool | Sequence[str]

STRING_OPERATORS = {"StringEquals", "StringNotEquals", "StringLike", "StringNotLike"}
ARN_OPERATORS = {"ArnEquals", "ArnNotEquals", "ArnLike", "ArnNotLike"}
OPERATORS = STRING_OPERATORS | ARN_OPERATORS | {"Null", "Bool"}
NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}
REFERENCE = re.compile(r"\$\{([^}]*)\}")


@cache
def _pattern(glob: str, *, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: `*` any run of characters, `?` one character; everything else literal."""
    translated = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(translated, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def matches(glob: str, value: str, *, ignore_case: bool = False) -> bool:
    if "${" in glob or "${" in value:
        raise ValueError(f"unresolved Terraform reference in {glob!r} or {value!r}")
    return _pattern(glob, ignore_case=ignore_case).fullmatch(value) is not None


@dataclass(frozen=True)
class Condition:
    test: str
    variable: str
    values: tuple[str, ...]

    def holds(self, context: Mapping[str, ContextValue]) -> bool:
        test, qualifier = self.test, None
        if ":" in test:
            qualifier, test = test.split(":", 1)
            if qualifier not in ("ForAnyValue", "ForAllValues"):
                raise ValueError(f"unknown condition set operator {qualifier!r}")
        if_exists = test.endswith("IfExists")
        test = test.removesuffix("IfExists")
        if test not in OPERATORS:
            raise ValueError(f"condition operator {self.test!r} is not modelled")
        present = self.variable in context
        if test == "Null":
            if self.values not in (("true",), ("false",)):
                raise ValueError(f"Null takes 'true' or 'false', not {self.values}")
            return (not present) == (self.values == ("true",))
        if not present:
            # ForAllValues over no values is true; a negated operator (or ...IfExists) on an absent key is true.
            return qualifier == "ForAllValues" or if_exists or (qualifier is None and test in NEGATED)
        value = context[self.variable]
        if qualifier is None:
            if not isinstance(value, str | bool):
                raise ValueError(f"{self.variable} is multi-valued: use ForAnyValue:/ForAllValues: with {self.test}")
            return self._single(test, value)
        if isinstance(value, str | bool):
            raise ValueError(f"{self.test} needs a multi-valued key; {self.variable} is {value!r}")
        if qualifier == "ForAnyValue":
            return any(self._single(test, item) for item in value)
        return all(self._single(test, item) for item in value)

    def _single(self, test: str, value: str | bool) -> bool:
        if test == "Bool":
            if not isinstance(value, bool):
                raise ValueError(f"Bool on {self.variable} needs a boolean context value, not {value!r}")
            return str(value).lower() in (v.lower() for v in self.values)
        if isinstance(value, bool):
            raise ValueError(f"{test} on {self.variable} needs a string context value, not {value!r}")
        if test in ("StringEquals", "StringNotEquals"):
            found = value in self.values
        else:
            # StringLike and every ARN operator take wildcards (ArnEquals behaves as ArnLike in IAM).
            found = any(matches(pattern, value) for pattern in self.values)
        return not found if test in NEGATED else found


@dataclass(frozen=True)
class Statement:
    sid: str
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        if self.effect not in ("Allow", "Deny"):
            raise ValueError(f"{self.sid}: effect {self.effect!r}")
        if bool(self.actions) == bool(self.not_actions):
            raise ValueError(f"{self.sid}: exactly one of actions and not_actions")
        if bool(self.resources) == bool(self.not_resources):
            raise ValueError(f"{self.sid}: exactly one of resources and not_resources (an identity policy needs one)")

    @classmethod
    def from_document(cls, block: Document) -> Statement:
        """One `statement` block of a synthesized `data.aws_iam_policy_document`."""
        return cls(
            sid=str(block.get("sid", "")),
            effect=str(block.get("effect", "Allow")),
            actions=tuple(block.get("actions") or ()),
            not_actions=tuple(block.get("not_actions") or ()),
            resources=tuple(block.get("resources") or ()),
            not_resources=tuple(block.get("not_resources") or ()),
            conditions=tuple(
                Condition(c["test"], c["variable"], tuple(c["values"])) for c in block.get("condition") or ()
            ),
        )

    def applies(self, request: Request) -> bool:
        if self.actions:
            action_matches = any(matches(a, request.action, ignore_case=True) for a in self.actions)
        else:
            action_matches = not any(matches(a, request.action, ignore_case=True) for a in self.not_actions)
        if not action_matches:
            return False
        if self.resources:
            resource_matches = any(matches(r, request.resource) for r in self.resources)
        else:
            resource_matches = not any(matches(r, request.resource) for r in self.not_resources)
        return resource_matches and all(c.holds(request.context) for c in self.conditions)


@dataclass(frozen=True)
class Policy:
    name: str
    statements: tuple[Statement, ...]

    @classmethod
    def from_blocks(cls, name: str, blocks: Iterable[Document]) -> Policy:
        return cls(name, tuple(Statement.from_document(block) for block in blocks))

    def matching(self, request: Request, effect: str) -> list[str]:
        return [f"{self.name}:{s.sid}" for s in self.statements if s.effect == effect and s.applies(request)]


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Principal:
    """A role as IAM evaluates its sessions: its ARN (aws:PrincipalArn), inline policies and boundary."""

    arn: str
    identity: tuple[Policy, ...]
    boundary: Policy | None = None


class Outcome(Enum):
    ALLOWED = "allowed"
    EXPLICITLY_DENIED = "explicitly denied"
    NOT_ALLOWED = "not allowed by the identity policies"
    OUTSIDE_THE_BOUNDARY = "not allowed by the permissions boundary"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    # The statements that decided it, as "<policy>:<sid>": the Denies, or the Allows that matched.
    statements: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED

    def __str__(self) -> str:
        return f"{self.outcome.value} ({', '.join(self.statements) or 'no statement matched'})"


def evaluate(request: Request, principal: Principal, *, resource_policies: Sequence[Policy] = ()) -> Decision:
    """AWS's decision for `principal` making `request` (aws:PrincipalArn is added to its context)."""
    request = Request(request.action, request.resource, {"aws:PrincipalArn": principal.arn, **request.context})
    boundary = (principal.boundary,) if principal.boundary else ()
    denies = [
        sid
        for policy in (*principal.identity, *boundary, *resource_policies)
        for sid in policy.matching(request, "Deny")
    ]
    if denies:
        return Decision(Outcome.EXPLICITLY_DENIED, tuple(denies))
    allows = [sid for policy in principal.identity for sid in policy.matching(request, "Allow")]
    if not allows:
        return Decision(Outcome.NOT_ALLOWED)
    if principal.boundary and not principal.boundary.matching(request, "Allow"):
        return Decision(Outcome.OUTSIDE_THE_BOUNDARY, tuple(allows))
    return Decision(Outcome.ALLOWED, tuple(allows))


def fake_id(seed: str, length: int = 32) -> str:
    """A stable stand-in for an id AWS generates (a connection's id, a secret's ARN suffix)."""
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


def fake_uuid(seed: str) -> str:
    """A stable stand-in for a UUID AWS generates (a KMS key id), of a real one's 36 characters: a policy's
    size measured with it is the size IAM receives."""
    digits = fake_id(seed)
    return "-".join(digits[start:end] for start, end in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32)))


class Stack:
    """One synthesized stack: its account, region, policy documents and the ARNs of its resources."""

    def __init__(self, name: str, document: Document) -> None:
        self.name = name
        self.document = document
        provider = next(p for p in document["provider"]["aws"] if "alias" not in p)
        self.account: str = provider["allowed_account_ids"][0]
        self.region: str = provider["region"]

    def resources(self, kind: str) -> dict[str, Document]:
        return dict(self.document.get("resource", {}).get(kind, {}))

    def data(self, kind: str) -> dict[str, Document]:
        return dict(self.document.get("data", {}).get(kind, {}))

    def attribute(self, reference: str) -> str:
        """What AWS would hold for `type.name.attribute` (or `data.type.name.attribute`) of this stack."""
        parts = reference.split(".")
        if parts[0] == "data":
            _, kind, name, attribute = parts
            body = self.data(kind)[name]
        else:
            kind, name, attribute = parts
            body = self.resources(kind)[name]
        account, region = self.account, self.region
        if attribute == "name" and "name" in body:
            return str(body["name"])
        if attribute in ("bucket", "id") and kind == "aws_s3_bucket":
            return str(body["bucket"])
        if attribute != "arn":
            raise KeyError(f"{self.name}: no model of {reference}")
        arns = {
            "aws_iam_role": lambda: f"arn:aws:iam::{account}:role{body.get('path', '/')}{body['name']}",
            "aws_iam_policy": lambda: f"arn:aws:iam::{account}:policy{body.get('path', '/')}{body['name']}",
            "aws_s3_bucket": lambda: f"arn:aws:s3:::{body['bucket']}",
            "aws_dynamodb_table": lambda: f"arn:aws:dynamodb:{region}:{account}:table/{body['name']}",
            "aws_kms_key": lambda: f"arn:aws:kms:{region}:{account}:key/{fake_uuid(self.name + name)}",
            "aws_ecr_repository": lambda: f"arn:aws:ecr:{region}:{account}:repository/{body['name']}",
            "aws_sns_topic": lambda: f"arn:aws:sns:{region}:{account}:{body['name']}",
            "aws_cloudwatch_log_group": lambda: f"arn:aws:logs:{region}:{account}:log-group:{body['name']}",
            "aws_codepipeline": lambda: f"arn:aws:codepipeline:{region}:{account}:{body['name']}",
            "aws_codebuild_project": lambda: f"arn:aws:codebuild:{region}:{account}:project/{body['name']}",
            "aws_codestarconnections_connection": lambda: (
                f"arn:aws:codestar-connections:{region}:{account}:connection/{fake_id(self.name + name, 36)}"
            ),
            "aws_secretsmanager_secret": lambda: (
                f"arn:aws:secretsmanager:{region}:{account}:secret:{body['name']}-{fake_id(body['name'], 6)}"
            ),
        }
        if kind not in arns:
            raise KeyError(f"{self.name}: no ARN model for {kind}")
        return arns[kind]()

    def resolve(self, value: Any) -> Any:
        """`value` with every `${...}` reference replaced by what AWS would see."""
        if isinstance(value, str):
            return REFERENCE.sub(lambda m: self.attribute(m.group(1)), value)
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        return value

    def policy(self, reference: str) -> Policy:
        """The policy a `${data.aws_iam_policy_document.X.json}` reference names, references resolved."""
        match = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.([^.}]+)\.json\}", reference)
        if match is None:
            raise ValueError(f"{self.name}: {reference!r} is not a policy document reference")
        name = match.group(1)
        blocks = self.data("aws_iam_policy_document")[name]["statement"]
        return Policy.from_blocks(f"{self.name}/{name}", self.resolve(blocks))


class Stacks:
    """Every synthesized stack, for finding a role and its boundary across the stacks of its account."""

    def __init__(self, documents: Mapping[str, Document]) -> None:
        self.stacks = {name: Stack(name, document) for name, document in documents.items()}

    def __getitem__(self, name: str) -> Stack:
        return self.stacks[name]

    def managed_policy(self, arn: str) -> Policy:
        found = [
            stack.policy(body["policy"])
            for stack in self.stacks.values()
            for name, body in stack.resources("aws_iam_policy").items()
            if stack.attribute(f"aws_iam_policy.{name}.arn") == arn
        ]
        if len(found) != 1:
            raise KeyError(f"{len(found)} managed policies have the ARN {arn}")
        return found[0]

    def principal(self, stack_name: str, role_name: str) -> Principal:
        """The role named `role_name` in `stack_name`, with its inline policies and its boundary."""
        stack = self.stacks[stack_name]
        roles = {n: b for n, b in stack.resources("aws_iam_role").items() if b["name"] == role_name}
        if len(roles) != 1:
            raise KeyError(f"{stack_name} has {len(roles)} roles named {role_name}")
        ((logical, role),) = roles.items()
        if role.get("managed_policy_arns") or stack.resources("aws_iam_role_policy_attachment"):
            raise ValueError(f"{stack_name}: attached managed policies are not modelled")
        names = {f"${{aws_iam_role.{logical}.name}}", role_name}
        identity = tuple(
            stack.policy(body["policy"])
            for body in stack.resources("aws_iam_role_policy").values()
            if body["role"] in names
        )
        boundary_arn = role.get("permissions_boundary")
        boundary = self.managed_policy(stack.resolve(boundary_arn)) if boundary_arn else None
        return Principal(stack.attribute(f"aws_iam_role.{logical}.arn"), identity, boundary)
