"""What the pipeline's actions know of the configuration: computed here, at synth, from the loaded project.

The pipeline stack puts these variables into the environment of each CodeBuild project whose scripts need
them (stacks/pipeline.py): the scripts under pipelines/ read only their environment (pipelines/run_env.py),
never cdktf.json. So no stage data is part of the pinned toolkit: editing a stage's sizes, bake or window
changes no project, and editing what is here (an account, a region, the app name, all of which the
pipeline's IAM policies name too) changes the projects' environment, never the toolkit's hash. The
variables' names come from names.py, which both sides import.
"""

from __future__ import annotations

from collections.abc import Iterable

from names import APP_NAME_VARIABLE, ARTIFACT_BUCKET_VARIABLE, OWN_ROLE, PIPELINE_REGION_VARIABLE, stage_variable
from stacks.config import ProjectConfig, StageConfig


def stage_run_values(project: ProjectConfig, stage: StageConfig) -> dict[str, str]:
    """One stage's values by `what`: exactly names.STAGE_RUN_VALUES (tests/infra/test_run_environment.py)."""
    return {
        "region": stage.region,
        # Beta is worked in as the action's own role (R4.8); gamma and prod through their roles (R4.6).
        "plan_role_arn": project.plan_role_arn(stage) or OWN_ROLE,
        "deploy_role_arn": project.deploy_role_arn(stage) or OWN_ROLE,
        "alarm_prefix": stage.resource_name(project.app_name, ""),
    }


def run_environment(project: ProjectConfig, stages: Iterable[StageConfig]) -> dict[str, str]:
    """The variables an action that works in `stages` reads: the project's, then each stage's."""
    environment = {
        APP_NAME_VARIABLE: project.app_name,
        PIPELINE_REGION_VARIABLE: project.pipeline_stage.region,
        ARTIFACT_BUCKET_VARIABLE: project.artifact_bucket,
    }
    for stage in stages:
        for what, value in stage_run_values(project, stage).items():
            environment[stage_variable(stage.name, what)] = value
    return environment
