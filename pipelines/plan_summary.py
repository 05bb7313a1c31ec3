"""Summarize saved Terraform plans for the person who approves them (R4.3), and refuse dangerous ones.

    python -m pipelines.plan_summary [STACK=]PLAN_JSON... [--allow-destroy [STACK:]ADDRESS]... [--output FILE]

Each PLAN_JSON is `terraform show -json <saved plan>` (Terraform's JSON plan format); the stack name is
given as `STACK=` or taken from the file's directory. The Markdown summary lists, per stack, what is
created, updated, replaced and destroyed, and flags two things a reviewer must not miss:
- replacing or destroying a stateful resource (a bucket, log group, secret, table, repository, key):
  its data goes with it. Either is refused (exit status 3) unless the address is named with
  `--allow-destroy` or in `CANVALO_ALLOW_DESTROY` (comma-separated), so losing data takes a decision;
- IAM changes that grant more: a new policy or attachment, or a policy document whose allowed
  (action, resource, principal, condition) combinations grow or whose denials shrink.
Bad input (unreadable file, not a plan) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
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


def parse_changes(entries: Iterable[Mapping[str, Any]], where: str) -> list[ResourceChange]:
    """`resource_changes` (or `resource_drift`) of a JSON plan, data sources left out."""
    parsed = []
    for entry in entries:
        if entry.get("mode") == "data":
            continue
        try:
            change = entry["change"]
            parsed.append(
                ResourceChange(
                    address=str(entry["address"]),
                    type=str(entry["type"]),
                    action=classify(change["actions"], where),
                    before=change.get("before"),
                    after=change.get("after"),
                    after_unknown=change.get("after_unknown"),
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


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


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
            principal = json.dumps(item.get("Principal"), sort_keys=True) if "Principal" in item else None
            condition = json.dumps(item["Condition"], sort_keys=True) if item.get("Condition") else None
            for action in actions or ["(no action)"]:
                for resource in resources or ["(no resource)"]:
                    line = f"{effect} {action} on {resource}"
                    line += f" to {principal}" if principal else ""
                    line += f" when {condition}" if condition else ""
                    found.add(line)
    return found


def iam_widening(change: ResourceChange) -> IamWidening | None:
    if change.action not in ("create", "update", "replace"):
        return None
    if change.type in ATTACHMENT_TYPES:
        attached = change.after.get("policy_arn", "(known after apply)") if isinstance(change.after, Mapping) else ""
        return IamWidening(change.address, (f"attaches {attached}",))
    attributes = POLICY_ATTRIBUTES.get(change.type)
    if not attributes:
        return None
    grants: list[str] = []
    for attribute in attributes:
        unknown = change.after_unknown.get(attribute) if isinstance(change.after_unknown, Mapping) else None
        if unknown:
            grants.append(f"{attribute} is known only after apply: review the code that builds it")
            continue
        before, after = _documents(change.before, attribute), _documents(change.after, attribute)
        added = statements_of(after, "Allow") - statements_of(before, "Allow")
        removed_denials = statements_of(before, "Deny") - statements_of(after, "Deny")
        grants += sorted(added) + [f"no longer denied: {line}" for line in sorted(removed_denials)]
    return IamWidening(change.address, tuple(grants)) if grants else None


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


def render(plans: Sequence[StackPlan], allowed: frozenset[str] = frozenset()) -> str:
    lines = [f"# Plan: {headline(plans, allowed)}", ""]
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
