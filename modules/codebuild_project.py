"""A CodeBuild project that runs one buildspec from the repository, with its own log group."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cdktn_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktn_provider_aws.cloudwatch_event_target import CloudwatchEventTarget
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.codebuild_project import (
    CodebuildProject,
    CodebuildProjectArtifacts,
    CodebuildProjectCache,
    CodebuildProjectEnvironment,
    CodebuildProjectEnvironmentEnvironmentVariable,
    CodebuildProjectLogsConfig,
    CodebuildProjectLogsConfigCloudwatchLogs,
    CodebuildProjectLogsConfigS3Logs,
    CodebuildProjectSource,
    CodebuildProjectSourceAuth,
)
from constructs import Construct

from modules.logs import LOG_RETENTION_DAYS

# Amazon Linux 2023 standard image: Python 3.11+, Node, Docker; the buildspecs install pinned tools.
BUILD_IMAGE = "aws/codebuild/amazonlinux-x86_64-standard:5.0"
# Debian 12 with Python 3.11, the OS the project's CI runs on: `.ci/run` installs Debian's Chromium there
# for the browser tests, which Amazon Linux does not package.
DEBIAN_TEST_IMAGE = "public.ecr.aws/docker/library/python:3.11-bookworm"


def terraform_literal(text: str) -> str:
    """`text` as a Terraform string that means exactly it: Terraform reads `${` and `%{` in any string as an
    interpolation or a template directive (an inline buildspec's `${STAGE^}` would be an invalid expression),
    and `$${`, `%%{` as the literal characters."""
    return text.replace("${", "$${").replace("%{", "%%{")


@dataclass(frozen=True, kw_only=True)
class GitHubSource:
    """A project that runs outside the pipeline clones the repository through the CodeStar connection."""

    repository: str
    branch: str
    connection_arn: str


class CodeBuildProject(Construct):
    """Runs `buildspec` (a path in the source, or an inline YAML document, passed to Terraform literally); by
    default its source and artifacts come from CodePipeline.

    `privileged` gives the build a Docker daemon; only image builds need it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        description: str,
        buildspec: str,
        service_role_arn: str,
        kms_key_arn: str,
        log_group_name: str,
        log_retention_days: int = LOG_RETENTION_DAYS,
        environment: Mapping[str, str] | None = None,
        privileged: bool = False,
        compute_type: str = "BUILD_GENERAL1_SMALL",
        timeout_minutes: int = 60,
        github_source: GitHubSource | None = None,
        image: str = BUILD_IMAGE,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = CloudwatchLogGroup(self, "logs", name=log_group_name, retention_in_days=log_retention_days)
        if github_source:
            source = CodebuildProjectSource(
                type="GITHUB",
                location=f"https://github.com/{github_source.repository}.git",
                buildspec=terraform_literal(buildspec),
                git_clone_depth=1,
                auth=CodebuildProjectSourceAuth(type="CODECONNECTIONS", resource=github_source.connection_arn),
            )
            artifacts = CodebuildProjectArtifacts(type="NO_ARTIFACTS")
        else:
            source = CodebuildProjectSource(type="CODEPIPELINE", buildspec=terraform_literal(buildspec))
            artifacts = CodebuildProjectArtifacts(type="CODEPIPELINE")
        self.project = CodebuildProject(
            self,
            "project",
            name=name,
            description=description,
            service_role=service_role_arn,
            encryption_key=kms_key_arn,
            build_timeout=timeout_minutes,
            source=source,
            source_version=github_source.branch if github_source else None,
            artifacts=artifacts,
            environment=CodebuildProjectEnvironment(
                compute_type=compute_type,
                image=image,
                type="LINUX_CONTAINER",
                image_pull_credentials_type="CODEBUILD",
                privileged_mode=privileged,
                environment_variable=[
                    CodebuildProjectEnvironmentEnvironmentVariable(name=key, value=value, type="PLAINTEXT")
                    for key, value in sorted((environment or {}).items())
                ]
                or None,
            ),
            # The build host keeps the buildspec's `cache` paths (uv, npm, Terraform providers) and, for image
            # builds, Docker's layers between builds: a cache, not an input, so a cold host only costs time.
            cache=CodebuildProjectCache(
                type="LOCAL",
                modes=["LOCAL_CUSTOM_CACHE", *(["LOCAL_DOCKER_LAYER_CACHE"] if privileged else [])],
            ),
            logs_config=CodebuildProjectLogsConfig(
                cloudwatch_logs=CodebuildProjectLogsConfigCloudwatchLogs(
                    status="ENABLED", group_name=self.log_group.name
                ),
                s3_logs=CodebuildProjectLogsConfigS3Logs(status="DISABLED"),
            ),
        )


class ScheduledBuild(Construct):
    """Starts a CodeBuild project on a schedule through an EventBridge rule and a role allowed only that."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        description: str,
        schedule_expression: str,
        project_arn: str,
        role_arn: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rule = CloudwatchEventRule(
            self, "rule", name=name, description=description, schedule_expression=schedule_expression
        )
        CloudwatchEventTarget(self, "target", rule=self.rule.name, arn=project_arn, role_arn=role_arn)
