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

The roles and the region come from the action's environment (`<STAGE>_PLAN_ROLE_ARN`, `<STAGE>_DEPLOY_ROLE_ARN`,
`<STAGE>_REGION`, `APP_NAME`), which the pipeline stack synthesizes (pipelines/run_env.py).
"""

from __future__ import annotations

import argparse
import configparser
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipelines.run_env import RunEnvironmentError, StageRun, stage_run

ROLES = ("plan", "deploy")


def write_profile(
    stage: StageRun, config_file: Path, source_profile: str | None, role: str = "deploy"
) -> dict[str, str]:
    """Write the stage's profile into `config_file`; the variables that select it, or {} for none."""
    role_arn = stage.role_arn(role)
    if role_arn is None:
        return {}
    name = stage.resource_name(role)
    config = configparser.ConfigParser()
    config.read(config_file)
    section = {
        "role_arn": role_arn,
        "role_session_name": f"{name}-pipeline",
        "region": stage.region,
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
        stage = stage_run(environ, args.stage)
        if args.arn:
            # Nothing for beta: the action's own role (R4.8).
            print(stage.role_arn(args.role) or "")
            return 0
        variables = write_profile(stage, args.config_file, args.source_profile, args.role)
    except RunEnvironmentError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    sys.stdout.write("".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
