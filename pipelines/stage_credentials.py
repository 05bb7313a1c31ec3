"""Give boto3 scripts the credentials Terraform uses for a stage: its deploy role in gamma and prod (R4.6).

    eval "$(python -m pipelines.stage_credentials --stage gamma --config-file .aws/stage-config)"
    python -m pipelines.deploy_frontend ...      # now in the gamma account, as the gamma deploy role

Terraform's provider assumes a cross-account stage's deploy role by itself; `deploy_frontend` talks to
the same account's bucket and distribution with plain boto3. For such a stage this writes an AWS config
profile that assumes that role from the build's own credentials (CodeBuild's container credentials, or
`--source-profile` on a laptop) and prints the `export` lines selecting it. For a stage deployed with
the pipeline account's own credentials (beta, R4.8) it prints nothing. No credential is written or
printed: the profile names a role, and boto3 assumes it when a script runs.
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


def profile_name(project: ProjectConfig, stage_name: str) -> str:
    return project.stage(stage_name).resource_name(project.app_name, "deploy")


def write_profile(
    project: ProjectConfig, stage_name: str, config_file: Path, source_profile: str | None
) -> dict[str, str]:
    """Write the stage's profile into `config_file`; the variables that select it, or {} for none."""
    role_arn = project.deploy_role_arn(project.stage(stage_name))
    if role_arn is None:
        return {}
    name = profile_name(project, stage_name)
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


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stage_credentials", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--config-file", type=Path, default=Path(".aws/stage-config"))
    parser.add_argument("--source-profile", help="assume the role from this profile instead of CodeBuild's credentials")
    args = parser.parse_args(argv)
    try:
        variables = write_profile(
            load_from_environment(environ, PROJECT_ROOT), args.stage, args.config_file, args.source_profile
        )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write("".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
