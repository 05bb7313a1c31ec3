"""Plan every stack of a stage to saved plans, apply exactly those plans, and hand on the stage's outputs.

    python -m pipelines.terraform_stage plan  --stage S --cdktf-out DIR --plans DIR [--allow-destroy [STACK:]ADDR]...
    python -m pipelines.terraform_stage apply --stage S --cdktf-out DIR --plans DIR --outputs DIR
                                              [--deferred defer|apply] [--allow-destroy [STACK:]ADDR]...
    python -m pipelines.terraform_stage env   --outputs DIR

`plan` runs `terraform init` and `terraform plan -out` in each `cdktf.out/stacks/<stage>-*` directory, in
dependency order, and writes into the plans directory (the pipeline's `<Stage>Plan` artifact): per stack the
saved plan, its `terraform show -json` and the dependency lock file it was made with, plus `summary.md`,
`headline.txt` (one line for the approval message) and `manifest.json` (stage, stacks, SHA-256 of each plan).
It refuses, with the summary written, a plan that destroys stateful resources (see `plan_summary`).

`apply` applies those saved plans and nothing else: it checks that the manifest is this stage's and that
every plan file is the one that was planned (and, in prod, approved), initializes with the planned lock
file read-only, and runs `terraform apply <saved plan>`; Terraform itself refuses a plan whose state moved
on since. Then it writes each stack's non-sensitive `terraform output -json` into the outputs directory.

A stack that reads another stack's outputs and was planned while that stack's own plan changes its outputs
is deferred, not planned against values about to change. With `--deferred defer` (the default, and prod's:
a person approves what is applied) `apply` applies the rest and then fails, saying which stacks to deliver
with the next run. With `--deferred apply` (stages without an approval: nobody reviews the plan before it is
applied anyway) `apply` plans each deferred stack itself, in dependency order, once the stacks it reads are
applied: into `<stack>/tfplan.deferred` in the plans directory, refused like `plan` refuses when it destroys
stateful resources, its summary in the log, and applies that plan, so a new stage deploys in one run.

`env` prints `export NAME=value` lines for the outputs the later actions use (FRONTEND_BUCKET, ...).
Terraform runs through a `Runner`, so tests drive all of this with a fake one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from pipelines import policy_check
from pipelines.approval_bound import Bound, following_resources, provisional_bound
from pipelines.deploy_frontend import pending_release
from pipelines.errors import EXIT_FAILED as EXIT_FAILED  # drift.py and tests import it from here
from pipelines.errors import CommandError
from pipelines.plan_summary import (
    EXIT_REFUSED,
    PlanError,
    StackPlan,
    allowed_destroys,
    broadenings,
    broadens,
    headline,
    parse_plan,
    refused,
    render,
)

# Within a stage, stacks with no dependency between them deploy in this order of their component.
COMPONENT_ORDER = ("network", "backend", "frontend")
PLAN_FILE = "tfplan"
# A deferred stack's plan, made and applied by `apply --deferred apply|approved`.
DEFERRED_PLAN_FILE = "tfplan.deferred"
# A deferred stack's plan against the outputs as they are before this run: the approved bound's base.
PROVISIONAL_PLAN_FILE = "tfplan.provisional"
PLAN_JSON = "plan.json"
LOCK_FILE = ".terraform.lock.hcl"
# The copy in the plans artifact has no leading dot: artifact globs may leave hidden files out.
PLANNED_LOCK_FILE = "terraform.lock.hcl"
MANIFEST = "manifest.json"
# The manifest's own SHA-256: the Plan action exports it as a pipeline variable, which no artifact writer
# can change, and Apply refuses a manifest (and so any plan) that does not match it.
MANIFEST_SHA256 = "manifest.sha256"
SUMMARY = "summary.md"
HEADLINE = "headline.txt"
# "true" when the stage's plans broaden what it may do (plan_summary.broadens): the Plan action exports it,
# and the pipeline then stops for a person's approval before Apply, in every stage.
BROADENS = "broadens.txt"
# "true" when applying the plans (or releasing the frontend build) would change anything: a stage with an
# approval asks for it only then (the Plan action exports it as PLAN_CHANGES).
CHANGES = "changes.txt"
# Stack outputs the later actions read, by the environment variable `env` exports them as. Output names
# are unique within a stage: the backend and frontend stacks each declare theirs.
STAGE_OUTPUT_VARIABLES = {
    "backend_url": "BACKEND_URL",
    "frontend_url": "FRONTEND_URL",
    "frontend_bucket": "FRONTEND_BUCKET",
    "frontend_distribution_id": "FRONTEND_DISTRIBUTION_ID",
}
# The outputs that locate the stage's live frontend release: Plan reads them from the stack that declares them.
FRONTEND_OUTPUTS = frozenset({"frontend_bucket", "frontend_distribution_id"})
# Applying waits this long for another run's state lock (a drift check, a laptop plan) before failing.
LOCK_TIMEOUT = "-lock-timeout=10m"
EXIT_DEFERRED = 4
# `apply --deferred`: leave deferred stacks to the next run; plan and apply them in this run once the
# stacks they read are applied (stages without an approval); or do that only when the new plan stays
# within the bound the approval showed (prod), leaving the rest to the next run and its approval.
DEFER, APPLY_DEFERRED, APPLY_APPROVED = "defer", "apply", "approved"


class StageError(CommandError):
    """The stage cannot be planned or applied; the message is one line saying what and what to do."""


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str = ""


# Runs `terraform <args>` in a directory; with capture=True returns its stdout, else it streams to the log.
Runner = Callable[[Sequence[str], Path, bool], Completed]


def run_terraform(
    args: Sequence[str], cwd: Path, capture: bool, environment: Mapping[str, str] | None = None
) -> Completed:
    if shutil.which("terraform") is None:
        raise StageError("terraform is not on PATH: run pipelines/install_terraform.sh first")
    result = subprocess.run(
        ["terraform", *args],
        cwd=cwd,
        stdout=subprocess.PIPE if capture else None,
        text=True,
        check=False,
        env={**os.environ, **(environment or {}), "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"},
    )
    return Completed(result.returncode, result.stdout or "")


def running_with(environment: Mapping[str, str]) -> Runner:
    """`run_terraform` with these variables added (a stage's AWS profile), the caller's own environment unchanged."""
    return lambda args, cwd, capture: run_terraform(args, cwd, capture, environment)


@dataclass(frozen=True)
class Terraform:
    """The Terraform commands this pipeline uses, each checked; `runner` does the running."""

    runner: Runner = run_terraform

    def _run(self, stack_dir: Path, *args: str, capture: bool = False, ok: tuple[int, ...] = (0,)) -> Completed:
        result = self.runner(args, stack_dir, capture)
        if result.returncode not in ok:
            raise StageError(
                f"terraform {args[0]} failed in {stack_dir.name} (exit status {result.returncode}): see the log above"
            )
        return result

    def init(self, stack_dir: Path, *, readonly_lock: bool = False, migrate_state: bool = False) -> None:
        # Terraform runs as this action's credentials, whatever role the stack's JSON names (see there).
        policy_check.pipeline_credentials(stack_dir)
        lockfile = ("-lockfile=readonly",) if readonly_lock else ()
        # -force-copy answers "yes" to copying the state into the new backend: the caller verifies it after.
        migrate = ("-migrate-state", "-force-copy") if migrate_state else ()
        self._run(stack_dir, "init", "-input=false", "-no-color", *lockfile, *migrate)

    def plan(self, stack_dir: Path, plan_file: Path, *extra: str) -> bool:
        """Saves the plan; True when it changes anything (`-detailed-exitcode`: 0 none, 2 changes)."""
        args = ("plan", "-input=false", "-no-color", LOCK_TIMEOUT, "-detailed-exitcode", *extra, f"-out={plan_file}")
        return self._run(stack_dir, *args, ok=(0, 2)).returncode == 2

    def show_json(self, stack_dir: Path, plan_file: Path) -> dict[str, Any]:
        return _json(self._run(stack_dir, "show", "-json", str(plan_file), capture=True).stdout, f"show of {plan_file}")

    def apply(self, stack_dir: Path, plan_file: Path) -> None:
        self._run(stack_dir, "apply", "-input=false", "-no-color", LOCK_TIMEOUT, str(plan_file))

    def state_list(self, stack_dir: Path) -> list[str]:
        """The addresses in the stack's state: none before its first apply."""
        return self._run(stack_dir, "state", "list", capture=True).stdout.split()

    def outputs(self, stack_dir: Path) -> dict[str, Any]:
        return _json(self._run(stack_dir, "output", "-json", capture=True).stdout, f"outputs of {stack_dir.name}")


def _json(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StageError(f"terraform printed no JSON for the {what} ({exc.msg}): is it Terraform >= 1.10?") from None
    if not isinstance(value, dict):
        raise StageError(f"terraform printed {type(value).__name__} for the {what}, expected an object")
    return value


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- which stacks, in which order -----------------------------------------------------------------


def read_manifest(cdktf_out: Path) -> dict[str, Any]:
    path = cdktf_out / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except OSError:
        raise StageError(
            f"{path} does not exist: synthesize first with `make synth` (or use the Build artifact)"
        ) from None
    except json.JSONDecodeError as exc:
        raise StageError(f"{path} is not JSON ({exc.msg}): synthesize again with `make synth`") from None
    stacks = manifest.get("stacks")
    if not isinstance(stacks, dict):
        raise StageError(f"{path} lists no stacks: synthesize again with `make synth`")
    return stacks


def stage_stacks(cdktf_out: Path, stage: str) -> list[tuple[str, list[str]]]:
    """`(stack, the stage stacks it depends on)` for every `<stage>-*` stack, dependencies first."""
    stacks = read_manifest(cdktf_out)
    names = sorted(name for name in stacks if name.startswith(f"{stage}-"))
    if not names:
        raise StageError(f"no {stage}-* stacks in {cdktf_out}/manifest.json: is --stage right, and is it synthesized?")
    dependencies = {name: [d for d in stacks[name].get("dependencies") or [] if d in names] for name in names}

    def rank(name: str) -> tuple[int, str]:
        component = name.removeprefix(f"{stage}-")
        return (COMPONENT_ORDER.index(component) if component in COMPONENT_ORDER else len(COMPONENT_ORDER), name)

    ordered: list[str] = []
    remaining = sorted(names, key=rank)
    while remaining:
        ready = [name for name in remaining if all(d in ordered for d in dependencies[name])]
        if not ready:
            raise StageError(f"the stacks {', '.join(remaining)} depend on each other in a cycle: break it in main.py")
        ordered.append(ready[0])
        remaining.remove(ready[0])
    return [(name, dependencies[name]) for name in ordered]


def stack_dir(cdktf_out: Path, stack: str) -> Path:
    return cdktf_out / "stacks" / stack


# -- plan -----------------------------------------------------------------------------------------


def plan_stack(
    terraform: Terraform, stack: str, directory: Path, plan_file: Path
) -> tuple[bool, dict[str, Any], StackPlan]:
    """`init`, `plan -out=plan_file` and `show -json` in one stack: (changes anything, JSON plan, its reading)."""
    terraform.init(directory)
    changes = terraform.plan(directory, plan_file.resolve())
    document = terraform.show_json(directory, plan_file.resolve())
    try:
        return changes, document, parse_plan(stack, document, f"the plan of {stack}")
    except PlanError as error:
        raise StageError(str(error)) from None


def plan_stage(
    *,
    terraform: Terraform,
    stage: str,
    cdktf_out: Path,
    plans_dir: Path,
    allowed: frozenset[str] = frozenset(),
    out: Callable[[str], None] = print,
    frontend: Callable[[Mapping[str, str]], dict[str, Any]] | None = None,
) -> int:
    """`frontend`: what releasing the stage's frontend build would change, given the stage's live outputs
    (`deploy_frontend.pending_release`); recorded in the manifest, so an empty plan means nothing changes."""
    stacks = stage_stacks(cdktf_out, stage)
    # Before any init: init is what downloads the providers and modules a commit names.
    policy_check.enforce(cdktf_out, stage, out, StageError)
    plans_dir.mkdir(parents=True, exist_ok=True)
    planned: list[StackPlan] = []
    entries: list[dict[str, Any]] = []
    outputs_changing: set[str] = set()
    changed_outputs: dict[str, frozenset[str]] = {}
    live_outputs: dict[str, str] = {}
    for stack, dependencies in stacks:
        waiting_for = [d for d in dependencies if d in outputs_changing]
        if waiting_for:
            out(f"{stack}: deferred: it reads outputs that this run changes in {', '.join(waiting_for)}")
            changing = {d: changed_outputs.get(d) for d in waiting_for}
            entries.append(deferred_entry(terraform, stack, cdktf_out, plans_dir, changing, out))
            # Whatever depends on a deferred stack waits too.
            outputs_changing.add(stack)
            continue
        directory, target = stack_dir(cdktf_out, stack), plans_dir / stack
        target.mkdir(exist_ok=True)
        plan_file = target / PLAN_FILE
        out(f"{stack}: planning")
        changes, document, plan = plan_stack(terraform, stack, directory, plan_file)
        (target / PLAN_JSON).write_text(json.dumps(document))
        if (directory / LOCK_FILE).exists():
            shutil.copyfile(directory / LOCK_FILE, target / PLANNED_LOCK_FILE)
        planned.append(plan)
        if plan.output_changes:
            outputs_changing.add(stack)
            changed_outputs[stack] = frozenset(plan.output_changes)
        entries.append({"stack": stack, "changes": changes, "sha256": sha256(plan_file)})
        if frontend is not None and declares_any(directory, FRONTEND_OUTPUTS):
            live_outputs.update(
                (name, str(output["value"]))
                for name, output in terraform.outputs(directory).items()
                if name in STAGE_OUTPUT_VARIABLES
            )
    deferred = [entry for entry in entries if "deferred_until" in entry]
    release = frontend(live_outputs) if frontend is not None else None
    summary = render(planned, allowed) + render_deferred(deferred)
    line = headline(planned, allowed) + (f"; {len(deferred)} stack(s) deferred" if deferred else "")
    if release is not None:
        summary += f"\n## Frontend\n\n{release['detail']}.\n"
        line += f"; frontend: {release['detail']}"
    changes_anything = any(entry.get("changes") for entry in entries) or bool(deferred)
    changes_anything = changes_anything or bool(release and release["changes"])
    (plans_dir / SUMMARY).write_text(summary)
    (plans_dir / HEADLINE).write_text(line + "\n")
    broadening = broadens(planned)
    (plans_dir / BROADENS).write_text("true\n" if broadening else "false\n")
    (plans_dir / CHANGES).write_text("true\n" if changes_anything else "false\n")
    manifest: dict[str, Any] = {"stage": stage, "broadens": broadening, "changes": changes_anything, "stacks": entries}
    if release is not None:
        manifest["frontend"] = release
    (plans_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    (plans_dir / MANIFEST_SHA256).write_text(sha256(plans_dir / MANIFEST) + "\n")
    out(summary)
    blocked = refused(planned, allowed)
    if blocked:
        raise StageError(
            f"refusing to hand on a plan that destroys stateful {', '.join(blocked)}: if intended, set "
            "CANVALO_ALLOW_DESTROY=STACK:ADDRESS on the plan action (or --allow-destroy) and run again",
            exit_status=EXIT_REFUSED,
        )
    return 0


def deferred_entry(
    terraform: Terraform,
    stack: str,
    cdktf_out: Path,
    plans_dir: Path,
    changing: Mapping[str, frozenset[str] | None],
    out: Callable[[str], None],
) -> dict[str, Any]:
    """The manifest entry of a deferred stack, with the bound its later plan must stay within to be
    applied under this plan's approval (see `approval_bound`), or why it has none."""
    entry: dict[str, Any] = {"stack": stack, "deferred_until": sorted(changing)}
    directory = stack_dir(cdktf_out, stack)
    terraform.init(directory)
    if not terraform.state_list(directory):
        entry["bound"] = Bound(new=True).to_json()
        return entry
    target = plans_dir / stack
    target.mkdir(exist_ok=True)
    out(f"{stack}: planning against the outputs as they are, to bound what its later plan may do")
    try:
        _, document, plan = plan_stack(terraform, stack, directory, target / PROVISIONAL_PLAN_FILE)
    except StageError as error:
        entry["unbounded"] = f"it cannot be planned before the stacks it reads are applied ({error})"
        return entry
    (target / PLAN_JSON).write_text(json.dumps(document))
    stack_json = json.loads((directory / "cdk.tf.json").read_text())
    entry["bound"] = provisional_bound(plan, following_resources(stack_json, changing)).to_json()
    return entry


def render_deferred(deferred: Sequence[Mapping[str, Any]]) -> str:
    if not deferred:
        return ""
    lines = [
        "",
        "## Deferred: planned after the stacks they read are applied",
        "",
        "Without an approval, Apply plans and applies them then. In a stage with an approval, Apply applies",
        "such a plan only if it stays within what is shown here; otherwise the next run plans it for approval.",
        "",
    ]
    for entry in deferred:
        if "bound" in entry:
            lines += Bound.from_json(entry["bound"]).describe(entry["stack"], entry["deferred_until"])
        else:
            lines.append(f"- `{entry['stack']}`: left to the next run: {entry['unbounded']}")
    return "\n".join(lines) + "\n"


# -- apply ----------------------------------------------------------------------------------------


def read_plans_manifest(plans_dir: Path, stage: str, expected_sha256: str | None = None) -> dict[str, Any]:
    path = plans_dir / MANIFEST
    if expected_sha256 is not None and (not path.exists() or sha256(path) != expected_sha256):
        raise StageError(
            f"{path} is not the manifest the Plan action made (the pipeline recorded SHA-256 {expected_sha256}): "
            "the plans artifact was changed after Plan; release the change again to plan anew"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise StageError(
            f"{path} is missing or unreadable: apply takes the plans directory that `plan` wrote"
        ) from None
    if manifest.get("stage") != stage:
        raise StageError(
            f"{path} holds plans for stage {manifest.get('stage')!r}, not {stage!r}: pass this stage's plans"
        )
    return dict(manifest)


def apply_stage(
    *,
    terraform: Terraform,
    stage: str,
    cdktf_out: Path,
    plans_dir: Path,
    outputs_dir: Path,
    deferred_mode: str = DEFER,
    allowed: frozenset[str] = frozenset(),
    out: Callable[[str], None] = print,
    manifest_sha256: str | None = None,
) -> int:
    manifest = read_plans_manifest(plans_dir, stage, manifest_sha256)
    entries: list[dict[str, Any]] = manifest["stacks"]
    # A broadening plan stopped the pipeline for a person's approval before this Apply, which then covers
    # the deferred stacks' bounds shown with it; without one, a deferred plan may not broaden at all.
    broadening_approved = deferred_mode == APPLY_APPROVED or bool(manifest.get("broadens"))
    # Deferred stacks are planned here from this cdktf.out: it must pass the same check as `plan`'s.
    policy_check.enforce(cdktf_out, stage, out, StageError)
    synthesized = [stack for stack, _ in stage_stacks(cdktf_out, stage)]
    if [entry["stack"] for entry in entries] != synthesized:
        raise StageError(
            f"the plans are for {[e['stack'] for e in entries]} but {cdktf_out} has {synthesized}: "
            "plan and apply must use the same Build artifact"
        )
    for entry in entries:
        plan_file = plans_dir / entry["stack"] / PLAN_FILE
        if "deferred_until" in entry:
            continue
        if not plan_file.exists() or sha256(plan_file) != entry["sha256"]:
            raise StageError(
                f"the saved plan of {entry['stack']} is missing or not the one that was planned: plan again"
            )
    outputs_dir.mkdir(parents=True, exist_ok=True)
    left: dict[str, str] = {}
    for entry in entries:
        stack = entry["stack"]
        if "deferred_until" in entry:
            reason = deferred_left_because(entry, deferred_mode, left, broadening_approved)
            if reason:
                left[stack] = reason
                continue
            # The manifest lists dependencies first: what this stack reads is applied by now.
            bound = Bound.from_json(entry["bound"]) if broadening_approved and "bound" in entry else None
            beyond = apply_deferred(
                terraform, stack, cdktf_out, plans_dir, outputs_dir, allowed, out, bound, broadening_approved
            )
            if beyond and bound:
                left[stack] = f"its plan now goes beyond what was approved ({', '.join(beyond)})"
            elif beyond:
                left[stack] = (
                    f"its plan broadens what the stage may do ({', '.join(beyond)}), which only a person approves"
                )
            continue
        directory = stack_dir(cdktf_out, stack)
        planned_lock = plans_dir / stack / PLANNED_LOCK_FILE
        if planned_lock.exists():
            shutil.copyfile(planned_lock, directory / LOCK_FILE)
        terraform.init(directory, readonly_lock=planned_lock.exists())
        if entry["changes"]:
            out(f"{stack}: applying the saved plan")
            apply_or_confirm_applied(terraform, stack, directory, plans_dir, out)
        else:
            out(f"{stack}: no changes")
        write_outputs(outputs_dir / f"{stack}.json", terraform.outputs(directory))
    if left:
        raise StageError(
            "applied all but "
            + "; ".join(f"{stack}: {reason}" for stack, reason in left.items())
            + ": release the change again to plan them (and approve, where the stage asks for it)",
            exit_status=EXIT_DEFERRED,
        )
    return 0


def deferred_left_because(
    entry: Mapping[str, Any], deferred_mode: str, left: Mapping[str, str], approved: bool = False
) -> str | None:
    """Why a deferred stack is left to the next run without being planned now, or None to plan it now."""
    if deferred_mode == DEFER:
        return f"it reads outputs this run changed in {', '.join(entry['deferred_until'])}"
    waiting = [stack for stack in entry["deferred_until"] if stack in left]
    if waiting:
        return f"it reads {', '.join(waiting)}, which is left to the next run too"
    if (deferred_mode == APPLY_APPROVED or approved) and "bound" not in entry:
        return str(entry.get("unbounded", "the approved plan holds no bound for it"))
    return None


def apply_or_confirm_applied(
    terraform: Terraform, stack: str, directory: Path, plans_dir: Path, out: Callable[[str], None]
) -> None:
    """Apply the saved plan; when Terraform refuses it, it may be a retry of this very action: a saved plan
    already applied is stale. Then a fresh plan that changes nothing proves the state holds it, and the
    retry goes on; anything else (a partial apply, another change) still fails."""
    try:
        terraform.apply(directory, (plans_dir / stack / PLAN_FILE).resolve())
    except StageError:
        check = plans_dir / stack / "tfplan.retry-check"
        if terraform.plan(directory, check.resolve()):
            raise
        out(f"{stack}: the saved plan is already applied (a retry of this action): nothing left to change")


def apply_deferred(
    terraform: Terraform,
    stack: str,
    cdktf_out: Path,
    plans_dir: Path,
    outputs_dir: Path,
    allowed: frozenset[str],
    out: Callable[[str], None],
    bound: Bound | None = None,
    broadening_approved: bool = False,
) -> list[str]:
    """Plans a deferred stack against the state its dependencies were just applied to, checks it as `plan`
    does, and applies that plan: with the `bound` a person approved, only if the plan stays within it;
    without an approval, only if it does not broaden. Returns the changes it may not apply (nothing is
    applied then), else []."""
    directory, target = stack_dir(cdktf_out, stack), plans_dir / stack
    target.mkdir(parents=True, exist_ok=True)
    plan_file = target / DEFERRED_PLAN_FILE
    out(f"{stack}: planning now that the stacks it reads are applied")
    changes, _, plan = plan_stack(terraform, stack, directory, plan_file)
    out(render([plan], allowed))
    blocked = refused([plan], allowed)
    if blocked:
        raise StageError(
            f"refusing to apply the plan of {stack}, deferred until now, that destroys stateful "
            f"{', '.join(blocked)}: if intended, set CANVALO_ALLOW_DESTROY=STACK:ADDRESS on the deploy project "
            "(or --allow-destroy) and run again",
            exit_status=EXIT_REFUSED,
        )
    if bound:
        beyond = bound.exceeded_by(plan)
    elif not broadening_approved:
        beyond = [f"{b.reason} {b.address}" for b in broadenings(plan)]
    else:
        beyond = []
    if beyond:
        out(f"{stack}: not applied: its plan goes beyond what was approved: {', '.join(beyond)}")
        return beyond
    if changes:
        out(f"{stack}: applying the plan just made" + (", within what was approved" if bound else ""))
        terraform.apply(directory, plan_file.resolve())
    else:
        out(f"{stack}: no changes")
    write_outputs(outputs_dir / f"{stack}.json", terraform.outputs(directory))
    return []


def write_outputs(path: Path, outputs: Mapping[str, Any]) -> None:
    """Only non-sensitive values leave Terraform: the outputs directory is a pipeline artifact."""
    visible = {name: output["value"] for name, output in outputs.items() if not output.get("sensitive")}
    path.write_text(json.dumps(visible, indent=1, sort_keys=True))


def declares_any(directory: Path, outputs: frozenset[str]) -> bool:
    """Whether the stack's synthesized JSON declares one of `outputs`: only then are its live outputs read."""
    try:
        declared = json.loads((directory / "cdk.tf.json").read_text()).get("output") or {}
    except (OSError, json.JSONDecodeError):
        return False
    return bool(outputs & set(declared))


def live_release(dist: Path) -> Callable[[Mapping[str, str]], dict[str, Any]]:
    """`pending_release` of `dist` against the stage the live outputs name, with this process's credentials."""

    def check(outputs: Mapping[str, str]) -> dict[str, Any]:
        session = boto3.session.Session()
        return pending_release(
            dist=dist,
            bucket=outputs.get("frontend_bucket"),
            distribution_id=outputs.get("frontend_distribution_id"),
            s3=session.client("s3"),
            cloudfront=session.client("cloudfront"),
        )

    return check


# -- env ------------------------------------------------------------------------------------------


def stage_environment(outputs_dir: Path) -> dict[str, str]:
    """The variables of STAGE_OUTPUT_VARIABLES from the outputs of every stack of a stage."""
    found: dict[str, tuple[str, str]] = {}
    files = sorted(outputs_dir.glob("*.json"))
    if not files:
        raise StageError(f"no stack outputs in {outputs_dir}: pass the outputs directory that `apply` wrote")
    for file in files:
        for name, value in json.loads(file.read_text()).items():
            if name not in STAGE_OUTPUT_VARIABLES:
                continue
            if name in found and found[name][1] != value:
                raise StageError(f"output {name} comes from both {found[name][0]} and {file.stem}: keep one")
            found[name] = (file.stem, str(value))
    missing = [name for name in STAGE_OUTPUT_VARIABLES if name not in found]
    if missing:
        raise StageError(
            f"the stacks {', '.join(f.stem for f in files)} have no output {', '.join(missing)}: "
            "the backend and frontend stacks must declare them"
        )
    return {variable: found[name][1] for name, variable in STAGE_OUTPUT_VARIABLES.items()}


def main(
    argv: Sequence[str] | None = None, terraform: Terraform | None = None, environ: Mapping[str, str] = os.environ
) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.terraform_stage", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="plan every stack of the stage to saved plans")
    apply = commands.add_parser("apply", help="apply exactly the saved plans, then write the outputs")
    for command in (plan, apply):
        command.add_argument("--stage", required=True)
        command.add_argument("--cdktf-out", type=Path, required=True, help="the synthesized cdktf.out directory")
        command.add_argument("--plans", type=Path, required=True, help="where plan writes and apply reads")
        command.add_argument("--allow-destroy", action="append", default=[], metavar="[STACK:]ADDRESS")
    plan.add_argument(
        "--frontend-dist",
        type=Path,
        help="the stage's frontend build: the plan records whether releasing it changes the live site",
    )
    apply.add_argument("--outputs", type=Path, required=True, help="where to write each stack's outputs")
    apply.add_argument(
        "--deferred",
        choices=(DEFER, APPLY_DEFERRED, APPLY_APPROVED),
        default=DEFER,
        help="deferred stacks: leave them to the next run (default); plan and apply them after what they read; "
        "or do that only for plans within the bound the approval showed",
    )
    apply.add_argument(
        "--manifest-sha256",
        help="refuse plans whose manifest.json has another SHA-256 (the Plan action's exported PLAN_SHA256)",
    )
    env = commands.add_parser("env", help="print export lines for the outputs later actions use")
    env.add_argument("--outputs", type=Path, required=True)
    args = parser.parse_args(argv)
    terraform = terraform or Terraform()
    try:
        if args.command == "plan":
            return plan_stage(
                terraform=terraform,
                stage=args.stage,
                cdktf_out=args.cdktf_out,
                plans_dir=args.plans,
                allowed=allowed_destroys(args.allow_destroy, environ),
                frontend=live_release(args.frontend_dist) if args.frontend_dist else None,
            )
        if args.command == "apply":
            return apply_stage(
                terraform=terraform,
                stage=args.stage,
                cdktf_out=args.cdktf_out,
                plans_dir=args.plans,
                outputs_dir=args.outputs,
                deferred_mode=args.deferred,
                allowed=allowed_destroys(args.allow_destroy, environ),
                manifest_sha256=args.manifest_sha256,
            )
        sys.stdout.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in stage_environment(args.outputs).items()))
        return 0
    except StageError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status


if __name__ == "__main__":
    sys.exit(main())
