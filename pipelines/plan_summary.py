"""Summarize saved Terraform plans for the person who approves them (R4.3), and refuse dangerous ones.

    python -m pipelines.plan_summary [STACK=]PLAN_JSON... [--allow-destroy [STACK:]ADDRESS]... [--output FILE]

Each PLAN_JSON is `terraform show -json <saved plan>` (Terraform's JSON plan format); the stack name is
given as `STACK=` or taken from the file's directory. The Markdown summary lists, per stack, what is
created, updated, replaced and destroyed, and flags what a reviewer must not miss:
- replacing or destroying a stateful resource (a bucket, log group, secret, table, repository, key):
  its data goes with it. Either is refused (exit status 3) unless the address is named with
  `--allow-destroy` or in `CANVALO_ALLOW_DESTROY` (comma-separated), so losing data takes a decision;
- IAM changes that grant more: a new policy or attachment, or a policy document whose allowed
  (action, resource, principal, condition) combinations grow or whose denials shrink;
- broadening (`broadenings`), what a person must approve: any of the above, a resource opened to the
  internet, a change that prepares data loss, a destroy or replace of a type not on `REPLACEABLE_TYPES`,
  a change to the pipeline's own gates. It fails closed: what it cannot read is an error, what it does not
  know is judged by the general rules, never passed.
Bad input (unreadable file, not a plan, an action list or before/after Terraform does not write) is one line
on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Resources whose replacement or destruction loses data that Terraform cannot bring back.
STATEFUL_TYPES = frozenset(
    {
        "aws_s3_bucket",
        "aws_cloudwatch_log_group",
        "aws_secretsmanager_secret",
        "aws_dynamodb_table",
        "aws_ecr_repository",
        "aws_kms_key",
        "aws_db_instance",
        "aws_rds_cluster",
        "aws_efs_file_system",
        "aws_route53_zone",
        "aws_cognito_user_pool",
    }
)
# Attributes that hold IAM policy documents (JSON strings), by resource type.
POLICY_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "aws_iam_policy": ("policy",),
    "aws_iam_role_policy": ("policy",),
    "aws_iam_user_policy": ("policy",),
    "aws_iam_group_policy": ("policy",),
    "aws_iam_role": ("assume_role_policy", "inline_policy"),
    "aws_s3_bucket_policy": ("policy",),
    "aws_kms_key": ("policy",),
    "aws_kms_key_policy": ("policy",),
    "aws_sns_topic_policy": ("policy",),
    "aws_sns_topic": ("policy",),
    "aws_ecr_repository_policy": ("policy",),
    "aws_secretsmanager_secret_policy": ("policy",),
    "aws_sqs_queue_policy": ("policy",),
}
# Creating one of these attaches permissions to a principal even without a document of its own.
ATTACHMENT_TYPES = frozenset(
    {
        "aws_iam_role_policy_attachment",
        "aws_iam_policy_attachment",
        "aws_iam_user_policy_attachment",
        "aws_iam_group_policy_attachment",
        "aws_iam_role_policies_exclusive",
        "aws_iam_role_policy_attachments_exclusive",
    }
)
ALLOW_DESTROY_VARIABLE = "CANVALO_ALLOW_DESTROY"
# Terraform's `change.actions`, as documented for the JSON plan format, and what a reviewer calls them.
ACTIONS: dict[tuple[str, ...], str] = {
    ("no-op",): "no-op",
    ("read",): "read",
    ("create",): "create",
    ("update",): "update",
    ("delete",): "destroy",
    ("delete", "create"): "replace",
    ("create", "delete"): "replace",
    ("forget",): "forget",
}
COUNTED = ("create", "update", "replace", "destroy")
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3


class PlanError(Exception):
    """The input is not a plan this tool can read; the message says which file and what to do."""


@dataclass(frozen=True)
class ResourceChange:
    address: str
    type: str
    action: str
    before: Any
    after: Any
    after_unknown: Any

    @property
    def removes_data(self) -> bool:
        return self.type in STATEFUL_TYPES and self.action in ("destroy", "replace")


@dataclass(frozen=True)
class IamWidening:
    address: str
    grants: tuple[str, ...]


@dataclass
class StackPlan:
    stack: str
    changes: list[ResourceChange]
    output_changes: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {action: sum(1 for c in self.changes if c.action == action) for action in COUNTED}

    @property
    def has_changes(self) -> bool:
        return any(c.action in COUNTED for c in self.changes) or bool(self.output_changes)

    @property
    def data_losses(self) -> list[ResourceChange]:
        return [c for c in self.changes if c.removes_data]

    def iam_widenings(self) -> list[IamWidening]:
        return [w for c in self.changes if (w := iam_widening(c)) is not None]


def classify(actions: Sequence[str], where: str) -> str:
    try:
        return ACTIONS[tuple(actions)]
    except KeyError:
        raise PlanError(
            f"{where}: unknown change actions {list(actions)}: is this `terraform show -json` output?"
        ) from None


# The actions whose `after` Terraform always writes as an object (null only for delete and forget).
NEEDS_AFTER = frozenset({"create", "update", "replace"})


def _side(change: Mapping[str, Any], key: str, where: str, address: str) -> Any:
    """`change.before` or `change.after`: an object or null, anything else is not a plan this tool can read."""
    value = change[key]
    if value is not None and not isinstance(value, Mapping):
        raise PlanError(
            f"{where}: `{key}` of {address} is {type(value).__name__}, not an object: "
            "is this `terraform show -json` output?"
        )
    return value


def parse_changes(entries: Iterable[Mapping[str, Any]], where: str) -> list[ResourceChange]:
    """`resource_changes` (or `resource_drift`) of a JSON plan, data sources left out.

    Fails closed: an action list Terraform does not document, a missing `before`/`after`, one that is not an
    object, or a create/update/replace without `after` raises PlanError rather than being summarized."""
    parsed = []
    for entry in entries:
        if entry.get("mode") == "data":
            continue
        try:
            change = entry["change"]
            address = str(entry["address"])
            action = classify(change["actions"], where)
            before, after = _side(change, "before", where, address), _side(change, "after", where, address)
            after_unknown = change.get("after_unknown")
            if after_unknown is not None and not isinstance(after_unknown, Mapping | bool):
                raise PlanError(f"{where}: `after_unknown` of {address} is neither an object nor a boolean")
            if action in NEEDS_AFTER and after is None:
                raise PlanError(f"{where}: the {action} of {address} has no `after`: cannot tell what it sets")
            parsed.append(
                ResourceChange(
                    address=address,
                    type=str(entry["type"]),
                    action=action,
                    before=before,
                    after=after,
                    after_unknown=after_unknown,
                )
            )
        except (KeyError, TypeError) as exc:
            raise PlanError(f"{where}: a resource change lacks {exc}: is this `terraform show -json` output?") from None
    return parsed


def parse_plan(stack: str, document: Mapping[str, Any], where: str) -> StackPlan:
    if not isinstance(document, Mapping) or "format_version" not in document:
        raise PlanError(f"{where}: no format_version: pass the output of `terraform show -json <saved plan>`")
    output_changes = {
        name: classify(change["actions"], where)
        for name, change in (document.get("output_changes") or {}).items()
        if tuple(change["actions"]) != ("no-op",)
    }
    return StackPlan(stack, parse_changes(document.get("resource_changes") or [], where), output_changes)


def load_plan(stack: str, path: Path) -> StackPlan:
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise PlanError(f"cannot read {path}: {exc.strerror}: pass `terraform show -json` output files") from None
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{path} is not JSON ({exc.msg} at line {exc.lineno}): pass `terraform show -json` output"
        ) from None
    return parse_plan(stack, document, str(path))


# -- IAM: which grants a change adds ---------------------------------------------------------------

# Attributes that hold a policy document whatever the resource type (an unlisted type's `policy` is read as
# one too); any other top-level attribute whose value is a document (an object with a Statement) is read as well.
DOCUMENT_ATTRIBUTES = (
    "policy",
    "assume_role_policy",
    "inline_policy",
    "access_policies",
    "access_policy",
    "policy_document",
    "resource_policy",
)
# Attributes naming attached managed policies (or inline policy names), and who they are attached to.
ATTACHED_POLICY_ATTRIBUTES = ("policy_arn", "policy_arns", "policy_names", "managed_policy_arns")
ATTACHMENT_TARGET_ATTRIBUTES = ("role", "role_name", "user", "group", "roles", "users", "groups")
# Group memberships: joining a group gets its policies. Attribute of the members, by type.
MEMBERSHIP_ATTRIBUTES = {"aws_iam_user_group_membership": "groups", "aws_iam_group_membership": "users"}
# Creating one of these hands out a long-term credential.
CREDENTIAL_TYPES = frozenset(
    {
        "aws_iam_access_key",
        "aws_iam_user_login_profile",
        "aws_iam_service_specific_credential",
        "aws_iam_signing_certificate",
        "aws_iam_user_ssh_key",
    }
)
# Marks a grant whose principal is anyone: `Principal: "*"`, `{"AWS": "*"}`, or an Allow with NotPrincipal.
ANYONE = "(anyone)"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _any_true(value: Any) -> bool:
    """Whether an `after_unknown` value marks anything unknown (it nests like the value it describes)."""
    if isinstance(value, Mapping):
        return any(_any_true(v) for v in value.values())
    if isinstance(value, list):
        return any(_any_true(v) for v in value)
    return value is True


def _unknown(change: ResourceChange, attribute: str) -> bool:
    """Whether Terraform knows `attribute` of the change's `after` only after apply."""
    if change.action == "destroy":
        return False
    return change.after_unknown is True or _any_true(_mapping(change.after_unknown).get(attribute))


def _documents(change_side: Any, attribute: str) -> list[Any]:
    """The policy documents of one attribute of a resource's before/after; a JSON string or blocks."""
    if not isinstance(change_side, Mapping):
        return []
    raw = change_side.get(attribute)
    if attribute == "inline_policy":
        return [_load_document(block.get("policy")) for block in _as_list(raw) if isinstance(block, Mapping)]
    return [_load_document(raw)]


def _load_document(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            return None
    return raw


def _unreadable_documents(change_side: Any, attribute: str) -> bool:
    """Whether an attribute holds text that is not a JSON object: a document nobody can check."""
    raw = _mapping(change_side).get(attribute)
    values = (
        [b.get("policy") for b in _as_list(raw) if isinstance(b, Mapping)] if attribute == "inline_policy" else [raw]
    )
    return any(isinstance(v, str) and v.strip() and not isinstance(_load_document(v), Mapping) for v in values)


def _is_document(value: Any) -> bool:
    document = _load_document(value)
    return isinstance(document, Mapping) and "Statement" in document


def policy_attributes(change: ResourceChange) -> list[str]:
    """The attributes of a change that hold policy documents: its type's listed ones, the usual names in any
    type, and any other top-level attribute whose before or after value is a policy document."""
    before, after = _mapping(change.before), _mapping(change.after)
    names = list(POLICY_ATTRIBUTES.get(change.type, ()))
    names += [n for n in DOCUMENT_ATTRIBUTES if n in before or n in after or _unknown(change, n)]
    names += [n for n in sorted({*before, *after}) if _is_document(before.get(n)) or _is_document(after.get(n))]
    return list(dict.fromkeys(names))


def _public(principal: Any) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, Mapping) and any("*" in _as_list(value) for value in principal.values())


def _principals(principal: Any) -> list[Any]:
    """A Principal element one principal at a time (`{"AWS": [a, b]}` is `{"AWS": a}` and `{"AWS": b}`), so
    removing one of several principals is not read as a new grant."""
    if not isinstance(principal, Mapping):
        return [principal]
    return [{kind: value} for kind, values in sorted(principal.items()) for value in _as_list(values)] or [principal]


def statements_of(documents: Iterable[Any], effect: str) -> set[str]:
    """Every (action, resource, principal, condition) an effect covers, one readable line each."""
    found: set[str] = set()
    for document in documents:
        if not isinstance(document, Mapping):
            continue
        for item in _as_list(document.get("Statement")):
            if not isinstance(item, Mapping) or item.get("Effect") != effect:
                continue
            actions = [f"{a}" for a in _as_list(item.get("Action"))] + [
                f"NOT {a}" for a in _as_list(item.get("NotAction"))
            ]
            resources = [f"{r}" for r in _as_list(item.get("Resource"))] + [
                f"NOT {r}" for r in _as_list(item.get("NotResource"))
            ]
            principals = [""]
            if "Principal" in item:
                principals = [
                    f" to {json.dumps(p, sort_keys=True)}" + (f" {ANYONE}" if _public(p) else "")
                    for p in _principals(item["Principal"])
                ]
            if "NotPrincipal" in item:
                principals = [f" to all but {json.dumps(item['NotPrincipal'], sort_keys=True)} {ANYONE}"]
            condition = json.dumps(item["Condition"], sort_keys=True) if item.get("Condition") else None
            for action in actions or ["(no action)"]:
                for resource in resources or ["(no resource)"]:
                    for principal in principals:
                        line = f"{effect} {action} on {resource}{principal}"
                        line += f" when {condition}" if condition else ""
                        found.add(line)
    return found


def _attachments(side: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(policy, principal) pairs a resource attaches; the principal is "" for a role's own list."""
    policies = [str(p) for a in ATTACHED_POLICY_ATTRIBUTES for p in _as_list(side.get(a))]
    targets = [f"{t}" for a in ATTACHMENT_TARGET_ATTRIBUTES for t in _as_list(side.get(a))] or [""]
    return {(policy, target) for policy in policies for target in targets}


def iam_widening(change: ResourceChange) -> IamWidening | None:
    """What a change grants that was not granted before: added Allow combinations or removed Deny ones in any
    policy document (a destroyed document's denials too), attached policies, group memberships, a removed or
    changed permissions boundary, new credentials. What is known only after apply is listed for review."""
    if change.action not in COUNTED:
        return None
    before = _mapping(change.before)
    after = {} if change.action == "destroy" else _mapping(change.after)
    grants: list[str] = []
    if change.type in CREDENTIAL_TYPES and change.action in ("create", "replace"):
        grants.append(f"creates a credential ({change.type})")
    if change.action != "destroy":
        if any(_unknown(change, a) for a in ATTACHED_POLICY_ATTRIBUTES):
            grants.append("attaches (known after apply)")
        attached = {policy for policy, _ in _attachments(after) - _attachments(before)}
        grants += [f"attaches {policy}" for policy in sorted(attached)]
        members = MEMBERSHIP_ATTRIBUTES.get(change.type)
        if members:
            joined = {str(m) for m in _as_list(after.get(members))} - {str(m) for m in _as_list(before.get(members))}
            grants += [f"group membership adds {member}" for member in sorted(joined)]
        boundary_before, boundary_after = before.get("permissions_boundary"), after.get("permissions_boundary")
        if _unknown(change, "permissions_boundary"):
            grants.append("permissions boundary is known only after apply")
        elif boundary_before and not boundary_after:
            grants.append(f"permissions boundary {boundary_before} removed")
        elif boundary_before and boundary_after != boundary_before:
            grants.append(f"permissions boundary changed from {boundary_before} to {boundary_after}")
    for attribute in policy_attributes(change):
        if _unknown(change, attribute):
            grants.append(f"{attribute} is known only after apply: review the code that builds it")
            continue
        if _unreadable_documents(after, attribute):
            grants.append(f"{attribute} is not a JSON policy document: review it")
        old, new = _documents(before, attribute), _documents(after, attribute)
        added = statements_of(new, "Allow") - statements_of(old, "Allow")
        removed_denials = statements_of(old, "Deny") - statements_of(new, "Deny")
        grants += sorted(added) + [f"no longer denied: {line}" for line in sorted(removed_denials)]
    return IamWidening(change.address, tuple(grants)) if grants else None


# -- broadening: what a person must approve --------------------------------------------------------

# Types whose replacement or destruction loses nothing and widens nothing, reviewed one by one. A destroy or
# replace of any other type, known or not, broadens. Not on it, on purpose: secrets and secret versions, SSM
# parameters, SQS queues, SNS topics and subscriptions (an email subscription must be confirmed again),
# buckets, tables, log groups, KMS keys, ECR repositories, Route53 zones (their data, values or delegation
# go with them); policy attachments and policies (a destroyed one may have carried a Deny the plan does not
# show); roles (trust policies elsewhere refer to the role's unique id); ECS services and load balancers
# (traffic stops); public-access blocks (their protections go with them); security groups.
REPLACEABLE_TYPES = frozenset(
    {
        # Deployment revisions: each image tag registers a new task definition revision and deregisters the
        # old one; everything a revision holds is in the configuration.
        "aws_ecs_task_definition",
        # Load balancer routing: rules, target groups and attachments are configuration; targets register again.
        "aws_lb_listener_rule",
        "aws_alb_listener_rule",
        "aws_lb_target_group",
        "aws_alb_target_group",
        "aws_lb_target_group_attachment",
        # DNS records: their values are in the configuration (the zone is not on the list).
        "aws_route53_record",
        # Monitoring configuration: the metrics stay in CloudWatch; an alarm's history is not data we keep.
        "aws_cloudwatch_metric_alarm",
        "aws_cloudwatch_composite_alarm",
        "aws_cloudwatch_dashboard",
        "aws_cloudwatch_log_metric_filter",
        # Auto scaling settings of the ECS service.
        "aws_appautoscaling_target",
        "aws_appautoscaling_policy",
        "aws_appautoscaling_scheduled_action",
        # Certificates: ACM keeps the key; a new certificate is issued and validated (validation is a waiter).
        "aws_acm_certificate",
        "aws_acm_certificate_validation",
        # Single security group rules: removing one only narrows; the rule that replaces it is checked as new.
        "aws_vpc_security_group_ingress_rule",
        "aws_vpc_security_group_egress_rule",
        "aws_security_group_rule",
    }
)
# Why a change broadens (Broadening.reason).
PERMISSIONS = "permissions"
PUBLIC = "public access"
NETWORK = "network"
DATA_LOSS = "data loss"
DESTROY = "destroy"
PIPELINE = "pipeline gate"
UNREADABLE = "unreadable"
PUBLIC_ACCESS_BLOCK_TYPES = frozenset({"aws_s3_bucket_public_access_block", "aws_s3_account_public_access_block"})
PUBLIC_ACCESS_BLOCK_FLAGS = (
    "block_public_acls",
    "block_public_policy",
    "ignore_public_acls",
    "restrict_public_buckets",
)
PUBLIC_ACLS = frozenset({"public-read", "public-read-write", "authenticated-read"})
LOAD_BALANCER_TYPES = frozenset({"aws_lb", "aws_alb", "aws_elb"})
SECURITY_GROUP_TYPES = frozenset({"aws_security_group", "aws_default_security_group"})
REGISTRY_POLICY_TYPES = frozenset({"aws_ecr_lifecycle_policy", "aws_ecr_repository_policy"})
REGISTRY_SWITCHES = ("image_tag_mutability", "force_delete")
CODEBUILD_GATE_ATTRIBUTES = ("source", "secondary_sources", "source_version", "environment", "service_role")
DETAIL_LENGTH = 300
BROADENING_TITLE = "## Broadening (needs a person's approval)"


@dataclass(frozen=True)
class Broadening:
    """One reason a change needs a person's approval; `detail` is one line."""

    address: str
    type: str
    reason: str
    detail: str


Finding = tuple[str, str]  # (reason, detail)


def broadenings(plan: StackPlan) -> list[Broadening]:
    """Every broadening of a stack's plan, in the plan's order."""
    return [
        Broadening(change.address, change.type, reason, _one_line(detail))
        for change in plan.changes
        for reason, detail in change_broadenings(change)
    ]


def broadens(plans: Sequence[StackPlan]) -> bool:
    """Whether any of the plans needs a person's approval before it is applied."""
    return any(broadenings(plan) for plan in plans)


def change_broadenings(change: ResourceChange) -> list[Finding]:
    """The rules, each on the change's before/after. A rule never passes what it cannot see: an unknown type
    meets the destroy rule and the general attribute rules; a value known only after apply is a finding."""
    if change.action not in COUNTED:  # no-op, read, forget (the object stays where it is)
        return []
    found: list[Finding] = []
    if change.action == "update" and change.before is None:
        found.append((UNREADABLE, "the plan has no `before` for this update: everything it sets is judged as new"))
    found += _destroyed(change)
    widening = iam_widening(change)
    found += [(PUBLIC if ANYONE in grant else PERMISSIONS, grant) for grant in (widening.grants if widening else ())]
    found += _exposed(change)
    found += _data_loss_prepared(change)
    found += _pipeline_gates(change)
    found += _registry_gates(change)
    return found


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= DETAIL_LENGTH else line[: DETAIL_LENGTH - 1] + "…"


def _destroyed(change: ResourceChange) -> list[Finding]:
    if change.action not in ("destroy", "replace") or change.type in REPLACEABLE_TYPES:
        return []
    detail = f"{change.action} of {change.type}, not a type whose replacement is reviewed as losing nothing"
    if change.type in STATEFUL_TYPES:
        detail += ": its data goes with it"
    found = [(DESTROY, detail)]
    if change.type in PUBLIC_ACCESS_BLOCK_TYPES:
        found.append((PUBLIC, "the public-access block goes, and its four protections with it"))
    return found


_ABSENT = object()
Predicate = Callable[[Any], bool]


def _at(side: Any, attribute: str, path: Sequence[str | int], default: Any) -> Any:
    """The value at `attribute` then `path` (block index or key) of a before/after; `default` when absent."""
    found = _mapping(side).get(attribute, _ABSENT)
    for step in path:
        if isinstance(step, int):
            items = _as_list(found) if found is not _ABSENT else []
            found = items[step] if len(items) > step else _ABSENT
        else:
            found = _mapping(found).get(step, _ABSENT)
    return default if found is _ABSENT else found


def _became(
    change: ResourceChange,
    attribute: str,
    bad: Predicate,
    *,
    on_create: bool,
    path: Sequence[str | int] = (),
    default: Any = _ABSENT,
) -> str:
    """Why `attribute` (then `path` inside it) now holds a `bad` value it did not hold before; "" if it does not.

    A create counts only `on_create` (exposure does, data-loss preparation does not). An absent value is
    `default` (the provider's), or not bad at all without one; a value known only after apply counts."""
    if change.action == "destroy" or (change.action != "update" and not on_create):
        return ""
    if _unknown(change, attribute):
        return f"{attribute} is known only after apply"
    new, old = _at(change.after, attribute, path, default), _at(change.before, attribute, path, default)
    if new is _ABSENT or not bad(new) or (change.before is not None and old is not _ABSENT and bad(old)):
        return ""
    name = ".".join([attribute, *(str(step) for step in path)])
    was = f"was {json.dumps(old)}, " if change.before is not None and old is not _ABSENT else ""
    return f"{name} {was}now {json.dumps(new)}"


def _wide_open(cidr: Any) -> bool:
    """A public range of /8 or wider (IPv6: /16), 0.0.0.0/0 and ::/0 among them; unreadable counts as open."""
    try:
        network = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return True
    return not network.is_private and network.prefixlen <= (8 if network.version == 4 else 16)


def _open_ingress(change_type: str, side: Any) -> set[str]:
    """'protocol ports from cidr' of each wide-open ingress a security group resource holds."""
    side = _mapping(side)
    if change_type == "aws_vpc_security_group_ingress_rule":
        rules: list[Mapping[str, Any]] = [side]
        cidr_keys, protocol_key = ("cidr_ipv4", "cidr_ipv6"), "ip_protocol"
    elif change_type == "aws_security_group_rule":
        rules = [side] if side.get("type") == "ingress" else []
        cidr_keys, protocol_key = ("cidr_blocks", "ipv6_cidr_blocks"), "protocol"
    elif change_type in SECURITY_GROUP_TYPES:
        rules = [r for r in _as_list(side.get("ingress")) if isinstance(r, Mapping)]
        cidr_keys, protocol_key = ("cidr_blocks", "ipv6_cidr_blocks"), "protocol"
    else:
        return set()
    return {
        f"{rule.get(protocol_key)} {rule.get('from_port')}-{rule.get('to_port')} from {cidr}"
        for rule in rules
        for key in cidr_keys
        for cidr in _as_list(rule.get(key))
        if _wide_open(cidr)
    }


def _exposed(change: ResourceChange) -> list[Finding]:
    """Network and public exposure: open ingress, public-access blocks off, public instances, ACLs, load balancers."""
    if change.action == "destroy":
        return []
    found: list[Finding] = []
    ingress_keys = {
        "aws_vpc_security_group_ingress_rule": ("cidr_ipv4", "cidr_ipv6"),
        "aws_security_group_rule": ("cidr_blocks", "ipv6_cidr_blocks"),
        "aws_security_group": ("ingress",),
        "aws_default_security_group": ("ingress",),
    }.get(change.type, ())
    if any(_unknown(change, key) for key in ingress_keys):
        found.append((NETWORK, "ingress sources are known only after apply"))
    before = change.before if change.action != "replace" else None  # a replacement's rules are all new
    opened = _open_ingress(change.type, change.after) - _open_ingress(change.type, before)
    found += [(NETWORK, f"ingress open to the internet: {rule}") for rule in sorted(opened)]
    if change.type in PUBLIC_ACCESS_BLOCK_TYPES:
        for flag in PUBLIC_ACCESS_BLOCK_FLAGS:
            # An absent flag is the provider's default: false, off.
            if turned := _became(change, flag, lambda v: v is not True, on_create=True, default=False):
                found.append((PUBLIC, f"public-access block turned off: {turned}"))
    if turned := _became(change, "publicly_accessible", lambda v: v is True, on_create=True):
        found.append((PUBLIC, turned))
    if turned := _became(change, "acl", lambda v: v in PUBLIC_ACLS, on_create=True):
        found.append((PUBLIC, f"public ACL: {turned}"))
    if change.type in LOAD_BALANCER_TYPES and (
        turned := _became(change, "internal", lambda v: v is False, on_create=True, default=False)
    ):
        found.append((NETWORK, f"load balancer internet-facing: {turned}"))
    return found


def _data_loss_prepared(change: ResourceChange) -> list[Finding]:
    """Updates after which data can go without a refused destroy: `force_destroy`, protection off, versioning
    suspended, no recovery window or final snapshot, shorter retention, a disabled key. `prevent_destroy` is
    not in plans (it is configuration, not state): removing it shows only as the destroy it lets through,
    which the destroy rule and the refusal catch."""
    rules: list[tuple[str, Predicate, tuple[str | int, ...]]] = [
        ("force_destroy", lambda v: v is True, ()),
        ("force_delete", lambda v: v is True, ()),
        ("deletion_protection", lambda v: v is False, ()),
        ("deletion_protection_enabled", lambda v: v is False, ()),
        ("enable_deletion_protection", lambda v: v is False, ()),
        ("recovery_window_in_days", lambda v: v == 0, ()),
        ("skip_final_snapshot", lambda v: v is True, ()),
        ("backup_retention_period", lambda v: v == 0, ()),
        ("point_in_time_recovery", lambda v: v is False, (0, "enabled")),
    ]
    if change.type == "aws_s3_bucket_versioning":
        rules += [
            ("versioning_configuration", lambda v: v in ("Suspended", "Disabled"), (0, "status")),
            ("versioning_configuration", lambda v: v == "Disabled", (0, "mfa_delete")),
        ]
    if change.type == "aws_s3_bucket":  # the provider's deprecated inline versioning block
        rules += [("versioning", lambda v: v is False, (0, "enabled"))]
    if change.type == "aws_kms_key":
        rules += [("is_enabled", lambda v: v is False, ())]
    found = [
        (DATA_LOSS, turned)
        for attribute, bad, path in rules
        if attribute in _mapping(change.after) or _unknown(change, attribute)
        if (turned := _became(change, attribute, bad, on_create=False, path=path))
    ]
    if change.action == "update" and "retention_in_days" in _mapping(change.after):
        old, new = _mapping(change.before).get("retention_in_days"), _mapping(change.after)["retention_in_days"]
        if isinstance(new, int) and new > 0 and (not isinstance(old, int) or old == 0 or new < old):
            found.append((DATA_LOSS, f"retention_in_days was {json.dumps(old)}, now {new}: older data expires"))
    return found


def _pipeline_actions(side: Any) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {
        (str(stage.get("name")), str(action.get("name"))): action
        for stage in _as_list(_mapping(side).get("stage"))
        if isinstance(stage, Mapping)
        for action in _as_list(stage.get("action"))
        if isinstance(action, Mapping)
    }


def _stage_entries(side: Any) -> dict[str, Any]:
    return {
        str(stage.get("name")): stage.get("before_entry")
        for stage in _as_list(_mapping(side).get("stage"))
        if isinstance(stage, Mapping)
    }


def _pipeline_shape(side: Any) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Stages in order, each with its actions' (run order, name, category): where the gates sit."""
    return [
        (
            str(stage.get("name")),
            sorted(
                (str(a.get("run_order") or 1), str(a.get("name")), str(a.get("category")))
                for a in _as_list(stage.get("action"))
                if isinstance(a, Mapping)
            ),
        )
        for stage in _as_list(_mapping(side).get("stage"))
        if isinstance(stage, Mapping)
    ]


def _pipeline_gates(change: ResourceChange) -> list[Finding]:
    """The pipeline's own gates: its approvals, sources, triggers, role and artifact store, where its actions
    sit, and what its CodeBuild projects run (buildspec, source, environment, role)."""
    if change.action == "destroy":
        return []
    if change.type == "aws_codepipeline":
        return [(PIPELINE, detail) for detail in _codepipeline_changes(change)]
    if change.type == "aws_codebuild_project":
        if change.action != "update":
            verb = "new" if change.action == "create" else "replaced"
            return [(PIPELINE, f"{verb} build project: review its buildspec, source, environment and role")]
        # Any change at all: no pipeline role may write a build project (only an administrator does), since
        # a project runs as its role, and the update role may not pass those roles.
        found: list[Finding] = []
        for attribute in CODEBUILD_GATE_ATTRIBUTES:
            old, new = _mapping(change.before).get(attribute), _mapping(change.after).get(attribute)
            if _unknown(change, attribute):
                found.append((PIPELINE, f"{attribute} is known only after apply"))
            elif old != new:
                keys = _block_keys(old, new)
                found.append((PIPELINE, f"{attribute} changed" + (f": {', '.join(keys)}" if keys else "")))
        others = [key for key in _differing(change.before, change.after) if key not in CODEBUILD_GATE_ATTRIBUTES]
        if others:
            found.append((PIPELINE, f"build project changed ({', '.join(others)}): an administrator applies it"))
        return found
    return []


def _registry_gates(change: ResourceChange) -> list[Finding]:
    """Which images stay in the registry every stage pulls from: its policy denies every project role these
    changes (modules/container_registry.py), so each is an administrator's, and the plan says so first."""
    if change.type in REGISTRY_POLICY_TYPES:
        return [(PIPELINE, f"{change.action} of the registry's {change.type}: it decides which images stay")]
    if change.type == "aws_ecr_repository" and change.action == "update":
        changed = [a for a in REGISTRY_SWITCHES if _mapping(change.before).get(a) != _mapping(change.after).get(a)]
        return [(PIPELINE, f"registry {a} changed: it decides whether an image can change or go") for a in changed]
    return []


def _differing(old: Any, new: Any) -> list[str]:
    """The keys whose values differ between two objects."""
    old, new = _mapping(old), _mapping(new)
    return sorted(key for key in {*old, *new} if old.get(key) != new.get(key))


def _block_keys(old: Any, new: Any) -> list[str]:
    """The keys that differ between the first blocks of two nested-block lists (`source`, `environment`)."""
    return _differing((_as_list(old) or [None])[0], (_as_list(new) or [None])[0])


def _codepipeline_changes(change: ResourceChange) -> list[str]:
    before, after = _mapping(change.before), _mapping(change.after)
    found = ["part of its stages is known only after apply"] if _unknown(change, "stage") else []
    if _pipeline_shape(before) != _pipeline_shape(after):
        stages = " > ".join(name for name, _ in _pipeline_shape(after))
        found.append(f"stages or actions added, removed, renamed or reordered (now {stages})")
    old_actions, new_actions = _pipeline_actions(before), _pipeline_actions(after)
    for key in sorted({*old_actions, *new_actions}):
        old, new = old_actions.get(key), new_actions.get(key)
        categories = {_mapping(old).get("category"), _mapping(new).get("category")}
        if old == new or not categories & {"Approval", "Source"}:
            continue
        what = "approval" if "Approval" in categories else "source"
        if old is None or new is None:
            found.append(f"{what} action {'/'.join(key)} {'added' if old is None else 'removed'}")
            continue
        keys = _differing(old.get("configuration"), new.get("configuration"))
        keys += [k for k in _differing(old, new) if k != "configuration"]
        found.append(f"{what} action {'/'.join(key)} changed: {', '.join(keys)}")
    # Entry conditions decide when an approval is skipped and when a stage may start (its deployment window).
    old_entries, new_entries = _stage_entries(before), _stage_entries(after)
    for name in sorted(key for key in {*old_entries, *new_entries} if old_entries.get(key) != new_entries.get(key)):
        found.append(f"entry condition of stage {name} changed")
    for attribute, what in (
        ("trigger", "triggers (which pushes start it)"),
        ("role_arn", "role"),
        ("artifact_store", "artifact store"),
    ):
        if before.get(attribute) != after.get(attribute) or _unknown(change, attribute):
            found.append(f"{what} changed")
    return found


# -- the verdict and its Markdown ------------------------------------------------------------------


def allowed_destroys(cli_values: Sequence[str], environ: Mapping[str, str]) -> frozenset[str]:
    from_environment = [v.strip() for v in environ.get(ALLOW_DESTROY_VARIABLE, "").split(",") if v.strip()]
    return frozenset([*cli_values, *from_environment])


def refused(plans: Sequence[StackPlan], allowed: frozenset[str]) -> list[str]:
    """`stack:address` of every data-losing change that nobody explicitly allowed."""
    return [
        f"{plan.stack}:{change.address}"
        for plan in plans
        for change in plan.data_losses
        if change.address not in allowed and f"{plan.stack}:{change.address}" not in allowed
    ]


def headline(plans: Sequence[StackPlan], allowed: frozenset[str] = frozenset()) -> str:
    """One line for the approval message: totals, and the flags a reviewer must read."""
    totals = {action: sum(plan.counts()[action] for plan in plans) for action in COUNTED}
    changed = [plan.stack for plan in plans if plan.has_changes]
    if not changed:
        return f"no changes in {len(plans)} stack(s)"
    text = ", ".join(f"{count} to {action}" for action, count in totals.items())
    text += f" in {', '.join(changed)}"
    losses = sum(len(plan.data_losses) for plan in plans)
    widenings = sum(len(plan.iam_widenings()) for plan in plans)
    if losses:
        blocked = len(refused(plans, allowed))
        text += f"; WARNING {losses} stateful resource(s) replaced or destroyed" + (
            f", {blocked} refused" if blocked else ""
        )
    if widenings:
        text += f"; WARNING {widenings} IAM change(s) grant more"
    broadening = sum(len({b.address for b in broadenings(plan)}) for plan in plans)
    if broadening:
        # First, so that no cut of the headline (the approval message keeps 300 characters) loses it.
        text = f"BROADENING: {broadening} resource(s) need a person's approval; {text}"
    return text


def render_stack(plan: StackPlan) -> list[str]:
    counts = plan.counts()
    title = ", ".join(f"{counts[action]} to {action}" for action in COUNTED)
    lines = [f"## {plan.stack}: {title}" if plan.has_changes else f"## {plan.stack}: no changes", ""]
    visible = [c for c in plan.changes if c.action in COUNTED]
    if visible:
        lines += ["| action | resource |", "|---|---|"]
        lines += [
            f"| {c.action} | `{c.address}` |"
            for c in sorted(visible, key=lambda c: (COUNTED.index(c.action), c.address))
        ]
        lines.append("")
    if plan.output_changes:
        lines.append(
            "Outputs: " + ", ".join(f"`{name}` ({action})" for name, action in sorted(plan.output_changes.items()))
        )
        lines.append("")
    for change in plan.data_losses:
        lines.append(f"- **DATA LOSS**: {change.action} of stateful `{change.address}` ({change.type})")
    for widening in plan.iam_widenings():
        lines.append(f"- **IAM grants more**: `{widening.address}`")
        lines += [f"  - {grant}" for grant in widening.grants]
    if plan.data_losses or plan.iam_widenings():
        lines.append("")
    return lines


def render_broadenings(plans: Sequence[StackPlan]) -> list[str]:
    """The section an approver reads first: each change that broadens, and why."""
    found = [(plan.stack, b) for plan in plans for b in broadenings(plan)]
    if not found:
        return []
    return [
        BROADENING_TITLE,
        "",
        "Applying these needs a person's approval; read each one:",
        "",
        *(f"- `{stack}`: `{b.address}` ({b.type}): **{b.reason}**: {b.detail}" for stack, b in found),
        "",
    ]


def render(plans: Sequence[StackPlan], allowed: frozenset[str] = frozenset()) -> str:
    lines = [f"# Plan: {headline(plans, allowed)}", ""]
    lines += render_broadenings(plans)
    for plan in plans:
        lines += render_stack(plan)
    blocked = refused(plans, allowed)
    if blocked:
        lines += [
            "## Refused",
            "",
            "These changes destroy data; apply them only on purpose, by naming each with "
            f"`--allow-destroy STACK:ADDRESS` or in `{ALLOW_DESTROY_VARIABLE}`:",
            "",
            *(f"- `{address}`" for address in blocked),
            "",
        ]
    return "\n".join(lines)


def parse_plan_argument(argument: str) -> tuple[str, Path]:
    stack, separator, path = argument.partition("=")
    if separator and stack and "/" not in stack:
        return stack, Path(path)
    file = Path(argument)
    return file.resolve().parent.name, file


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.plan_summary", description=__doc__.splitlines()[0])
    parser.add_argument("plans", nargs="+", metavar="[STACK=]PLAN_JSON", help="`terraform show -json` of a saved plan")
    parser.add_argument(
        "--allow-destroy",
        action="append",
        default=[],
        metavar="[STACK:]ADDRESS",
        help=f"allow replacing or destroying this stateful resource (also {ALLOW_DESTROY_VARIABLE}, comma-separated)",
    )
    parser.add_argument("--output", type=Path, help="write the Markdown here instead of stdout")
    args = parser.parse_args(argv)
    try:
        plans = [load_plan(*parse_plan_argument(argument)) for argument in args.plans]
    except PlanError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    allowed = allowed_destroys(args.allow_destroy, environ)
    markdown = render(plans, allowed)
    if args.output:
        args.output.write_text(markdown)
    else:
        sys.stdout.write(markdown)
    blocked = refused(plans, allowed)
    if blocked:
        print(
            f"error: refusing a plan that destroys stateful {', '.join(blocked)}: "
            f"if that is intended, allow each with --allow-destroy or {ALLOW_DESTROY_VARIABLE}",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
