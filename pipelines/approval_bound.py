"""What a person approves for a stack that can only be planned after the stacks it reads are applied.

A stage's stack that reads another stack's outputs, which this run's plan changes, is *deferred*: its real
plan exists only once the stack it reads is applied. Prod applies nothing a person did not approve, yet a
new stage must deploy in one run with one approval. So `plan` records a *bound* for each deferred stack,
shown in the approval's summary, and `apply` applies the plan it makes later only when it stays inside it:

- a stack with no state yet (its first deploy): the plan may only create what the approved configuration
  declares, so nothing that exists can be updated, replaced or destroyed;
- a stack with state: its plan made now against the current outputs, plus in-place updates of the
  resources that read, directly or through other resources, an output this run changes.

A plan outside its bound is not applied: the next run plans it for real and asks for a new approval.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.plan_summary import COUNTED, StackPlan

# What a deferred stack's new plan may do, beyond its provisional plan, to the resources that read
# changing outputs: an in-place update. A replacement or destroy needs a person's look.
FOLLOWING_ACTIONS = frozenset({"update"})
_REFERENCE = re.compile(r"(?<![\w.-])((?:data\.)?[a-z][a-z0-9_]*\.[A-Za-z0-9_-]+)")
_INSTANCE_KEY = re.compile(r"\[[^\]]*\]$")
_REMOTE_OUTPUT = re.compile(r"data\.terraform_remote_state\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)")


@dataclass(frozen=True)
class Bound:
    """`new`: the stack has no state, so only creates are allowed. Otherwise `planned` holds the provisional
    plan's `(address, action)` pairs and `following` the resources that may also be updated in place."""

    new: bool
    planned: frozenset[tuple[str, str]] = frozenset()
    following: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {
            "new": self.new,
            "planned": sorted([address, action] for address, action in self.planned),
            "following": sorted(self.following),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Bound:
        return cls(
            new=bool(value["new"]),
            planned=frozenset((str(address), str(action)) for address, action in value["planned"]),
            following=frozenset(str(address) for address in value["following"]),
        )

    def exceeded_by(self, plan: StackPlan) -> list[str]:
        """Each change of `plan` outside the bound, as `<action> <address>`; empty when it stays inside."""
        outside = []
        for change in plan.changes:
            if change.action not in COUNTED:
                continue
            if self.new:
                allowed = change.action == "create"
            else:
                # `following` names resources as configured; the plan addresses each instance (`x[0]`).
                configured = _INSTANCE_KEY.sub("", change.address)
                allowed = (change.address, change.action) in self.planned or (
                    change.action in FOLLOWING_ACTIONS and configured in self.following
                )
            if not allowed:
                outside.append(f"{change.action} {change.address}")
        return outside

    def describe(self, stack: str, upstream: Sequence[str]) -> list[str]:
        after = f"after {', '.join(upstream)} applies"
        if self.new:
            return [
                f"- `{stack}` (first deploy): {after}, it creates what its configuration declares and nothing else."
            ]
        planned = sorted(f"{action} `{address}`" for address, action in self.planned)
        lines = [f"- `{stack}`: {after}, its plan may hold: " + (", ".join(planned) or "no changes")]
        if self.following:
            lines.append(
                "  and in-place updates of what reads the changing outputs: "
                + ", ".join(f"`{address}`" for address in sorted(self.following))
            )
        return lines


def remote_stacks(stack_json: Mapping[str, Any]) -> dict[str, str]:
    """`{remote state data source name: the stack whose state it reads}` (its key is `<stack>/...`)."""
    sources = (stack_json.get("data") or {}).get("terraform_remote_state") or {}
    return {name: str(body["config"]["key"]).split("/", 1)[0] for name, body in sources.items()}


def _nodes(stack_json: Mapping[str, Any]) -> dict[str, str]:
    """Every resource and data source by address, with its body as text to find references in."""
    nodes = {}
    for prefix, section in (("", "resource"), ("data.", "data")):
        for kind, blocks in (stack_json.get(section) or {}).items():
            if kind == "terraform_remote_state":
                continue
            for name, body in blocks.items():
                nodes[f"{prefix}{kind}.{name}"] = json.dumps(body)
    return nodes


def following_resources(stack_json: Mapping[str, Any], changing: Mapping[str, frozenset[str] | None]) -> frozenset[str]:
    """The resources that read an output this run changes, directly or through what they reference.

    `changing` maps an upstream stack to the names of its outputs that change, or None when all may
    (the upstream stack is itself deferred, so its plan is not known yet).
    """
    stacks = remote_stacks(stack_json)
    nodes = _nodes(stack_json)

    def reads_changing_output(body: str) -> bool:
        for source, output in _REMOTE_OUTPUT.findall(body):
            upstream = stacks.get(source, "")
            if upstream not in changing:
                continue
            outputs = changing[upstream]
            if outputs is None or output in outputs:
                return True
        return False

    affected = {address for address, body in nodes.items() if reads_changing_output(body)}
    references = {address: set(_REFERENCE.findall(body)) & nodes.keys() for address, body in nodes.items()}
    grew = True
    while grew:
        reached = {address for address, refs in references.items() if address not in affected and refs & affected}
        affected |= reached
        grew = bool(reached)
    return frozenset(address for address in affected if not address.startswith("data."))


def provisional_bound(plan: StackPlan, following: Iterable[str]) -> Bound:
    return Bound(
        new=False,
        planned=frozenset((c.address, c.action) for c in plan.changes if c.action in COUNTED),
        following=frozenset(following),
    )
