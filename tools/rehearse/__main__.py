"""`make rehearse`: from empty accounts to prod, then a no-op commit, an output change, a pipeline change,
executions in flight together (two pushes close together, a push or a pipeline change while prod waits for
its approval), a failure and its retry; each through the synthesized pipeline's own actions. Exits 1 unless every
scenario ends as expected. A scenario that a known defect breaks is expected to fail with that defect's
words (like a strict xfail): it counts as unexpected once it passes, so the fix must update it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from names import applied_stack_key, deployed_commit_parameter
from tools.rehearse.codebuild import Machine, StandIn
from tools.rehearse.pipeline import Execution, Pipeline, Services, Step
from tools.rehearse.terraform import trust_allows
from tools.rehearse.world import REPOSITORY, MotoServer, World, launcher, tool_command

ACCOUNTS = {"beta": "444444444444", "gamma": "555555555555", "prod": "666666666666"}
REGION = "eu-west-1"
# Executions a new deployment may take before the rehearsal calls it stuck.
MAX_FIRST_DEPLOY_EXECUTIONS = 12
ADMINISTRATOR_ROLE = "Administrator"
# The pipeline stage that plans, approves and applies prod. Its approval needs a person for every release that
# changes prod (StageConfig.approval_before_apply: the last stage); a person's approvals are counted by the stage they are in.
PROD_STAGE = "Prod"
# Who releases a change again ("Release change", StartPipelineExecution): the administrator, in the pipeline's account.
OPERATOR = f"arn:aws:sts::{ACCOUNTS['beta']}:assumed-role/{ADMINISTRATOR_ROLE}/operator"


@dataclass(frozen=True)
class Expectation:
    """`defect` is None when the scenario must pass; else the words its failure must contain."""

    defect: str | None = None
    words: str = ""


@dataclass
class Outcome:
    name: str
    passed: bool
    detail: str
    expectation: Expectation

    @property
    def as_expected(self) -> bool:
        if self.expectation.defect is None:
            return self.passed
        return not self.passed and self.expectation.words in self.detail


class ScenarioError(Exception):
    pass


class Rehearsal:
    def __init__(
        self, root: Path, world: World, services: Services, out: Callable[[str], None], keep: bool = False
    ) -> None:
        self.root = root
        self.world = world
        self.services = services
        self.out = out
        self.steps: list[Step] = []
        # What the administrator's last commands printed (stdout and stderr).
        self.admin_output = ""
        root.mkdir(parents=True)
        self.world_file = world_file = root / "world.json"
        world.save(world_file)
        (root / "faults").mkdir()
        self.machine = Machine(root / "machine", world_file, world.endpoint)
        self.github = root / "github"
        self.admin = root / "admin"
        self.admin_bin = self._admin_tools(world_file)
        self._create_repository()
        self.pipeline = Pipeline(
            world=world,
            machine=self.machine,
            services=services,
            repository=self.github,
            root=root / "runs",
            stand_ins=rehearsal_stand_ins(world_file),
            record=self.record,
            keep=keep,
        )
        (root / "runs").mkdir()

    # The world outside the pipeline: GitHub, an administrator's laptop

    def _create_repository(self) -> None:
        files = (
            subprocess.run(["git", "ls-files", "-z"], cwd=REPOSITORY, capture_output=True, check=True)
            .stdout.decode()
            .split("\0")
        )
        self.github.mkdir()
        for name in filter(None, files):
            source = REPOSITORY / name
            if source.is_file():
                target = self.github / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        self.git(self.github, "init", "-q", "-b", "main")
        self.git(self.github, "add", "-A")
        self.git(self.github, "commit", "-q", "-m", "the repository as it is now")
        self.git(self.root, "clone", "-q", str(self.github), str(self.admin))

    @staticmethod
    def git(where: Path, *args: str) -> str:
        environment = {
            **os.environ,
            "GIT_AUTHOR_NAME": "rehearsal",
            "GIT_AUTHOR_EMAIL": "rehearsal@example.com",
            "GIT_COMMITTER_NAME": "rehearsal",
            "GIT_COMMITTER_EMAIL": "rehearsal@example.com",
        }
        return subprocess.run(
            ["git", *args], cwd=where, env=environment, capture_output=True, text=True, check=True
        ).stdout

    def _admin_tools(self, world_file: Path) -> Path:
        """The administrator's PATH additions: Terraform (the fake), the cdktn CLI's deploy and the AWS CLI's
        put-secret-value."""
        folder = self.root / "admin-bin"
        folder.mkdir()
        terraform = launcher("tools.rehearse.terraform", world_file)
        aws = launcher("tools.rehearse.aws_cli", world_file)
        # `cdktn deploy STACK...` as the CLI does it: synthesize (cdktf.json's app), then init and apply each stack.
        cdktn = (
            "#!/bin/bash\nset -euo pipefail\n"
            '[ "$1" = deploy ] || { echo "the rehearsal models only cdktn deploy" >&2; exit 2; }\nshift\n'
            "make synth >/dev/null\n"
            'for stack in "$@"; do (cd "cdktf.out/stacks/$stack" && terraform init -input=false >/dev/null && '
            "terraform apply -auto-approve -input=false); done\n"
        )
        for name, text in (("terraform", terraform), ("cdktn", cdktn), ("aws", aws)):
            (folder / name).write_text(text)
            (folder / name).chmod(0o755)
        return folder

    def administrator(
        self, stage: str, label: str, script: str, settings: dict[str, str], answers: str = ""
    ) -> tuple[int, str]:
        """Runs shell commands on the administrator's clone with that account's administrator credentials;
        `answers` are what the administrator types when a command asks (nothing: a prompt reads end of input)."""
        credentials = self.world.role_credentials(
            f"arn:aws:iam::{ACCOUNTS[stage]}:role/{ADMINISTRATOR_ROLE}", f"admin-{stage}"
        )
        environment = {
            "PATH": f"{self.admin_bin}:{os.environ.get('PATH', '')}",
            "HOME": str(self.machine.home),
            "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"],
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.world.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "LANG": "C.UTF-8",
            **Machine.trusted_certificates(),
            **settings,
        }
        started = time.monotonic()
        completed = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.admin,
            env=environment,
            capture_output=True,
            text=True,
            input=answers,
            timeout=600,
            check=False,
        )
        output = self.admin_output = completed.stdout + completed.stderr
        (self.root / "admin.log").open("a").write(f"$ {script}\n{output}\n")
        result = "Succeeded" if completed.returncode == 0 else "Failed"
        detail = "" if completed.returncode == 0 else last_error_line(output)
        self.record(Step("admin", stage, label, time.monotonic() - started, result, detail))
        return completed.returncode, detail

    def record(self, step: Step) -> None:
        self.steps.append(step)
        detail = f"  {step.detail}" if step.detail else ""
        self.out(f"{step.execution:<9} {step.stage:<15} {step.action:<30} {step.seconds:6.1f}s  {step.result}{detail}")

    def commit(self, message: str, change: Callable[[Path], None]) -> str:
        """A developer's commit pushed to the branch: change the working copy of `github`, commit."""
        change(self.github)
        self.git(self.github, "add", "-A")
        self.git(self.github, "commit", "-q", "-m", message)
        return self.git(self.github, "rev-parse", "HEAD").strip()

    def head(self) -> str:
        return self.git(self.github, "rev-parse", "HEAD").strip()


def rehearsal_stand_ins(world_file: Path) -> list[StandIn]:
    """The buildspec commands that cannot run here and what runs instead, each in the fidelity ledger
    (docs/fidelity.md, printed at the end of a rehearsal) with the cheapest real check."""
    stand_ins = [
        StandIn(
            "test",
            "bash .ci/run",
            "make env >/dev/null && .venv/bin/python -m compileall -q -j 0 app stacks modules pipelines tools tests "
            "&& echo 'the environment installs and every module compiles'",
            "`make codebuild-test` ran this command on the repository in CodeBuild's conditions (.ci/run); here each "
            "commit's copy, as CodeBuild hands it over, installs its environment and compiles",
        ),
        StandIn(
            "smoke",
            "make deployed-test",
            tool_command("tools.rehearse.probe", world_file)
            + ' --stage "$STAGE" --backend-url "$BACKEND_URL" --frontend-url "$FRONTEND_URL"'
            + ' --expect-version "$expected_version"',
            "the stage's hosts do not answer here: the probe asks the rehearsal's AWS what they would serve",
        ),
        StandIn(
            "plan",
            "python -m pipelines.bake",
            'python -m pipelines.bake --stage "$STAGE" --minutes 0 --result-file bake.txt',
            "the rehearsal does not wait out a bake: it reads the stage's alarms once",
            mode="bake",
        ),
    ]
    # The Apply's own smoke check (pipeline-owned, inlined in every Apply project) GETs the same hosts: the probe
    # answers for them too. Only that line is replaced: the restore it triggers runs for real against moto.
    pinned_smoke = (
        "if ! "
        + tool_command("tools.rehearse.probe", world_file)
        + ' --fault pinned-smoke --stage "$STAGE" --backend-url "$BACKEND_URL" --frontend-url "$FRONTEND_URL"'
        + ' --expect-version "$expected_version" >"$restore_dir/smoke-failure.txt" 2>&1; then'
    )
    stand_ins += [
        StandIn(
            kind,
            "if ! python -m pipelines.smoke_check check",
            pinned_smoke,
            "the stage's hosts do not answer here: the probe stands in for the Apply's own smoke check",
        )
        for kind in ("deploy", *(f"apply-{stage}" for stage in ACCOUNTS if stage != "beta"))
    ]
    return stand_ins


# The fidelity ledger's section on the rehearsal's own stand-ins, printed when a rehearsal ends.
LEDGER = REPOSITORY / "docs" / "fidelity.md"
LEDGER_SECTION = "## What the rehearsal stands in for"


def ledger_rows() -> list[list[str]]:
    """The section's table: stand-in, what it replaces, what it cannot show, the cheapest real check."""
    text = LEDGER.read_text()
    if LEDGER_SECTION not in text:
        raise ScenarioError(f"{LEDGER} has no section {LEDGER_SECTION!r}: restore it (the rehearsal prints it)")
    rows = []
    for line in text[text.index(LEDGER_SECTION) :].splitlines()[1:]:
        if line.startswith("## "):
            break
        if line.startswith("| ") and not line.startswith("| ---"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows[1:]


def print_ledger() -> None:
    print(f"\nwhat ran here as a stand-in, and the cheapest real check ({LEDGER.relative_to(REPOSITORY)}):")
    for stand_in, _replaces, _cannot_show, real_check in ledger_rows():
        print(f"- {stand_in}\n  real check: {real_check}")


def last_error_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Error:") or line.startswith("error:"):
            return line[:300]
    return lines[-1][:300] if lines else ""


# -- scenarios ------------------------------------------------------------------------------------


def readme_bootstrap_block() -> str:
    """The shell block of the README's "Bootstrap an account" section, as written."""
    text = (REPOSITORY / "README.md").read_text()
    section = text.split("## Bootstrap an account", 1)[1].split("\n## ", 1)[0]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def bootstrap_commands(stage: str) -> str:
    """The README's block for one stage: its placeholders filled, its example stage (gamma) replaced by `stage`."""
    lines = []
    for line in readme_bootstrap_block().splitlines():
        command = line.split("  #", 1)[0].rstrip()
        if command.startswith("export "):
            for name, account in ACCOUNTS.items():
                command = command.replace(
                    f"CANVALO_{name.upper()}_ACCOUNT_ID=...", f"CANVALO_{name.upper()}_ACCOUNT_ID={account}"
                )
        else:
            command = command.replace("gamma", stage)
        lines.append(command)
    return "\n".join(lines)


def settings() -> dict[str, str]:
    accounts = {f"CANVALO_{stage.upper()}_ACCOUNT_ID": account for stage, account in ACCOUNTS.items()}
    # The administrator also reads the stages through the plan roles with `make status` (README). The
    # rehearsal's connection stands for one a person has already authorized in the console (README, First
    # deploy), so the first pipeline deploy creates the drift check too (docs/fidelity.md).
    return {**accounts, "CANVALO_OPERATOR_ROLES": ADMINISTRATOR_ROLE, "CANVALO_CONNECTION_AVAILABLE": "true"}


def bootstrap(rehearsal: Rehearsal, stage: str) -> None:
    # The administrator reads the plan and answers "yes" to its one question.
    status, detail = rehearsal.administrator(
        stage, f"README bootstrap-{stage}", bootstrap_commands(stage), settings(), answers="yes\n"
    )
    if status:
        raise ScenarioError(f"bootstrap-{stage} (README steps): {detail}")


def deploy_pipeline(rehearsal: Rehearsal) -> None:
    status, detail = rehearsal.administrator("beta", "cdktn deploy pipeline", "cdktn deploy pipeline", settings())
    if status:
        raise ScenarioError(f"cdktn deploy pipeline: {detail}")
    # Where every stack keeps its state, as the administrator's synth says: the pipeline's definition
    # and the post-deploy probe read the states from there.
    rehearsal.world.learn_states(rehearsal.admin / "cdktf.out")
    rehearsal.world.save(rehearsal.world_file)


def mark_bootstrapped(rehearsal: Rehearsal) -> None:
    """README: set "bootstrapState": "s3" in cdktf.json and commit."""

    def change(repository: Path) -> None:
        path = repository / "cdktf.json"
        text = path.read_text()
        if '"bootstrapState"' not in text:
            text = text.replace('"appName": "canvalo",', '"appName": "canvalo",\n    "bootstrapState": "s3",')
        path.write_text(text)

    rehearsal.commit("cdktf.json: bootstrap stacks keep state in S3", change)


def deliver(rehearsal: Rehearsal, commit: str, limit: int) -> tuple[list[Execution], str]:
    """Executions of `commit` until one succeeds, as an operator's `Release change` would; at most `limit`.
    A release, not a push: the trigger's file filters do not apply, and the commit may have been pushed before."""
    runs: list[Execution] = []
    rehearsal.pipeline.release(commit, OPERATOR)
    while len(runs) < limit:
        finished = rehearsal.pipeline.run_queue()
        runs += finished
        if finished and finished[-1].status == "Succeeded":
            return runs, ""
        if len(runs) < limit:
            rehearsal.pipeline.release(commit, OPERATOR)
    failures = [s for s in rehearsal.steps if s.result == "Failed"]
    return runs, failures[-1].detail if failures else "no execution succeeded"


def first_deploy(rehearsal: Rehearsal, strict_order: bool) -> tuple[bool, str, int]:
    """README order (beta, gamma, prod bootstrap; then the pipeline), or the working order when not strict."""
    try:
        bootstrap(rehearsal, "beta")
        if strict_order:
            bootstrap(rehearsal, "gamma")
            bootstrap(rehearsal, "prod")
            deploy_pipeline(rehearsal)
        else:
            deploy_pipeline(rehearsal)
            bootstrap(rehearsal, "gamma")
            bootstrap(rehearsal, "prod")
        mark_bootstrapped(rehearsal)
    except ScenarioError as failure:
        return False, str(failure), 0
    runs, detail = deliver(rehearsal, rehearsal.head(), MAX_FIRST_DEPLOY_EXECUTIONS)
    if detail:
        return False, detail, len(runs)
    prod_approvals = rehearsal.pipeline.approvals[PROD_STAGE]
    if (len(runs), prod_approvals) != (1, 1):
        return (
            False,
            f"took {len(runs)} executions and {prod_approvals} prod approvals by a person, not one of each",
            len(runs),
        )
    unrecorded = unrecorded_stacks(rehearsal.world)
    if unrecorded:
        return False, f"the drift check would not find what each stage applied: {unrecorded}", len(runs)
    return True, "", len(runs)


def unrecorded_stacks(world: World) -> str:
    """What the drift check would miss: each stage's Apply stores the stack it applied, as the commit it records
    (`pipelines.drift store-applied`, then `record`). Empty when every stage's is there."""
    beta = ACCOUNTS["beta"]
    s3, ssm = world.client(beta, "s3"), world.client(beta, "ssm")
    bucket = f"canvalo-beta-pipeline-artifacts-{beta}"
    wrong = []
    for stage in ACCOUNTS:
        commit = ssm.get_parameter(Name=deployed_commit_parameter("canvalo", stage))["Parameter"]["Value"]
        try:
            recorded = s3.head_object(Bucket=bucket, Key=applied_stack_key(stage))["Metadata"].get("commit")
        except ClientError as error:
            recorded = f"nothing ({error.response.get('Error', {}).get('Code')})"
        if recorded != commit:
            wrong.append(f"{stage} runs {commit}, s3://{bucket}/{applied_stack_key(stage)} holds {recorded}")
    return "; ".join(wrong)


def single_execution(rehearsal: Rehearsal, commit: str) -> tuple[bool, str, list[Execution]]:
    """Push `commit` and run what it starts; ScenarioError when the trigger starts nothing."""
    if rehearsal.pipeline.push(commit) is None:
        raise ScenarioError(f"the push of {commit[:10]} started no execution: {rehearsal.steps[-1].detail}")
    runs = rehearsal.pipeline.run_queue()
    last = runs[-1]
    failures = [s for s in rehearsal.steps if s.result == "Failed"]
    detail = "" if last.status == "Succeeded" else (failures[-1].detail if failures else last.status)
    return last.status == "Succeeded", detail, runs


def edit(path: str, old: str, new: str) -> Callable[[Path], None]:
    def change(repository: Path) -> None:
        file = repository / path
        text = file.read_text()
        if old not in text:
            raise ScenarioError(f"the scenario's change no longer applies: {path} has no {old!r}")
        file.write_text(text.replace(old, new, 1))

    return change


def append(path: str, line: str) -> Callable[[Path], None]:
    def change(repository: Path) -> None:
        file = repository / path
        if not file.is_file():
            raise ScenarioError(f"the scenario's change no longer applies: {path} does not exist")
        with file.open("a") as appended:
            appended.write(line)

    return change


# A commit that starts the pipeline and deploys nothing: .gitignore is neither Markdown nor under docs/, so the
# trigger's file filter lets it through, and no build, test, image tag (pipelines/image_tag.sh) or pinned toolkit
# (modules/pipeline_toolkit.py) reads it. Each use appends one more line, so each is a new commit.
DEPLOYS_NOTHING = append(".gitignore", "# rehearsal: a change that deploys nothing\n")
# A commit that changes only documentation: the trigger starts nothing for it.
DOCUMENTATION_ONLY = edit("docs/pipeline.md", "\n", "\n\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.rehearse", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep", action="store_true", help="keep the rehearsal's folder (logs, artifacts) and print it"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS[1:],
        metavar="SCENARIO",
        help="run the first deploy and this scenario (repeatable); every scenario by default, in two groups at once",
    )
    parser.add_argument("--outcomes", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # The timeline is read while it runs (CI's log, a terminal): one line at a time.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    started = time.monotonic()
    if args.only:
        SKIPPED.update(set(SCENARIOS[1:]) - set(args.only))
        outcomes, first_executions, approvals = rehearse(args.keep)
    else:
        outcomes, first_executions, approvals = rehearse_in_groups(args.keep)
    if args.outcomes:
        args.outcomes.write_text(
            json.dumps(
                {
                    "outcomes": [[o.name, o.passed, o.detail] for o in outcomes],
                    "first_executions": first_executions,
                    "approvals": approvals,
                }
            )
        )
        return 0
    print()
    for outcome in outcomes:
        verdict = "as expected" if outcome.as_expected else "NOT AS EXPECTED"
        expected = f" (expected failure: {outcome.expectation.defect})" if outcome.expectation.defect else ""
        print(f"{outcome.name:<{NAME_WIDTH}} {'passed' if outcome.passed else 'failed'}{expected}: {verdict}")
        if outcome.detail:
            print(f"{'':<28} {outcome.detail}")
    print_ledger()
    good = sum(o.as_expected for o in outcomes)
    print(f"rehearsed in {time.monotonic() - started:.0f} s")
    # Only a person's approvals are counted: in prod any change needs one, elsewhere only a broadening plan does.
    print(
        f"rehearsal: first deploy took {first_executions} execution(s), {approvals[PROD_STAGE]} prod approval(s) and "
        f"{sum(approvals.values()) - approvals[PROD_STAGE]} broadening approval(s) by a person; "
        f"{good}/{len(outcomes)} scenarios as expected"
    )
    expected_count = len(SCENARIOS) - len(SKIPPED) + (len(GROUPS) - 1 if not args.only else 0)
    return 0 if good == len(outcomes) == expected_count else 1


def rehearse(keep: bool) -> tuple[list[Outcome], int, Counter[str]]:
    """The first deploy and every scenario not SKIPPED, one after the other, on one moto."""
    root = Path(tempfile.mkdtemp(prefix="canvalo-rehearsal-"))
    print(f"{'execution':<9} {'stage':<15} {'action':<30} {'time':>7}  result")
    try:
        with MotoServer(root / "moto.log") as moto:
            world = World(endpoint=moto.endpoint, region=REGION, accounts=dict(ACCOUNTS))
            services = Services(world)
            try:
                return run_scenarios(root, world, services, keep)
            finally:
                services.close()
    finally:
        if keep:
            print(f"rehearsal folder: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def rehearse_in_groups(keep: bool) -> tuple[list[Outcome], int, Counter[str]]:
    """GROUPS at once, one process each (its own moto, accounts and first deploy: no state shared), on the
    machine's two cores; each line of the timeline names its group. The first deploy is counted per group."""
    with tempfile.TemporaryDirectory(prefix="canvalo-rehearsal-groups-") as folder:
        children = []
        for number, group in enumerate(GROUPS, 1):
            command = [sys.executable, "-m", "tools.rehearse", "--outcomes", f"{folder}/{number}.json"]
            command += [*(["--keep"] if keep else []), *(f"--only={name}" for name in group)]
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            children.append((number, child, threading.Thread(target=relay, args=(number, child), daemon=True)))
            children[-1][2].start()
        outcomes: list[Outcome] = []
        first_executions, approvals = 0, Counter[str]()
        for number, child, reader in children:
            reader.join()
            code = child.wait()
            try:
                result = json.loads(Path(f"{folder}/{number}.json").read_text())
            except (OSError, ValueError):
                outcomes.append(
                    Outcome(f"group {number}", False, f"its process exited {code} with no outcomes", Expectation())
                )
                continue
            for name, passed, detail in result["outcomes"]:
                label = f"{name} (group {number})" if name == SCENARIOS[0] else name
                outcomes.append(Outcome(label, passed, detail, KNOWN_DEFECTS.get(name, Expectation())))
            first_executions = max(first_executions, result["first_executions"])
            if number == 1:
                approvals = Counter(result["approvals"])
        return outcomes, first_executions, approvals


def relay(number: int, child: subprocess.Popen[str]) -> None:
    assert child.stdout is not None
    for line in child.stdout:
        sys.stdout.write(f"{number} {line}")


# An attacker with push access to the branch, one commit each; a reviewer rejects what a summary flags.
ATTACKS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "attack: prod approval off": (
        # No setting turns it off (it is derived: the last stage), so the commit edits the rule itself.
        "config: prod deploys without an approval",
        edit("stacks/config.py", "        return self.name == STAGE_NAMES[-1]\n", "        return False\n"),
    ),
    "attack: widen a role": (
        "backend: the task role may do anything with S3",
        edit(
            "stacks/backend.py",
            "            task_policy_statements=[\n",
            '            task_policy_statements=[\n                statement(sid="Everything", actions=["s3:*"], resources=["*"]),\n',
        ),
    ),
    "attack: local-exec": (
        "network: run a command on the deploy machine",
        edit(
            "stacks/workload.py",
            '        TerraformOutput(self, "vpc_id", value=self.network.vpc.id)',
            '        self.network.vpc.add_override("provisioner", [{"local-exec": {"command": "echo attack"}}])\n'
            '        TerraformOutput(self, "vpc_id", value=self.network.vpc.id)',
        ),
    ),
    "attack: edit a buildspec": (
        "deploy.yml: one more command with the stage's deploy role",
        edit(
            "pipelines/buildspecs/deploy.yml",
            "            python -m pipelines.verify_rollout --outputs handoff\n",
            "            python -m pipelines.verify_rollout --outputs handoff\n"
            "            python -c \"import boto3; boto3.client('ssm').put_parameter(Name='/attack/buildspec', "
            "Value='$STAGE', Type='String', Overwrite=True)\"\n",
        ),
    ),
    "attack: edit terraform_stage": (
        "terraform_stage: a line that runs with the deploy role",
        edit(
            "pipelines/terraform_stage.py",
            "    args = parser.parse_args(argv)\n",
            "    args = parser.parse_args(argv)\n"
            "    import boto3\n\n"
            "    boto3.client('ssm').put_parameter(Name='/attack/terraform_stage', Value=args.command, "
            "Type='String', Overwrite=True)\n",
        ),
    ),
}
# Someone of the beta account allowed codepipeline:PutApprovalResult, but not an approver, answers prod's approval.
OTHER_APPROVER = "attack: approved by a non-approver"
# Scenarios `--only` leaves out (the first deploy always runs: the others start from what it deployed).
SKIPPED: set[str] = set()
# What an attack whose own code ran with a pipeline role's rights fails with (an SSM marker it wrote): the
# privileged actions run only the pipeline's pinned buildspecs and toolkit (modules/pipeline_toolkit.py).
OWN_CODE_RUNS = "ran with apply rights"
# Scenarios that a known defect breaks, with the words their failure must contain; none today.
KNOWN_DEFECTS: dict[str, Expectation] = {}


def run_scenarios(root: Path, world: World, services: Services, keep: bool) -> tuple[list[Outcome], int, Counter[str]]:
    outcomes: list[Outcome] = []

    def outcome(name: str, passed: bool, detail: str) -> None:
        outcomes.append(Outcome(name, passed, detail, KNOWN_DEFECTS.get(name, Expectation())))

    # First deploy, following the README as written.
    readme = Rehearsal(root / "as-written", world, services, print, keep)
    passed, detail, executions = first_deploy(readme, strict_order=True)
    approvals = Counter(readme.pipeline.approvals)
    outcome("first deploy", passed, detail)
    rehearsal = readme
    if not passed:
        # The other scenarios need a deployed pipeline: a fresh set of accounts, deployed in the order
        # that works (pipeline before the gamma/prod bootstrap), with the operator's documented steps.
        print("-- the README's order failed; the other scenarios start from accounts deployed in the order that works")
        with MotoServer(root / "moto-baseline.log") as moto:
            baseline_world = World(endpoint=moto.endpoint, region=REGION, accounts=dict(ACCOUNTS))
            baseline_services = Services(baseline_world)
            try:
                rehearsal = Rehearsal(root / "baseline", baseline_world, baseline_services, print, keep)
                ok, base_detail, executions = first_deploy(rehearsal, strict_order=False)
                approvals = Counter(rehearsal.pipeline.approvals)
                later_scenarios(rehearsal, outcome, ok, base_detail)
            finally:
                baseline_services.close()
                rehearsal.pipeline.close()
        readme.pipeline.close()
        return outcomes, executions, approvals
    try:
        later_scenarios(rehearsal, outcome, True, "")
    finally:
        rehearsal.pipeline.close()
    return outcomes, executions, approvals


def later_scenarios(rehearsal: Rehearsal, outcome: Callable[[str, bool, str], None], ready: bool, why: str) -> None:
    for name in LATER_SCENARIOS:
        if name in SKIPPED:
            continue
        if not ready:
            outcome(name, False, f"not run: no deployed baseline ({why})")
        else:
            print(f"-- {name}")
            try:
                outcome(name, *LATER_SCENARIOS[name](rehearsal))
            except ScenarioError as failure:
                # E.g. a push the trigger started nothing for: this scenario failed, the next ones still run.
                outcome(name, False, str(failure))


def docs_only_commit(rehearsal: Rehearsal) -> tuple[bool, str]:
    """A commit that changes only documentation starts no execution (the trigger's file filter). A commit that
    changes a file nothing deploys (.gitignore) runs the whole pipeline and reaches prod with no person asked:
    Review approves each stage's empty plan, Apply accepts that, and prod's task definition stays the same."""
    documentation = rehearsal.commit("docs: a comment", DOCUMENTATION_ONLY)
    started, queued = rehearsal.pipeline.push(documentation), rehearsal.pipeline.run_queue()
    if started is not None or queued:
        return False, f"a documentation-only commit started {len(queued)} execution(s); the trigger should start none"
    print(f"{'':<9} docs only: {rehearsal.steps[-1].detail[:140]}")
    approvals, before = rehearsal.pipeline.approvals[PROD_STAGE], prod_serials(rehearsal.world)
    running = prod_task_definition(rehearsal.world)
    commit = rehearsal.commit("gitignore: a comment", DEPLOYS_NOTHING)
    passed, detail, runs = single_execution(rehearsal, commit)
    if not passed:
        return False, detail
    asked = rehearsal.pipeline.approvals[PROD_STAGE] - approvals
    touched = [stack for stack, serial in prod_serials(rehearsal.world).items() if serial != before.get(stack)]
    reviewed = [
        s
        for s in rehearsal.steps
        if s.execution == runs[-1].id[:8]
        and (s.stage, s.action, s.result) == (PROD_STAGE, "Approve", "Succeeded")
        and s.detail.startswith("approved by Review")
    ]
    if asked or touched or prod_task_definition(rehearsal.world) != running or not reviewed:
        return False, (
            f"expected prod approved by Review without a person or a change; {asked} approval(s) by a person, "
            f"Review's approval {'recorded' if reviewed else 'missing'}, prod stacks changed {touched}, "
            f"task definition {prod_task_definition(rehearsal.world)} (was {running})"
        )
    print(f"{'':<9} prod: no person asked ({reviewed[0].detail[:100]}), task definition unchanged")
    return True, ""


# A Saturday night, when prod's committed window (`* * 8-16 ? * MON-FRI *` in UTC: weekdays 08:00-17:00) is
# closed; it opens on Monday at 08:00.
SATURDAY_NIGHT = datetime.datetime(2027, 3, 6, 22, 0, tzinfo=datetime.UTC)
MONDAY_OPENING = datetime.datetime(2027, 3, 8, 8, 0, tzinfo=datetime.UTC)


def closed_window(rehearsal: Rehearsal) -> tuple[bool, str]:
    """A commit pushed on a Saturday night: beta and gamma run at once; Prod's entry condition waits, as AWS
    documents the DeploymentWindow rule, and the same execution enters Prod (its Plan, approval and Apply) when
    the window opens on Monday morning and succeeds, with no one retrying anything. The clock is moved, never
    slept."""
    rehearsal.pipeline.clock.set(SATURDAY_NIGHT)
    commit = rehearsal.commit("gitignore: pushed on a Saturday night", DEPLOYS_NOTHING)
    passed, detail, runs = single_execution(rehearsal, commit)
    if not passed or len(runs) != 1:
        return False, f"expected one execution that waits for the window and succeeds; {len(runs)}: {detail}"
    execution = runs[0]
    waits = [s for s in rehearsal.steps if s.execution == execution.id[:8] and s.result == "Waited"]
    gamma, prod = execution.entered.get("Gamma"), execution.entered.get(PROD_STAGE)
    problems = []
    if [s.stage for s in waits] != [PROD_STAGE]:
        problems.append(f"expected only {PROD_STAGE} to wait; waited: {[s.stage for s in waits]}")
    if gamma is None or gamma >= MONDAY_OPENING:
        problems.append(f"expected gamma deployed on Saturday night, not at {gamma}")
    if prod is None or not MONDAY_OPENING <= prod < MONDAY_OPENING + datetime.timedelta(minutes=1):
        problems.append(f"expected {PROD_STAGE} entered when the window opened ({MONDAY_OPENING}), not at {prod}")
    if not problems:
        print(f"{'':<9} {waits[0].detail}")
    return not problems, "; ".join(problems)


def prod_task_definition(world: World) -> str:
    """The task definition prod's backend service runs."""
    outputs = world.read_state("prod").get("outputs") or {}
    cluster, name = outputs["backend_cluster_name"]["value"], outputs["backend_service_name"]["value"]
    ecs = world.client(ACCOUNTS["prod"], "ecs")
    return str(ecs.describe_services(cluster=cluster, services=[name])["services"][0]["taskDefinition"])


def output_change(rehearsal: Rehearsal) -> tuple[bool, str]:
    """Replace the beta load balancer: the stacks that read its outputs follow in the same execution."""
    try:
        commit = rehearsal.commit(
            "load balancer: a new name (replaces it)",
            edit("modules/load_balancer.py", 'name=f"{name}-alb"', 'name=f"{name}-lb"'),
        )
        passed, detail, _ = single_execution(rehearsal, commit)
    except ScenarioError as failure:
        passed, detail = False, str(failure)
    if not passed:
        # The next scenarios start from a delivered head, as an operator would leave it.
        deliver(rehearsal, rehearsal.head(), 3)
    return passed, detail


def pipeline_change(rehearsal: Rehearsal) -> tuple[bool, str]:
    """A pipeline change, with a newer commit queued behind it."""
    changed = rehearsal.commit(
        "pipeline: drift check an hour later", edit("stacks/pipeline.py", "cron(0 5 * * ? *)", "cron(0 6 * * ? *)")
    )
    rehearsal.pipeline.push(changed)
    newer = rehearsal.commit("gitignore: after the pipeline change", DEPLOYS_NOTHING)
    rehearsal.pipeline.push(newer)
    runs = rehearsal.pipeline.run_queue()
    statuses = [r.status for r in runs]
    last_deployed = [r.commit for r in runs if r.status == "Succeeded"][-1:]
    passed = statuses == ["Stopped", "Succeeded", "Succeeded"] and last_deployed == [newer]
    if passed:
        return True, ""
    return False, (
        f"expected the self-update to stop its execution and the branch head to be deployed last; got {statuses}, "
        f"last deployed {last_deployed[0][:10] if last_deployed else 'nothing'} (head {newer[:10]})"
    )


# A second new image (pipelines/image_tag.sh hashes app/), so a second release that changes every stage's plan.
ANOTHER_NEW_IMAGE = append("app/main.py", "# rehearsal: one more release\n")
# A change of the CodePipeline itself that is not broadening (pipelines/plan_summary.py): gamma's Bake action's
# BAKE_MINUTES. The drift schedule that "pipeline change" edits is not the aws_codepipeline, so it cancels nothing.
GAMMA_BAKES_LONGER = edit(
    "cdktf.json", '"account_id": "222222222222"', '"account_id": "222222222222",\n        "bake_minutes": 20'
)


def holding_prod(stage: str, message: str) -> bool | None:
    """A person who has not answered prod's approval yet (the rehearsal answers through Pipeline.decide) and
    approves any other question at once."""
    return None if stage == PROD_STAGE else True


def prod_deployed_commit(world: World) -> str:
    """The commit prod's last successful Apply recorded (`make status` and drift read it)."""
    ssm = world.client(ACCOUNTS["beta"], "ssm")
    return str(ssm.get_parameter(Name=deployed_commit_parameter("canvalo", "prod"))["Parameter"]["Value"])


def push_all(rehearsal: Rehearsal, *commits: str) -> list[Execution]:
    """Pushes, one right after the other, none waiting for the executions the ones before started."""
    started = []
    for commit in commits:
        execution = rehearsal.pipeline.push(commit)
        if execution is None:
            raise ScenarioError(f"the push of {commit[:10]} started no execution: {rehearsal.steps[-1].detail}")
        started.append(execution)
    return started


def step_at(rehearsal: Rehearsal, since: int, execution: Execution, stage: str, action: str) -> int:
    """Where in the timeline (from `since` on) the execution's action succeeded; -1 when it never did."""
    for index, step in enumerate(rehearsal.steps[since:], start=since):
        if (step.execution, step.stage, step.action, step.result) == (execution.id[:8], stage, action, "Succeeded"):
            return index
    return -1


def failed_since(rehearsal: Rehearsal, since: int) -> list[str]:
    return [
        f"{s.execution} {s.stage}/{s.action}: {s.detail[:120]}" for s in rehearsal.steps[since:] if s.result == "Failed"
    ]


def land_in_flight(rehearsal: Rehearsal) -> None:
    """After a scenario that failed half-way: a person approves whatever still waits, so that the next scenario
    starts with nothing in flight."""
    rehearsal.pipeline.reviewer = lambda stage, text: True
    for flight in list(rehearsal.pipeline.flights):
        if flight.execution.awaiting_person is not None:
            rehearsal.pipeline.decide(flight.execution, True)
    rehearsal.pipeline.run_queue()


def in_prod_order(rehearsal: Rehearsal, since: int, older: Execution, newer: Execution) -> list[str]:
    """What is wrong with the order prod saw: the older applied first, the newer planned only after that."""
    older_apply = step_at(rehearsal, since, older, PROD_STAGE, "Apply")
    newer_plan, newer_apply = (step_at(rehearsal, since, newer, PROD_STAGE, action) for action in ("Plan", "Apply"))
    if -1 in (older_apply, newer_plan, newer_apply) or not older_apply < newer_plan < newer_apply:
        return [
            f"expected prod applied by {older.id[:8]} (step {older_apply}), then planned (step {newer_plan}) and "
            f"applied (step {newer_apply}) by {newer.id[:8]}"
        ]
    return []


def two_pushes_seconds_apart(rehearsal: Rehearsal) -> tuple[bool, str]:
    """Two commits that each change every stage's plan (a new image), pushed one right after the other: both
    executions are in flight at once, stage by stage (the newer plans beta while the older is further on), both
    reach prod, the older first; no action fails (no stale saved plan, no state lock), prod ends on the newer."""
    since = len(rehearsal.steps)
    older_commit = rehearsal.commit("app: a release pushed first", A_NEW_IMAGE)
    newer_commit = rehearsal.commit("app: a release pushed seconds later", ANOTHER_NEW_IMAGE)
    older, newer = push_all(rehearsal, older_commit, newer_commit)
    runs = rehearsal.pipeline.run_queue()
    problems = []
    if [(r.id, r.status) for r in runs] != [(older.id, "Succeeded"), (newer.id, "Succeeded")]:
        problems.append(f"expected both executions to succeed, older first; got {[r.status for r in runs]}")
    problems += [f"failed: {line}" for line in failed_since(rehearsal, since)]
    # Both in flight at once: the newer planned beta before the older planned prod.
    newer_beta, older_prod = (
        step_at(rehearsal, since, newer, "Beta", "Plan"),
        step_at(rehearsal, since, older, PROD_STAGE, "Plan"),
    )
    if newer_beta == -1 or older_prod == -1 or newer_beta > older_prod:
        problems.append(
            f"expected the newer to plan Beta (step {newer_beta}) before the older planned Prod ({older_prod})"
        )
    problems += in_prod_order(rehearsal, since, older, newer)
    deployed = prod_deployed_commit(rehearsal.world)
    if deployed != newer_commit:
        problems.append(f"prod records {deployed[:10]}, not the newer commit {newer_commit[:10]}")
    if not problems:
        print(
            f"{'':<9} {newer.id[:8]} planned Beta (step {newer_beta}) before {older.id[:8]} planned Prod (step {older_prod})"
        )
    return not problems, "; ".join(problems)


def push_while_prod_waits(rehearsal: Rehearsal) -> tuple[bool, str]:
    """An execution waits at prod's approval for a person; a second push runs through beta and gamma and waits
    before Prod, which the first holds; the person approves the first, which applies; then the second plans prod
    afresh, is approved and applied. Prod ends on the second commit; no action fails."""
    since, approvals = len(rehearsal.steps), rehearsal.pipeline.approvals[PROD_STAGE]
    rehearsal.pipeline.reviewer = holding_prod
    try:
        (first,) = push_all(rehearsal, rehearsal.commit("app: a release prod waits on", A_NEW_IMAGE))
        rehearsal.pipeline.run_queue()
        second_commit = rehearsal.commit("app: a release pushed while prod waits", ANOTHER_NEW_IMAGE)
        (second,) = push_all(rehearsal, second_commit)
        rehearsal.pipeline.run_queue()
        problems = []
        if first.awaiting_person != (PROD_STAGE, "Approve") or first.stage_in_progress != PROD_STAGE:
            problems.append(f"expected {first.id[:8]} to wait in {PROD_STAGE} for a person; it is {first.status}")
        if ("Gamma", "Apply") not in second.done_actions or second.waiting_for != PROD_STAGE:
            problems.append(
                f"expected {second.id[:8]} through Gamma and waiting before {PROD_STAGE}; it is {second.status}, "
                f"waiting for {second.waiting_for or 'nothing'}, done {sorted(second.done_actions)[-1:]}"
            )
        if not problems:
            print(f"{'':<9} {second.id[:8]} went through Gamma and waits before {PROD_STAGE}, held by {first.id[:8]}")
        rehearsal.pipeline.reviewer = lambda stage, text: True
        rehearsal.pipeline.decide(first, True)
        runs = rehearsal.pipeline.run_queue()
    finally:
        land_in_flight(rehearsal)
    if [(r.id, r.status) for r in runs] != [(first.id, "Succeeded"), (second.id, "Succeeded")]:
        problems.append(f"expected both executions to succeed, the first first; got {[r.status for r in runs]}")
    problems += [f"failed: {line}" for line in failed_since(rehearsal, since)]
    problems += in_prod_order(rehearsal, since, first, second)
    if rehearsal.pipeline.approvals[PROD_STAGE] - approvals != 2:
        problems.append(
            f"expected two prod approvals by a person, got {rehearsal.pipeline.approvals[PROD_STAGE] - approvals}"
        )
    deployed = prod_deployed_commit(rehearsal.world)
    if deployed != second_commit:
        problems.append(f"prod records {deployed[:10]}, not the second commit {second_commit[:10]}")
    return not problems, "; ".join(problems)


def pipeline_change_in_flight(rehearsal: Rehearsal) -> tuple[bool, str]:
    """An execution waits at prod's approval; a push that changes the CodePipeline itself runs UpdatePipeline,
    which applies it: the waiting execution is Cancelled (AWS's status for an update in flight), the updating one
    stops itself, and the restart delivers the branch head, which holds both commits, to prod."""
    since = len(rehearsal.steps)
    rehearsal.pipeline.reviewer = holding_prod
    try:
        (waiting,) = push_all(
            rehearsal, rehearsal.commit("app: a release waiting when the pipeline changes", A_NEW_IMAGE)
        )
        rehearsal.pipeline.run_queue()
        held = waiting.awaiting_person == (PROD_STAGE, "Approve")
        rehearsal.pipeline.reviewer = lambda stage, text: True
        head = rehearsal.commit("cdktf.json: gamma bakes 20 minutes (changes the pipeline)", GAMMA_BAKES_LONGER)
        (changing,) = push_all(rehearsal, head)
        runs = rehearsal.pipeline.run_queue()
    finally:
        land_in_flight(rehearsal)
    restarts = [r for r in runs if r.trigger[0] == "StartPipelineExecution"]
    problems = [] if held else [f"expected {waiting.id[:8]} to wait at {PROD_STAGE}'s approval first"]
    if (waiting.status, changing.status) != ("Cancelled", "Stopped"):
        problems.append(
            f"expected the waiting execution Cancelled and the updating one Stopped; got {waiting.status}, {changing.status}"
        )
    if [(r.commit, r.status) for r in restarts] != [(head, "Succeeded")]:
        problems.append(
            f"expected one restart of the head {head[:10]} to succeed; got {[(r.commit[:10], r.status) for r in restarts]}"
        )
    problems += [f"failed: {line}" for line in failed_since(rehearsal, since)]
    deployed = prod_deployed_commit(rehearsal.world)
    if deployed != head:
        problems.append(f"prod records {deployed[:10]}, not the head {head[:10]}")
    if not problems:
        cancelled = [s for s in rehearsal.steps[since:] if s.result == "Cancelled"]
        print(f"{'':<9} {waiting.id[:8]} {cancelled[0].result.lower()} in {cancelled[0].stage}: {cancelled[0].detail}")
    return not problems, "; ".join(problems)


def failure_and_retry(rehearsal: Rehearsal) -> tuple[bool, str]:
    """Beta's post-deploy tests fail once, gamma's Apply fails once after applying; each retried."""
    (rehearsal.root / "faults" / "smoke-beta").write_text("fail once")
    (rehearsal.root / "faults" / "output-gamma.at-apply").write_text("fail once, after the apply")
    commit = rehearsal.commit("gitignore: another comment", DEPLOYS_NOTHING)
    if rehearsal.pipeline.push(commit) is None:
        return False, f"the push started no execution: {rehearsal.steps[-1].detail}"
    (execution,) = rehearsal.pipeline.run_queue()
    failed_actions: list[str] = []
    # "Retry failed actions", as an operator would, until it succeeds or a retry fails where it failed before.
    while execution.status == "Failed" and len(failed_actions) < 3:
        failed_actions.append(rehearsal.steps[-1].stage + "/" + rehearsal.steps[-1].action)
        rehearsal.pipeline.retry_failed(execution)
    expected = ["Beta/IntegrationTests", "Gamma/Apply"]
    if execution.status == "Succeeded" and failed_actions == expected:
        return True, ""
    failures = [s for s in rehearsal.steps if s.result == "Failed"]
    return False, (
        f"expected {expected} to fail once each and their retries to succeed; failed {failed_actions}, "
        f"ended {execution.status}: {failures[-1].detail if failures else ''}"
    )


# The gamma backend's deployment alarm (FargateService's `alarms`, ServiceAlarms.deployment_alarms).
GAMMA_DEPLOYMENT_ALARM = "canvalo-gamma-backend-5xx-rate"
# The image is built from app/ (pipelines/image_tag.sh): a comment there is a new image, a new task definition.
A_NEW_IMAGE = edit("app/__init__.py", 'service."""\n', 'service."""\n\n# A release.\n')


def bad_release(rehearsal: Rehearsal) -> tuple[bool, str]:
    """A commit that changes the backend image, whose new tasks answer 5xx in gamma: ECS rolls gamma's service
    back on its 5xx alarm, gamma's Apply fails naming the alarm, prod stays untouched, beta runs the release.
    Then the alarm recovers, the fault goes, and the head is delivered again, so later scenarios start from it."""
    before = prod_serials(rehearsal.world)
    fault = rehearsal.root / "faults" / "ecs-alarm-gamma"
    fault.write_text("the new release's tasks answer 5xx in gamma")
    try:
        commit = rehearsal.commit("app: a comment (a new image)", A_NEW_IMAGE)
        passed, detail, _ = single_execution(rehearsal, commit)
    except ScenarioError as failure:
        passed, detail = False, str(failure)
    finally:
        fault.unlink(missing_ok=True)
    touched = [stack for stack, serial in prod_serials(rehearsal.world).items() if serial != before.get(stack)]
    failed = [s for s in rehearsal.steps if s.result == "Failed"][-1:]
    where = f"{failed[0].stage}/{failed[0].action}" if failed else "nowhere"
    beta = runs_what_was_applied(rehearsal.world, "beta")
    problems = []
    if (
        passed
        or where != "Gamma/Apply"
        or GAMMA_DEPLOYMENT_ALARM not in detail
        or "previous task definition" not in detail
    ):
        problems.append(
            f"expected Gamma/Apply to fail naming {GAMMA_DEPLOYMENT_ALARM}; ended at {where}: {detail[:160]}"
        )
    if touched:
        problems.append(f"prod stacks changed: {touched}")
    if not beta:
        problems.append("beta does not run the release it applied")
    if not problems:
        print(f"{'':<9} stopped at {where}: {detail[:140]}")
    # Leave the world as an operator would: the alarm recovers (the errors stopped with the rollback), the head
    # goes out again, and gamma and prod end on it.
    rehearsal.world.client(ACCOUNTS["gamma"], "cloudwatch").set_alarm_state(
        AlarmName=GAMMA_DEPLOYMENT_ALARM, StateValue="OK", StateReason="the rolled-back release answers again"
    )
    _, undelivered = deliver(rehearsal, rehearsal.head(), 3)
    if undelivered:
        problems.append(f"the head was not delivered after the fault went: {undelivered[:160]}")
    return not problems, "; ".join(problems)


def runs_what_was_applied(world: World, stage: str) -> bool:
    outputs = {name: o["value"] for name, o in world.read_state(stage)["outputs"].items()}
    (service,) = world.client(ACCOUNTS[stage], "ecs").describe_services(
        cluster=outputs["backend_cluster_name"], services=[outputs["backend_service_name"]]
    )["services"]
    return bool(service["taskDefinition"] == outputs["backend_task_definition_arn"])


def prod_release(world: World) -> tuple[str, bytes]:
    """The task definition prod's ECS service runs and the index.html prod's frontend bucket serves."""
    account = ACCOUNTS["prod"]
    backend = world.read_state("prod")["outputs"]
    frontend = world.read_state("prod")["outputs"]
    cluster, service = backend["backend_cluster_name"]["value"], backend["backend_service_name"]["value"]
    running = world.client(account, "ecs").describe_services(cluster=cluster, services=[service])["services"]
    index = world.client(account, "s3").get_object(Bucket=frontend["frontend_bucket"]["value"], Key="index.html")
    return str(running[0]["taskDefinition"]) if running else "", index["Body"].read()


def task_definition_content(world: World, arn: str) -> list[object]:
    definition = world.client(ACCOUNTS["prod"], "ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
    return list(definition["containerDefinitions"])


def new_release(repository: Path) -> None:
    """A new image (its tag is app/'s content hash) and a new frontend index, both harmless."""
    with (repository / "app" / "main.py").open("a") as main_py:
        main_py.write("# rehearsal: a release whose smoke check fails in prod\n")
    edit(
        "frontend/index.html",
        "<title>Canvalo</title>",
        '<title>Canvalo</title>\n    <meta name="description" content="Canvalo" />',
    )(repository)


def smoke_failure_in_prod(rehearsal: Rehearsal) -> tuple[bool, str]:
    """Prod's own smoke check (in Prod/Apply) fails once after a release that changes the image and the frontend:
    the Apply puts the previous task definition and index back and fails, naming what it restored. Then the
    fault is gone and the head is delivered again (one more prod approval), so later scenarios start clean."""
    before_definition, before_index = prod_release(rehearsal.world)
    fault = rehearsal.root / "faults" / "pinned-smoke-prod"
    fault.write_text("fail once")
    try:
        commit = rehearsal.commit("app, frontend: a release that fails prod's smoke check", new_release)
        passed, detail, _ = single_execution(rehearsal, commit)
    except ScenarioError as failure:
        return False, str(failure)
    finally:
        fault.unlink(missing_ok=True)
    after_definition, after_index = prod_release(rehearsal.world)
    failed = [s for s in rehearsal.steps if s.result == "Failed"][-1:]
    where = f"{failed[0].stage}/{failed[0].action}" if failed else "nowhere"
    problems = []
    if passed or where != f"{PROD_STAGE}/Apply":
        problems.append(f"expected Prod/Apply to fail, ended at {where}")
    if task_definition_content(rehearsal.world, after_definition) != task_definition_content(
        rehearsal.world, before_definition
    ):
        problems.append(f"prod's service runs {after_definition}, not what it ran before ({before_definition})")
    if after_index != before_index:
        problems.append("prod's frontend serves the new index.html, not the previous one")
    if "restored the release that ran before" not in detail or "back to" not in detail:
        problems.append(f"the failure line names no restore: {detail[:200]}")
    if not problems:
        print(f"{'':<9} stopped at {where}: {detail[:200]}")
    # The operator's next step once the cause is fixed (here: the fault is gone): release the head again.
    _, undelivered = deliver(rehearsal, rehearsal.head(), 2)
    if undelivered:
        problems.append(f"the head was not delivered after the restore: {undelivered[:160]}")
    return not problems, "; ".join(problems)


def attack_scenario(message: str, change: Callable[[Path], None]) -> Callable[[Rehearsal], tuple[bool, str]]:
    return lambda rehearsal: attack(rehearsal, message, change)


def approved_by_someone_else(rehearsal: Rehearsal) -> tuple[bool, str]:
    """A commit whose prod approval an administrator (not one of prod's approver_roles) answers: prod's Apply
    must refuse it before touching prod. Passes when the execution fails at Prod/Apply for that reason."""
    before = prod_serials(rehearsal.world)
    approver = rehearsal.pipeline.approver
    rehearsal.pipeline.approver = f"arn:aws:sts::{ACCOUNTS['beta']}:assumed-role/{ADMINISTRATOR_ROLE}/someone"
    try:
        # A change to the image, so prod's plan changes and asks for an approval.
        commit = rehearsal.commit("app: approved by the wrong person", A_NEW_IMAGE)
        passed, detail, _ = single_execution(rehearsal, commit)
    except ScenarioError as failure:
        return False, str(failure)
    finally:
        rehearsal.pipeline.approver = approver
    touched = [stack for stack, serial in prod_serials(rehearsal.world).items() if serial != before.get(stack)]
    failed = [s for s in rehearsal.steps if s.result == "Failed"][-1:]
    where = f"{failed[0].stage}/{failed[0].action}" if failed else "nowhere"
    if passed or touched or where != f"{PROD_STAGE}/Apply" or "approver_roles" not in detail:
        return False, f"expected Prod/Apply to refuse the approval, prod untouched; ended at {where}: {detail[:160]}"
    print(f"{'':<9} stopped at {where}: {detail[:140]}")
    return True, ""


def prod_serials(world: World) -> dict[str, int]:
    return {stack: int(world.read_state(stack)["serial"]) for stack in world.states if stack == "prod"}


def take_attack_markers(world: World) -> list[str]:
    """What an attack's own code wrote with the credentials it ran with, in any account; removed once read."""
    found = []
    for stage, account in ACCOUNTS.items():
        ssm = world.client(account, "ssm")
        for parameter in ssm.describe_parameters().get("Parameters", []):
            if parameter["Name"].startswith("/attack/"):
                value = ssm.get_parameter(Name=parameter["Name"])["Parameter"]["Value"]
                found.append(f"{parameter['Name']} in {stage} (during {value})")
                ssm.delete_parameter(Name=parameter["Name"])
    return found


def attack(rehearsal: Rehearsal, message: str, change: Callable[[Path], None]) -> tuple[bool, str]:
    """One malicious commit, reviewed by a person who rejects any approval whose summary flags broadening.
    Passes when the execution stops (refused or rejected), prod's state is untouched and none of the
    commit's own code ran with apply rights; the commit is reverted afterwards either way. Outside prod a
    person is asked only when Review found the plan broadening, so such a question is itself rejected."""
    before = prod_serials(rehearsal.world)
    rehearsal.pipeline.reviewer = lambda stage, text: stage == PROD_STAGE and "BROADENING" not in text
    try:
        commit = rehearsal.commit(f"attack: {message}", change)
        passed, _, runs = single_execution(rehearsal, commit)
    except ScenarioError as failure:
        return False, str(failure)
    finally:
        rehearsal.pipeline.reviewer = lambda stage, text: True
    stopped = [s for s in rehearsal.steps if s.execution == runs[-1].id[:8] and s.result == "Failed"]
    markers = take_attack_markers(rehearsal.world)
    touched = [stack for stack, serial in prod_serials(rehearsal.world).items() if serial != before.get(stack)]
    rehearsal.git(rehearsal.github, "revert", "--no-edit", "HEAD")
    if markers:
        return False, f"the commit's own code {OWN_CODE_RUNS}: {', '.join(markers)}"
    if passed or touched:
        return False, f"the attack was deployed: prod stacks changed {touched or 'nothing, yet the run succeeded'}"
    where = f"{stopped[-1].stage}/{stopped[-1].action}: {stopped[-1].detail[:140]}" if stopped else "nowhere"
    print(f"{'':<9} stopped at {where}")
    return True, ""


def status(rehearsal: Rehearsal) -> tuple[bool, str]:
    """The administrator's `make status` once the branch head is deployed everywhere: each stage's row shows
    that commit and, by its digest, the image its content makes. moto does not evaluate trust policies, so the chain the
    command assumes (operator -> pipeline plan role -> each stage's canvalo-plan) is checked here, as applied."""
    head = rehearsal.head()
    _, detail = deliver(rehearsal, head, 3)
    if detail:
        return False, f"the branch head did not reach prod: {detail}"
    tag = subprocess.run(
        ["bash", "pipelines/image_tag.sh"], cwd=rehearsal.github, capture_output=True, text=True, check=True
    ).stdout.strip()
    # The stages run the image by the digest ECR gave that tag (Build exported it), never by the tag.
    ecr = rehearsal.world.client(ACCOUNTS["beta"], "ecr")
    pushed = ecr.describe_images(repositoryName="canvalo-backend", imageIds=[{"imageTag": tag}])["imageDetails"]
    image = f"{ACCOUNTS['beta']}.dkr.ecr.{REGION}.amazonaws.com/canvalo-backend@{pushed[0]['imageDigest']}"
    plan_role = f"arn:aws:iam::{ACCOUNTS['beta']}:role/canvalo/canvalo-beta-pipeline-plan"
    chain = [(ACCOUNTS["beta"], plan_role, f"arn:aws:iam::{ACCOUNTS['beta']}:role/{ADMINISTRATOR_ROLE}")]
    chain += [
        (ACCOUNTS[s], f"arn:aws:iam::{ACCOUNTS[s]}:role/canvalo/canvalo-plan", plan_role) for s in ("gamma", "prod")
    ]
    for account, role_arn, caller in chain:
        role = rehearsal.world.client(account, "iam").get_role(RoleName=role_arn.rsplit("/", 1)[-1])["Role"]
        trust = role["AssumeRolePolicyDocument"]
        if not trust_allows(json.loads(trust) if isinstance(trust, str) else trust, caller, "canvalo-status"):
            return False, f"{role_arn}'s trust policy, as applied, does not let {caller} assume it"
    table = rehearsal.root / "status.json"
    code, detail = rehearsal.administrator(
        "beta",
        "make status",
        f"make status STATUS_ARGS=--json > {table} && make status",
        {**settings(), "AWS_ENDPOINT_URL_CODEPIPELINE": rehearsal.services.url},
    )
    for line in rehearsal.admin_output.splitlines():
        print(f"{'':<9} {line}")
    if code:
        return False, f"make status: {detail}"
    try:
        rows = {row["stage"]: row for row in json.loads(table.read_text())["stages"]}
    except (ValueError, KeyError, TypeError) as error:
        return False, f"make status STATUS_ARGS=--json printed no status JSON: {error}"
    wrong = [
        f"{stage}: {row.get('commit')} {row.get('image')}"
        for stage, row in rows.items()
        if (row.get("commit"), row.get("image")) != (head, image)
    ]
    if list(rows) != list(ACCOUNTS) or wrong:
        return False, f"expected every stage at {head[:10]} with {image}; got {wrong or list(rows)}"
    return True, ""


# What runs after the first deploy, in order; each starts from the state the one before left.
LATER_SCENARIOS: dict[str, Callable[[Rehearsal], tuple[bool, str]]] = {
    "docs-only commit": docs_only_commit,
    "closed window": closed_window,
    "output change": output_change,
    "pipeline change": pipeline_change,
    "two pushes seconds apart": two_pushes_seconds_apart,
    "push while prod waits for approval": push_while_prod_waits,
    "pipeline change in flight": pipeline_change_in_flight,
    "failure and retry": failure_and_retry,
    "bad release": bad_release,
    "smoke failure in prod": smoke_failure_in_prod,
    **{name: attack_scenario(message, change) for name, (message, change) in ATTACKS.items()},
    OTHER_APPROVER: approved_by_someone_else,
    "status": status,
}
SCENARIOS = ("first deploy", *LATER_SCENARIOS)
# The scenarios `make rehearse` runs at once, each group from its own first deploy; split so that the two take
# about as long (docs/benchmarks.md). A scenario starts from what the one before it in its group left, so the
# pipeline scenarios and the executions in flight stay together; each group keeps LATER_SCENARIOS' order.
FIRST_GROUP = (
    "docs-only commit",
    "output change",
    "pipeline change",
    "two pushes seconds apart",
    "push while prod waits for approval",
    "pipeline change in flight",
)
GROUPS = (FIRST_GROUP, tuple(name for name in LATER_SCENARIOS if name not in FIRST_GROUP))
NAME_WIDTH = max(map(len, SCENARIOS)) + len(" (group 1)")


if __name__ == "__main__":
    sys.exit(main())
