"""Select the role an action works in a stage with: the stage's read-only plan role, or its deploy role (R4.6).

    eval "$(python -m pipelines.stage_credentials --stage gamma --role plan)"
    python -m pipelines.terraform_stage plan ...   # Terraform and boto3 now read gamma as `canvalo-plan`

Plan and the drift check use `--role plan`; Apply uses `--role deploy`. Terraform runs as these credentials,
not as a role the stack's JSON names (`policy_check.pipeline_credentials` removes that before init). For a
cross-account stage this writes an AWS config profile that assumes the stage's role from the build's own
credentials (CodeBuild's container credentials, or `--source-profile` on a laptop) and prints the `export`
lines selecting it. Beta is worked in with the pipeline account's own credentials (R4.8): the action's
CodeBuild role is already the plan or the deploy role, and this prints nothing. No credential is written
or printed: the profile names a role, and boto3 assumes it when a script runs.
"""

from __future__ import annotations

import argparse
import configparser
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from stacks.config import ConfigError, ProjectConfig, load_from_environment

PROJECT_ROOT = Path(__file__).resolve().parent.parent


ROLES = ("plan", "deploy")


def profile_name(project: ProjectConfig, stage_name: str, role: str = "deploy") -> str:
    return project.stage(stage_name).resource_name(project.app_name, role)


def write_profile(
    project: ProjectConfig, stage_name: str, config_file: Path, source_profile: str | None, role: str = "deploy"
) -> dict[str, str]:
    """Write the stage's profile into `config_file`; the variables that select it, or {} for none."""
    role_arn = role_arn_of(project, stage_name, role)
    if role_arn is None:
        return {}
    name = profile_name(project, stage_name, role)
    config = configparser.ConfigParser()
    config.read(config_file)
    section = {
        "role_arn": role_arn,
        "role_session_name": f"{name}-pipeline",
        "region": project.stage(stage_name).region,
    }
    if source_profile:
        section["source_profile"] = source_profile
    else:
        section["credential_source"] = "EcsContainer"
    config[f"profile {name}"] = section
    config_file.parent.mkdir(parents=True, exist_ok=True)
    with config_file.open("w") as file:
        config.write(file)
    return {"AWS_CONFIG_FILE": str(config_file.resolve()), "AWS_PROFILE": name}


def role_arn_of(project: ProjectConfig, stage_name: str, role: str) -> str | None:
    """The stage's plan or deploy role; None for beta, worked in with the action's own role (R4.8)."""
    stage = project.stage(stage_name)
    return project.plan_role_arn(stage) if role == "plan" else project.deploy_role_arn(stage)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stage_credentials", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--config-file", type=Path, default=Path(".aws/stage-config"))
    parser.add_argument("--source-profile", help="assume the role from this profile instead of CodeBuild's credentials")
    parser.add_argument(
        "--role", choices=ROLES, default="deploy", help="the stage's read-only plan role or its deploy role"
    )
    parser.add_argument("--arn", action="store_true", help="print the role's ARN (nothing for beta), write no profile")
    args = parser.parse_args(argv)
    try:
        project = load_from_environment(environ, PROJECT_ROOT)
        if args.arn:
            print(role_arn_of(project, args.stage, args.role) or "")
            return 0
        variables = write_profile(project, args.stage, args.config_file, args.source_profile, args.role)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write("".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
