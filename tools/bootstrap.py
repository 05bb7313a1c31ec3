"""`make bootstrap STAGE=<stage>`: apply bootstrap-<stage> with an administrator's credentials, move its state
into the bucket it creates, and prove that the bucket holds it.

    python -m tools.bootstrap --stage gamma [--yes]

A stage's state bucket cannot keep the state of the stack that creates it until that stack has been
applied, so the first run:
1. synthesizes bootstrap-<stage> with local state (`terraform.bootstrap-<stage>.tfstate` in the project),
   plans it, shows the plan and applies it once a person answers `yes` (or `--yes`);
2. synthesizes it again with the S3 backend it just created and runs `terraform init -migrate-state`;
3. plans again: "no changes" proves the bucket holds the whole state, and the local file is renamed
   `*.migrated` (keep it until you trust the bucket). Anything else stops with what to look at.
Once the state is in the bucket (a later run, after BOOTSTRAP_VERSION was bumped), it plans and applies
there directly. Credentials of another account stop it before anything is planned. At the end it prints
what a person still does before the pipeline deploys the stage: set the secret, delegate prod's domain.

It loads the configuration (cdktf.json and `CANVALO_*`) itself, unlike the pipeline's scripts, which read only
what the pipeline stack synthesized into their environment: it runs on an administrator's laptop, from their
own checkout, and synthesizes the bootstrap stack from it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.errors import CommandError
from pipelines.terraform_stage import Terraform
from stacks.config import ConfigError, ProjectConfig, load_from_environment

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXIT_BAD_INPUT = 2
PLAN_FILE = "tfplan.bootstrap"


class BootstrapError(CommandError):
    """The bootstrap cannot go on; nothing after the failed step ran."""


@dataclass(frozen=True)
class Target:
    stage: str
    account_id: str
    region: str
    state_bucket: str
    # The project whose cdktf.out/ is synthesized and which keeps the local state before the migration.
    root: Path = PROJECT_ROOT

    @property
    def stack(self) -> str:
        return f"bootstrap-{self.stage}"

    @property
    def state_key(self) -> str:
        return f"{self.stack}/terraform.tfstate"

    @property
    def local_state(self) -> Path:
        return self.root / f"terraform.{self.stack}.tfstate"

    @property
    def directory(self) -> Path:
        return self.root / "cdktf.out" / "stacks" / self.stack


def target_of(project: ProjectConfig, stage_name: str) -> Target:
    stage = project.stage(stage_name)
    return Target(stage.name, stage.account_id, stage.region, project.state_bucket(stage))


def synthesize(bootstrap_state: str, environ: Mapping[str, str]) -> None:
    """`make synth` with the bootstrap stacks' state where this step needs it (local, then s3)."""
    completed = subprocess.run(
        [sys.executable, "-O", "main.py"],
        cwd=PROJECT_ROOT,
        env={**environ, "CANVALO_BOOTSTRAP_STATE": bootstrap_state},
        stdout=subprocess.DEVNULL,
        check=False,
    )
    if completed.returncode:
        raise BootstrapError("the synth failed (see above): fix the configuration and run make bootstrap again")


def check_account(target: Target, session: boto3.session.Session) -> None:
    try:
        account = session.client("sts").get_caller_identity()["Account"]
    except (BotoCoreError, ClientError) as error:
        raise BootstrapError(
            f"no usable AWS credentials ({error}): sign in as an administrator of {target.account_id}"
        ) from None
    if account != target.account_id:
        raise BootstrapError(
            f"these credentials are for account {account}, but {target.stack} belongs to {target.account_id}: "
            f"sign in as an administrator of {target.account_id} (or fix CANVALO_{target.stage.upper()}_ACCOUNT_ID)"
        )


def state_in_bucket(target: Target, session: boto3.session.Session) -> bool:
    """Whether an earlier run already moved the stack's state into its bucket."""
    s3 = session.client("s3", region_name=target.region)
    try:
        s3.head_object(Bucket=target.state_bucket, Key=target.state_key)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NoSuchBucket"):
            return False
        raise BootstrapError(f"cannot read s3://{target.state_bucket}/{target.state_key}: {error}") from None
    return True


def confirmed(target: Target, ask: Callable[[str], str]) -> bool:
    try:
        answer = ask(f"Apply this plan to {target.stack} in account {target.account_id}? Only 'yes' applies: ")
    except EOFError:
        return False
    return answer.strip() == "yes"


def plan_and_apply(terraform: Terraform, directory: Path, target: Target, ask: Callable[[str], str]) -> None:
    plan_file = (directory / PLAN_FILE).resolve()
    if not terraform.plan(directory, plan_file):
        print(f"{target.stack}: no changes")
        return
    if not confirmed(target, ask):
        raise BootstrapError(f"{target.stack}: not applied (no 'yes'): nothing changed; run make bootstrap again")
    terraform.apply(directory, plan_file)


def verify_in_bucket(terraform: Terraform, directory: Path, target: Target) -> None:
    if terraform.plan(directory, (directory / PLAN_FILE).resolve()):
        raise BootstrapError(
            f"{target.stack}: the plan against s3://{target.state_bucket}/{target.state_key} is not empty after the "
            f"migration: read it (terraform plan in {directory}) before anything else; "
            f"the local state is still at {target.local_state.name}"
        )


def bootstrap(
    target: Target,
    *,
    terraform: Terraform,
    session: boto3.session.Session,
    environ: Mapping[str, str],
    ask: Callable[[str], str],
    synth: Callable[[str, Mapping[str, str]], None] = synthesize,
) -> None:
    check_account(target, session)
    directory = target.directory
    if state_in_bucket(target, session):
        print(f"{target.stack}: its state is in s3://{target.state_bucket}: planning there")
        synth("s3", environ)
        terraform.init(directory)
        plan_and_apply(terraform, directory, target, ask)
        return
    print(f"{target.stack}: first apply, with local state ({target.local_state.name})")
    synth("local", environ)
    terraform.init(directory)
    plan_and_apply(terraform, directory, target, ask)
    print(f"{target.stack}: moving the state into s3://{target.state_bucket}/{target.state_key}")
    synth("s3", environ)
    terraform.init(directory, migrate_state=True)
    verify_in_bucket(terraform, directory, target)
    target.local_state.rename(target.local_state.with_name(target.local_state.name + ".migrated"))
    print(
        f"{target.stack}: the bucket holds the state (no changes); the local copy is now {target.local_state.name}.migrated"
    )


def next_steps(target: Target, project: ProjectConfig) -> list[str]:
    stage = project.stage(target.stage)
    directory = f"cdktf.out/stacks/{target.stack}"
    steps = [
        f"set the secret before the pipeline deploys {target.stage}: aws secretsmanager put-secret-value "
        f"--secret-id {project.backend_secret_name(stage)} --secret-string file://secret.json (README: Secrets)"
    ]
    if stage.domain_name:
        steps.append(
            f"delegate {stage.domain_name} to the name servers of `terraform -chdir={directory} output name_servers`"
        )
    return steps


def main(
    argv: Sequence[str] | None = None,
    *,
    terraform: Terraform | None = None,
    session: boto3.session.Session | None = None,
    environ: Mapping[str, str] = os.environ,
    ask: Callable[[str], str] = input,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bootstrap", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, help="beta, gamma or prod")
    parser.add_argument("--yes", action="store_true", help="apply the plan without asking (it is still printed)")
    args = parser.parse_args(argv)
    try:
        project = load_from_environment(environ, PROJECT_ROOT)
        target = target_of(project, args.stage)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        bootstrap(
            target,
            terraform=terraform or Terraform(),
            session=session or boto3.session.Session(region_name=target.region),
            environ=environ,
            ask=(lambda _: "yes") if args.yes else ask,
        )
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    for step in next_steps(target, project):
        print(f"next: {step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
