"""Plan a stage's workload stack to a saved plan, apply exactly that plan, and hand on the stage's outputs.

    python -m pipelines.terraform_stage plan  --stage S --cdktf-out DIR --plans DIR [--allow-destroy [STACK:]ADDR]...
    python -m pipelines.terraform_stage apply --stage S --cdktf-out DIR --plans DIR --outputs DIR [--manifest-sha256 H]
    python -m pipelines.terraform_stage env   --outputs DIR

A stage's network, backend and frontend are one stack, `cdktf.out/stacks/<stage>`, so one plan covers the
whole stage and no part waits on another's outputs. `plan` runs `terraform init` and `terraform plan -out`
there and writes into the plans directory (the pipeline's `<Stage>Plan` artifact): the saved plan, its
`terraform show -json` and the dependency lock file it was made with, plus `summary.md`, `headline.txt`
(one line for the approval message) and `manifest.json` (stage, stacks, SHA-256 of each plan). It refuses,
with the summary written, a plan that destroys stateful resources (see `plan_summary`).

`apply` applies that saved plan and nothing else: it checks that the manifest is this stage's and that
the plan file is the one that was planned (and, where the stage asks, approved), initializes with the
planned lock file read-only, and runs `terraform apply <saved plan>`; Terraform itself refuses a plan whose
state moved on since. Then it writes the stack's non-sensitive `terraform output -json` into the outputs
directory.

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
from pipelines.deploy_frontend import pending_release
from pipelines.errors import EXIT_FAILED as EXIT_FAILED  # drift.py and tests import it from here
from pipelines.errors import CommandError
from pipelines.plan_summary import (
    EXIT_REFUSED,
    PlanError,
    StackPlan,
    allowed_destroys,
    broadens,
    headline,
    parse_plan,
    refused,
    render,
)
from pipelines.terraform_workdir import STACK_FILE, isolated, terraform_environment

PLAN_FILE = "tfplan"
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
# Stack outputs the later actions read, by the environment variable `env` exports them as.
STAGE_OUTPUT_VARIABLES = {
    "backend_url": "BACKEND_URL",
    "frontend_url": "FRONTEND_URL",
    "frontend_bucket": "FRONTEND_BUCKET",
    "frontend_distribution_id": "FRONTEND_DISTRIBUTION_ID",
}
# Applying waits this long for another run's state lock (a drift check, a laptop plan) before failing.
LOCK_TIMEOUT = "-lock-timeout=10m"


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
        env={
            **os.environ,
            **(environment or {}),
            **terraform_environment(),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
        },
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


def stage_stacks(cdktf_out: Path, stage: str) -> list[str]:
    """The stage's stacks in deploy order: its one workload stack, `<stage>` (main.py's WorkloadStack)."""
    if stage not in read_manifest(cdktf_out):
        raise StageError(f"no stack {stage!r} in {cdktf_out}/manifest.json: is --stage right, and is it synthesized?")
    return [stage]


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
    bake_result: str = "",
) -> int:
    """`bake_result`: the previous stage's bake, for the approver (part of the summary the manifest binds).
    `frontend`: what releasing the stage's frontend build would change, given the stage's live outputs
    (`deploy_frontend.pending_release`); recorded in the manifest, so an empty plan means nothing changes."""
    stacks = stage_stacks(cdktf_out, stage)
    # Before any init: init is what downloads the providers and modules a commit names.
    policy_check.enforce(cdktf_out, stage, out, StageError)
    plans_dir.mkdir(parents=True, exist_ok=True)
    planned: list[StackPlan] = []
    entries: list[dict[str, Any]] = []
    live_outputs: dict[str, str] = {}
    for stack in stacks:
        # The Build artifact's configuration, as Apply will find it there (apply_stage compares it).
        config_sha256 = sha256(stack_dir(cdktf_out, stack) / STACK_FILE)
        directory, target = isolated(stack_dir(cdktf_out, stack)), plans_dir / stack
        target.mkdir(exist_ok=True)
        plan_file = target / PLAN_FILE
        out(f"{stack}: planning")
        changes, document, plan = plan_stack(terraform, stack, directory, plan_file)
        (target / PLAN_JSON).write_text(json.dumps(document))
        if (directory / LOCK_FILE).exists():
            shutil.copyfile(directory / LOCK_FILE, target / PLANNED_LOCK_FILE)
        planned.append(plan)
        entries.append(
            {
                "stack": stack,
                "changes": changes,
                "sha256": sha256(plan_file),
                # The configuration planned: Apply refuses a cdk.tf.json changed since.
                "config_sha256": config_sha256,
            }
        )
        if frontend is not None:
            live_outputs.update(
                (name, str(output["value"]))
                for name, output in terraform.outputs(directory).items()
                if name in STAGE_OUTPUT_VARIABLES
            )
    release = frontend(live_outputs) if frontend is not None else None
    summary = render(planned, allowed)
    line = headline(planned, allowed)
    if release is not None:
        summary += f"\n## Frontend\n\n{release['detail']}.\n"
        line += f"; frontend: {release['detail']}"
    if bake_result:
        summary += f"\n## Bake\n\n{bake_result}.\n"
    changes_anything = any(entry.get("changes") for entry in entries)
    changes_anything = changes_anything or bool(release and release["changes"])
    (plans_dir / SUMMARY).write_text(summary)
    (plans_dir / HEADLINE).write_text(line + "\n")
    # What Review and Apply decide who approves by (pipelines/review.py, approval_check.py): `broadens`, the
    # plans widen what the stage may do (plan_summary.broadens); `changes`, applying them or releasing the
    # frontend build changes anything.
    manifest: dict[str, Any] = {
        "stage": stage,
        "broadens": broadens(planned),
        "changes": changes_anything,
        "stacks": entries,
        # What the approver reads (published by pipelines/publish_summary.py): Apply checks the published copy.
        "summary_sha256": sha256(plans_dir / SUMMARY),
    }
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
    out: Callable[[str], None] = print,
    manifest_sha256: str | None = None,
) -> int:
    manifest = read_plans_manifest(plans_dir, stage, manifest_sha256)
    entries: list[dict[str, Any]] = manifest["stacks"]
    # Apply runs `terraform init` on this cdktf.out too: it must pass the same check as `plan`'s.
    policy_check.enforce(cdktf_out, stage, out, StageError)
    synthesized = stage_stacks(cdktf_out, stage)
    if [entry["stack"] for entry in entries] != synthesized:
        raise StageError(
            f"the plans are for {[e['stack'] for e in entries]} but {cdktf_out} has {synthesized}: "
            "plan and apply must use the same Build artifact"
        )
    for entry in entries:
        plan_file = plans_dir / entry["stack"] / PLAN_FILE
        if not plan_file.exists() or sha256(plan_file) != entry["sha256"]:
            raise StageError(
                f"the saved plan of {entry['stack']} is missing or not the one that was planned: plan again"
            )
        configuration = stack_dir(cdktf_out, entry["stack"]) / STACK_FILE
        if sha256(configuration) != entry.get("config_sha256"):
            raise StageError(
                f"{configuration} is not the configuration {entry['stack']} was planned from: plan and apply must "
                "use the same Build artifact; release the change again"
            )
    outputs_dir.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        stack = entry["stack"]
        directory = isolated(stack_dir(cdktf_out, stack))
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
    return 0


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


def write_outputs(path: Path, outputs: Mapping[str, Any]) -> None:
    """Only non-sensitive values leave Terraform: the outputs directory is a pipeline artifact."""
    visible = {name: output["value"] for name, output in outputs.items() if not output.get("sensitive")}
    path.write_text(json.dumps(visible, indent=1, sort_keys=True))


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
            "the stage's workload stack (stacks/workload.py) must declare them"
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
    plan.add_argument("--allow-destroy", action="append", default=[], metavar="[STACK:]ADDRESS")
    plan.add_argument(
        "--frontend-dist",
        type=Path,
        help="the stage's frontend build: the plan records whether releasing it changes the live site",
    )
    plan.add_argument("--bake-result", default="", help="the previous stage's bake (BAKE_RESULT), for the summary")
    apply.add_argument("--outputs", type=Path, required=True, help="where to write each stack's outputs")
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
                bake_result=args.bake_result,
            )
        if args.command == "apply":
            return apply_stage(
                terraform=terraform,
                stage=args.stage,
                cdktf_out=args.cdktf_out,
                plans_dir=args.plans,
                outputs_dir=args.outputs,
                manifest_sha256=args.manifest_sha256,
            )
        sys.stdout.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in stage_environment(args.outputs).items()))
        return 0
    except StageError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status


if __name__ == "__main__":
    sys.exit(main())
