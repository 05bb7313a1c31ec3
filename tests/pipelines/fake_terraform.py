"""A stand-in for the terraform binary: plans, shows and outputs per stack, and a record of every call."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.terraform_stage import Completed

NO_CHANGES = 0
CHANGES = 2


Change = tuple[str, str, list[str]]


def _entries(changes: Sequence[Change]) -> list[dict[str, Any]]:
    return [
        {
            "address": address,
            "mode": "managed",
            "type": kind,
            "name": address.split(".")[-1],
            "change": {"actions": actions, "before": None, "after": {}, "after_unknown": {}},
        }
        for address, kind, actions in changes
    ]


def plan_document(
    *changes: Change, outputs: dict[str, list[str]] | None = None, drift: Sequence[Change] = ()
) -> dict[str, Any]:
    """A JSON plan: `(address, type, actions)` resource changes and drift, `{output: actions}` output changes."""
    return {
        "format_version": "1.2",
        "terraform_version": "1.13.4",
        "resource_changes": _entries(changes),
        "resource_drift": _entries(drift),
        "output_changes": {
            name: {"actions": actions, "before": None, "after": "x", "after_unknown": False}
            for name, actions in (outputs or {}).items()
        },
    }


@dataclass
class FakeTerraform:
    """`plans[stack]` is the JSON plan `show -json` prints; a stack whose plan has changes exits 2 from plan."""

    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # `state list` of a stack: the addresses it has applied; none by default (not deployed yet).
    states: dict[str, list[str]] = field(default_factory=dict)
    # (stack, subcommand) -> exit status, to make one command fail.
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    # The directory each stack's Terraform last ran in.
    directories: dict[str, Path] = field(default_factory=dict)

    def __call__(self, args: Sequence[str], cwd: Path, capture: bool) -> Completed:
        stack, command = cwd.name, args[0]
        self.calls.append((stack, tuple(args)))
        self.directories[stack] = cwd
        if (stack, command) in self.failures:
            return Completed(self.failures[(stack, command)])
        if command == "plan":
            (out,) = (a.removeprefix("-out=") for a in args if a.startswith("-out="))
            Path(out).write_bytes(f"saved plan of {stack}".encode())
            document = self.plans.get(stack, plan_document())
            entries = document["resource_changes"] + document["resource_drift"]
            changed = any(c["change"]["actions"] != ["no-op"] for c in entries)
            changed = changed or any(o["actions"] != ["no-op"] for o in document["output_changes"].values())
            return Completed(CHANGES if changed else NO_CHANGES)
        if command == "show":
            return Completed(0, json.dumps(self.plans.get(stack, plan_document())))
        if command == "state" and args[1:] == ("list",):
            return Completed(0, "".join(f"{address}\n" for address in self.states.get(stack, [])))
        if command == "output":
            return Completed(0, json.dumps(self.outputs.get(stack, {})))
        if command == "init":
            lock = cwd / ".terraform.lock.hcl"
            if "-lockfile=readonly" not in args:
                lock.write_text(f"# providers of {stack}\n")
            elif not lock.exists():
                # Terraform's refusal: without a lock every provider is a change, which -lockfile=readonly forbids.
                return Completed(1)
        return Completed(0)

    def commands(self, stack: str | None = None) -> list[tuple[str, str]]:
        return [(s, args[0]) for s, args in self.calls if stack in (None, s)]

    def args_of(self, stack: str, command: str) -> tuple[str, ...]:
        (args,) = [args for s, args in self.calls if s == stack and args[0] == command]
        return args


def synthesized(root: Path, stacks: dict[str, list[str]], documents: dict[str, dict[str, Any]] | None = None) -> Path:
    """A cdktf.out with a manifest of `{stack: dependencies}` and a directory per stack, holding its
    `documents` entry as its cdk.tf.json (by default only the S3 backend the policy check asks for)."""
    out = root / "cdktf.out"
    manifest = {"stacks": {name: {"name": name, "dependencies": deps} for name, deps in stacks.items()}}
    for name in stacks:
        (out / "stacks" / name).mkdir(parents=True)
        document = {"terraform": {"backend": {"s3": {}}}, **(documents or {}).get(name, {})}
        (out / "stacks" / name / "cdk.tf.json").write_text(json.dumps(document))
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out
