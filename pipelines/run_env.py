"""What a pipeline action knows of the configuration: only its environment, which the pipeline stack wrote.

The scripts here never read cdktf.json or `CANVALO_*`: stage data is read once, at synth, and the pipeline
stack hands each CodeBuild project the values its actions need (stacks/run_environment.py; the variables'
names are names.py's). A variable that is missing means the project was deployed by a pipeline stack that
did not synthesize it: one line names it and the fix, an administrator's `cdktn deploy pipeline`.

On a laptop (breaking glass, docs/security.md), `eval "$(python -m tools.run_env)"` sets the same variables
from that checkout's configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from names import (
    APP_NAME_VARIABLE,
    ARTIFACT_BUCKET_VARIABLE,
    OWN_ROLE,
    PIPELINE_REGION_VARIABLE,
    STAGE_NAMES,
    stage_variable,
)
from pipelines.errors import CommandError

EXIT_BAD_INPUT = 2


class RunEnvironmentError(CommandError):
    """A variable the pipeline stack synthesizes is missing, or the stage is unknown."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_status=EXIT_BAD_INPUT)


def required(environ: Mapping[str, str], variable: str) -> str:
    value = environ.get(variable, "")
    if not value:
        raise RunEnvironmentError(
            f"{variable} is not set: the pipeline stack synthesizes it into this action's CodeBuild project; an "
            'administrator redeploys it (cdktn deploy pipeline), or on a laptop: eval "$(python -m tools.run_env)"'
        )
    return value


@dataclass(frozen=True, kw_only=True)
class StageRun:
    """One stage as an action works in it."""

    name: str
    app_name: str
    region: str
    # None: the action's own role works in the stage (beta, R4.8).
    plan_role_arn: str | None
    deploy_role_arn: str | None
    # `<app>-<stage>-`: what the stage's resource names, its alarms' among them, start with.
    alarm_prefix: str

    def role_arn(self, role: str) -> str | None:
        return self.plan_role_arn if role == "plan" else self.deploy_role_arn

    def resource_name(self, suffix: str) -> str:
        return f"{self.alarm_prefix}{suffix}"


def app_name(environ: Mapping[str, str]) -> str:
    return required(environ, APP_NAME_VARIABLE)


def pipeline_region(environ: Mapping[str, str]) -> str:
    """The pipeline account's region, where the release records and drift digests live."""
    return required(environ, PIPELINE_REGION_VARIABLE)


def artifact_bucket(environ: Mapping[str, str]) -> str:
    """The pipeline's artifact bucket, in the pipeline account: plan summaries and the stacks each stage applied."""
    return required(environ, ARTIFACT_BUCKET_VARIABLE)


def stage_run(environ: Mapping[str, str], stage: str) -> StageRun:
    if stage not in STAGE_NAMES:
        raise RunEnvironmentError(f"unknown stage {stage!r}: the stages are {', '.join(STAGE_NAMES)}")

    def role(what: str) -> str | None:
        value = required(environ, stage_variable(stage, what))
        return None if value == OWN_ROLE else value

    return StageRun(
        name=stage,
        app_name=app_name(environ),
        region=required(environ, stage_variable(stage, "region")),
        plan_role_arn=role("plan_role_arn"),
        deploy_role_arn=role("deploy_role_arn"),
        alarm_prefix=required(environ, stage_variable(stage, "alarm_prefix")),
    )
