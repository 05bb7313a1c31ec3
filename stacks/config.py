"""Project and stage configuration: every difference between beta, gamma and prod is data here.

Values come from three layers, later ones winning: the defaults in this file, the `context` of
`cdktf.json`, then environment variables (`CANVALO_<SETTING>` for project-wide settings,
`CANVALO_<STAGE>_<FIELD>` for a stage's field). Everything is validated once, at load time, and a bad
value raises `ConfigError` whose message is one line naming the setting, the value and the fix.
"""

from __future__ import annotations

import ipaddress
import json
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from names import STAGE_NAMES

# The pipeline lives in this stage's account and deploys it with its own rights (R4.7, R4.8).
PIPELINE_STAGE = STAGE_NAMES[0]
# Availability zones every stage's network spans (R2.5): modules/network.py's default; a test holds them equal.
NETWORK_ZONES = 2

# Fargate accepts only these memory sizes (MiB) for each cpu size (units of 1/1024 vCPU).
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size
FARGATE_MEMORY_BY_CPU: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}

ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
# git check-ref-format, for the characters a branch name may hold in practice.
BRANCH = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)(?!.*\.lock$)[A-Za-z0-9._/-]+(?<![/.])$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
IMAGE_TAG = re.compile(r"^(sha256:[a-f0-9]{64}|[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")
IMAGE_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
CONNECTION_ARN = re.compile(r"^arn:aws:(codestar-connections|codeconnections):[a-z0-9-]+:\d{12}:connection/[\w-]+$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# CodePipeline's DeploymentWindow cron: seconds (only `*`), minutes, hours, day-of-month, month, day-of-week,
# optional year; exactly one of the two day fields is `?`. The characters each field allows, as AWS lists them.
WINDOW_CRON_FIELDS = (r"\*", r"[0-9,*/-]+", r"[0-9,*/-]+", r"[0-9,*?/LW-]+", r"[0-9A-Z,*/-]+", r"[0-9A-Z,*?/L#-]+")
WINDOW_CRON_YEAR = r"[0-9,*/-]+"
# A bake longer than this would hold a CodeBuild build (the plan project's, stacks/pipeline.py) for hours.
MAX_BAKE_MINUTES = 120
# An IAM role name (characters IAM allows) with ArnLike-style wildcards.
APPROVER_ROLE = re.compile(r"^[\w+=,.@*?-]{1,64}$")
# An IAM ARN as a break-glass principal pattern: its account part and its resource part (role/<path><name>).
IAM_ARN = re.compile(r"^arn:aws:iam::(?P<account>[^:]*):(?P<resource>.*)$")
# The prefix of every resource name: what S3 buckets, load balancers and IAM names all accept.
APP_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
# AWS holds load balancer, target group and CodeStar connection names to 32 characters (ProjectConfig.short_names).
SHORT_NAME_LIMIT = 32
# What the pipeline runs against a stage once it is deployed: integration tests or smoke tests (R10.5-R10.7).
POST_DEPLOY_TESTS = ("integration", "smoke")
# CloudFront price classes: North America and Europe; plus most of Asia, the Middle East and Africa; every edge.
CDN_PRICE_CLASSES = ("PriceClass_100", "PriceClass_200", "PriceClass_All")

# Obviously fake ids so that a fresh clone synthesizes; `require_real_accounts` refuses them for a deploy.
FAKE_ACCOUNT_IDS = frozenset({"111111111111", "222222222222", "333333333333"})


class ConfigError(ValueError):
    """A configuration value is wrong; the message is one line that says what and how to fix it."""


def break_glass_problem(pattern: str, account_id: str) -> str | None:
    """What is wrong with a break-glass principal pattern for a stage in `account_id`, or None."""
    own_role = f"arn:aws:iam::{account_id}:role/<path/name>"
    match = IAM_ARN.match(pattern)
    if match is None:
        return f"expected an IAM role ARN pattern {own_role}"
    account, resource = match["account"], match["resource"]
    if "*" in account or "?" in account:
        return f"no wildcard in the account part: name this stage's own account, {own_role}"
    if account != account_id:
        return f"a role in another account cannot break glass here: use {own_role}"
    if resource.startswith("user/"):
        return f"IAM users are refused, people should use roles (an SSO permission set or an admin role): {own_role}"
    name = resource.removeprefix("role/")
    if not resource.startswith("role/") or not name:
        return f"expected an IAM role ARN pattern {own_role}"
    if not name.strip("*?/"):
        return "that matches every role in the account, automation included: name the administrators' roles"
    return None


def stage_env_var(stage: str, field_name: str) -> str:
    return f"CANVALO_{stage.upper()}_{field_name.upper()}"


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """One deployment stage (an AWS account): its place, its sizes and its safety switches.

    Its fields are what really differs between beta, gamma and prod, each set in one place
    (docs/configuration.md). What never differs is a default of the construct that uses it (modules/:
    the network's zones, auto scaling's CPU target, log retention, the shutdown timings); what follows from
    other data is derived below (`https`, `private_load_balancer`, `cross_account_deploy`,
    `approval_before_apply`), never set.
    """

    name: str
    account_id: str
    region: str
    vpc_cidr: str
    # One NAT gateway per availability zone at most; the network spans NETWORK_ZONES zones.
    nat_gateways: int
    # Fargate task size: cpu in units of 1/1024 vCPU, memory in MiB (R7.1-R7.3).
    cpu: int
    memory: int
    min_tasks: int
    max_tasks: int
    # The stage's public name: HTTPS on the ALB with an ACM certificate and Route53 names under it
    # (R8.3, R8.5, R8.7). None: CloudFront's own name, and the API behind it (see `https` below).
    domain_name: str | None = None
    # Deletion protection and `prevent_destroy` on stateful resources (R7.6).
    deletion_protection: bool
    # Which CloudFront edge locations serve the frontend: one of CDN_PRICE_CLASSES, cheapest first.
    cdn_price_class: str = "PriceClass_100"
    # The suite the pipeline runs against the stage after deploying it: one of POST_DEPLOY_TESTS.
    post_deploy_tests: str = "smoke"
    # A CloudWatch dashboard of the API's traffic, latency, errors and capacity (R11.5).
    dashboard: bool = False
    # Days a deleted backend secret can still be restored; 0 deletes at once so a torn-down stage can
    # be recreated with the same secret name.
    secret_recovery_window_days: int = 7
    # IAM role ARN patterns (ArnLike wildcards) in this stage's own account whose sessions may assume its
    # deploy role, besides the pipeline: administrators planning, applying or unlocking from a laptop.
    break_glass_principals: tuple[str, ...] = ()
    # Names (`*` and `?` allowed) of IAM roles in the pipeline's account whose sessions may answer this
    # stage's approval (every stage has one; pipelines/review.py answers it when the plan needs no person):
    # CodePipeline lets any principal allowed PutApprovalResult approve, so the Apply after the approval
    # refuses one given by anyone else (pipelines/approval_check.py).
    approver_roles: tuple[str, ...] = ("canvalo-release-approver",)
    # Minutes the pipeline watches this stage's alarms after it deployed, before promoting to the next
    # stage: an alarm in ALARM meanwhile stops the promotion (pipelines/bake.py). 0: promote at once.
    bake_minutes: int = 0
    # When the pipeline may enter the stage's Apply: a CodePipeline DeploymentWindow cron (six or seven
    # fields, seconds first, e.g. `* * 8-16 ? * MON-FRI *` for weekdays 08:00-17:00) read in
    # `deployment_window_time_zone`; an execution that reaches the stage outside it waits at the stage's
    # entry condition and enters when the window opens, with no retry (AWS's DeploymentWindow rule;
    # docs/pipeline.md "Deployment window"). None: any time.
    deployment_window: str | None = None
    deployment_window_time_zone: str = "UTC"

    def __post_init__(self) -> None:
        where = f"stage {self.name}"
        if self.name not in STAGE_NAMES:
            raise ConfigError(f"unknown stage {self.name!r}: the stages are {', '.join(STAGE_NAMES)}")
        if not ACCOUNT_ID.match(self.account_id):
            raise self._error("account_id", self.account_id, "an AWS account id is exactly 12 digits")
        if not REGION.match(self.region):
            raise self._error("region", self.region, "expected an AWS region such as eu-west-1")
        self._validate_cidr()
        if not 1 <= self.nat_gateways <= NETWORK_ZONES:
            raise self._error(
                "nat_gateways",
                self.nat_gateways,
                f"use 1 to {NETWORK_ZONES} (one per availability zone at most)",
            )
        memory_sizes = FARGATE_MEMORY_BY_CPU.get(self.cpu)
        if memory_sizes is None:
            raise self._error("cpu", self.cpu, f"Fargate cpu is one of {', '.join(map(str, FARGATE_MEMORY_BY_CPU))}")
        if self.memory not in memory_sizes:
            raise self._error(
                "memory",
                self.memory,
                f"Fargate cpu {self.cpu} takes memory {memory_sizes[0]} to {memory_sizes[-1]} "
                f"in the steps {', '.join(map(str, memory_sizes[:3]))}...",
            )
        if self.min_tasks < 1:
            raise self._error("min_tasks", self.min_tasks, "a service needs at least 1 task")
        if self.min_tasks > self.max_tasks:
            raise ConfigError(
                f"{where}: min_tasks={self.min_tasks} is greater than max_tasks={self.max_tasks}; "
                f"set {stage_env_var(self.name, 'min_tasks')} <= {stage_env_var(self.name, 'max_tasks')}"
            )
        if self.domain_name is not None and not DOMAIN.match(self.domain_name):
            raise self._error("domain_name", self.domain_name, "expected a lower-case DNS name such as example.com")
        if self.secret_recovery_window_days != 0 and not 7 <= self.secret_recovery_window_days <= 30:
            raise self._error(
                "secret_recovery_window_days", self.secret_recovery_window_days, "use 0 (delete at once) or 7 to 30"
            )
        if self.post_deploy_tests not in POST_DEPLOY_TESTS:
            raise self._error("post_deploy_tests", self.post_deploy_tests, f"use one of {', '.join(POST_DEPLOY_TESTS)}")
        if self.cdn_price_class not in CDN_PRICE_CLASSES:
            raise self._error("cdn_price_class", self.cdn_price_class, f"use one of {', '.join(CDN_PRICE_CLASSES)}")
        self._validate_break_glass_principals()
        self._validate_approver_roles()
        self._validate_promotion_timing()

    def _validate_promotion_timing(self) -> None:
        if not 0 <= self.bake_minutes <= MAX_BAKE_MINUTES:
            raise self._error("bake_minutes", self.bake_minutes, f"use 0 (promote at once) to {MAX_BAKE_MINUTES}")
        if self.deployment_window is not None:
            parts = self.deployment_window.split()
            patterns = (*WINDOW_CRON_FIELDS, WINDOW_CRON_YEAR)[: len(parts)]
            shaped = len(parts) in (6, 7) and all(
                re.fullmatch(p, part) for p, part in zip(patterns, parts, strict=True)
            )
            if not shaped or [parts[3], parts[5]].count("?") != 1:
                raise self._error(
                    "deployment_window",
                    self.deployment_window,
                    "expected a CodePipeline cron of six or seven fields, seconds first and one day field '?', "
                    "such as '* * 8-16 ? * MON-FRI *' (weekdays 08:00-17:00)",
                )
        try:
            zoneinfo.ZoneInfo(self.deployment_window_time_zone)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise self._error(
                "deployment_window_time_zone",
                self.deployment_window_time_zone,
                "expected an IANA time zone such as UTC or Europe/Berlin",
            ) from None

    def _validate_approver_roles(self) -> None:
        if not self.approver_roles:
            raise self._error(
                "approver_roles",
                "",
                "every stage's approval needs the names of the roles whose sessions may approve it, such as "
                "canvalo-release-approver or AWSReservedSSO_ReleaseApprover_*",
            )
        for name in self.approver_roles:
            if not APPROVER_ROLE.match(name) or not name.strip("*?"):
                raise self._error(
                    "approver_roles",
                    name,
                    "expected an IAM role name, with * or ? as wildcards, that names people's roles, not every role",
                )

    def _validate_break_glass_principals(self) -> None:

        if self.break_glass_principals and not self.cross_account_deploy:
            raise self._error(
                "break_glass_principals",
                ",".join(self.break_glass_principals),
                f"{self.name} is deployed with the caller's own credentials; break-glass principals apply to "
                "cross-account stages, so leave it empty",
            )
        for pattern in self.break_glass_principals:
            problem = break_glass_problem(pattern, self.account_id)
            if problem:
                raise self._error("break_glass_principals", pattern, problem)

    def _validate_cidr(self) -> None:
        try:
            network = ipaddress.IPv4Network(self.vpc_cidr, strict=True)
        except ValueError as exc:
            raise self._error(
                "vpc_cidr", self.vpc_cidr, f"expected an IPv4 network such as 10.10.0.0/16 ({exc})"
            ) from None
        if not 16 <= network.prefixlen <= 20:
            raise self._error("vpc_cidr", self.vpc_cidr, "a VPC prefix is /16 to /20 here, room for 2 subnets per zone")

    def _error(self, field_name: str, value: object, hint: str) -> ConfigError:
        return ConfigError(
            f"stage {self.name}: {field_name}={value!r} is invalid: {hint} "
            f"(set {stage_env_var(self.name, field_name)} or context stages.{self.name}.{field_name} in cdktf.json)"
        )

    # -- derived, not settings: each follows the data it truly depends on ------------------------------

    @property
    def https(self) -> bool:
        """HTTPS on the ALB, with an ACM certificate for `api.<domain>` (R8.5, R8.7): exactly where a
        domain_name is set. Without one, browsers reach the stage over CloudFront's own HTTPS name."""
        return self.domain_name is not None

    @property
    def private_load_balancer(self) -> bool:
        """An internal ALB in the private subnets that admits only CloudFront's origin-facing addresses, so
        the API is reached only through the frontend's /api/* behaviour (a CloudFront VPC origin): exactly
        where there is no domain_name. With one, browsers call https://api.<domain> on the ALB itself
        (prod, R8.3, R8.5), which is then internet-facing."""
        return self.domain_name is None

    @property
    def cross_account_deploy(self) -> bool:
        """The stage is deployed through its account's deploy role (R4.6), not the caller's credentials:
        every stage but PIPELINE_STAGE, in whose account the pipeline itself lives (R4.7, R4.8)."""
        return self.name != PIPELINE_STAGE

    @property
    def approval_before_apply(self) -> bool:
        """A person approves any change of the stage's plan or frontend before it is applied (R4.3): the last
        stage, production, which serves the users. Every other stage asks a person only when its plan
        broadens what the stage may do (pipelines/review.py)."""
        return self.name == STAGE_NAMES[-1]

    @property
    def autoscaling(self) -> bool:
        return self.max_tasks > self.min_tasks

    @property
    def healthy_tasks_alarm_threshold(self) -> int:
        """Alarm below this many healthy tasks: 2 where the stage runs 2+ (R11.3), else its own minimum."""
        return min(2, self.min_tasks)

    @property
    def api_domain(self) -> str | None:
        """Prod's API name (R8.3); stages without a domain call the API on the frontend's own origin."""
        return f"api.{self.domain_name}" if self.domain_name else None

    @property
    def api_url(self) -> str:
        """The frontend's VITE_API_URL (R8.1): `https://api.<domain>`, or "" for same-origin `/api/*`
        through CloudFront to the ALB (SPEC.md's R8.2 departure)."""
        return f"https://{self.api_domain}" if self.api_domain else ""

    @property
    def frontend_origins(self) -> tuple[str, ...]:
        """Origins the backend's CORS allows: the custom domain's; same-origin stages need none."""
        return (f"https://{self.domain_name}",) if self.domain_name else ()

    def resource_name(self, app_name: str, suffix: str) -> str:
        """`<app>-<stage>-<suffix>`: the prefix the deploy permissions allow for buckets, topics, roles."""
        return f"{app_name}-{self.name}-{suffix}"


STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "beta": {
        "vpc_cidr": "10.10.0.0/16",
        "nat_gateways": 1,
        "cpu": 256,
        "memory": 512,
        "min_tasks": 1,
        "max_tasks": 1,
        "deletion_protection": False,
        "post_deploy_tests": "integration",
        "secret_recovery_window_days": 0,
    },
    "gamma": {
        "vpc_cidr": "10.20.0.0/16",
        "nat_gateways": 1,
        "cpu": 512,
        "memory": 1024,
        "min_tasks": 2,
        "max_tasks": 10,
        "deletion_protection": False,
        # Prod is promoted only after gamma ran the release for this long with its alarms quiet.
        "bake_minutes": 15,
    },
    "prod": {
        "vpc_cidr": "10.30.0.0/16",
        "nat_gateways": 2,
        "cpu": 1024,
        "memory": 2048,
        "min_tasks": 2,
        "max_tasks": 10,
        "deletion_protection": True,
        # Weekdays 08:00-17:00 UTC: a prod release lands while people are at work to watch it.
        "deployment_window": "* * 8-16 ? * MON-FRI *",
        "cdn_price_class": "PriceClass_All",
        "dashboard": True,
        "secret_recovery_window_days": 30,
    },
}


@dataclass(frozen=True, kw_only=True)
class ProjectConfig:
    """Settings that span stages: the application, the source branch, the released image."""

    app_name: str = "canvalo"
    branch: str
    repository: str
    # An existing CodeStar connection to use; when empty the pipeline stack creates one.
    codestar_connection_arn: str | None = None
    # Subscribed to the pipeline's notifications (failures, pending approvals); none by default.
    notification_email: str | None = None
    # Whether the repository connection is AVAILABLE: a connection starts PENDING until a person
    # authorizes it in the console, and CodeBuild refuses a project whose source authenticates through
    # a connection that is not. The pipeline stack creates the drift check's project only once it is.
    connection_available: bool = False
    image_tag: str
    # The digest ECR gave the pushed image (`sha256:...`), which Build passes with its tag: tasks then run
    # `<repository>@<digest>`, so no later push under the same tag changes what a stage runs. The tag stays
    # the release's name (APP_VERSION, what /health reports). None: run by tag (a laptop's deploy).
    image_digest: str | None = None
    bedrock_model_id: str
    # Where bootstrap stacks keep their state: "local" before the state bucket exists, then "s3".
    bootstrap_state: Literal["local", "s3"] = "local"
    # Names (`*` and `?` allowed) of IAM roles in the pipeline's account whose sessions may assume the
    # pipeline's read-only plan role, and through it the stages' plan roles: `make status` from a laptop.
    operator_roles: tuple[str, ...] = ("canvalo-operator",)
    stages: tuple[StageConfig, ...] = field(default=())
    # The known `CANVALO_*` variables the environment set when this was loaded, raw and sorted by name,
    # except per-commit ones (NOT_FORWARDED): the pipeline's CodeBuild projects get them, so that a synth
    # inside the pipeline sees the administrator's settings, not only the committed cdktf.json.
    settings_from_environment: tuple[tuple[str, str], ...] = ()

    # IAM roles this project creates live under this path and name prefix, so that deploy roles
    # can be allowed to manage exactly them.
    iam_path = "/canvalo/"
    deploy_role_name = "canvalo-deploy"
    # Read-only twin of the deploy role in each cross-account stage: Plan and the drift check use it.
    plan_role_name = "canvalo-plan"
    pipeline_deploy_role_name = "canvalo-pipeline-deploy"
    # The session name `make status` must use on the pipeline's plan role: such sessions may only assume the
    # stages' plan roles (the pipeline stack denies them everything else).
    status_session_name = "canvalo-status"
    permissions_boundary_name = "canvalo-workload-boundary"

    def __post_init__(self) -> None:
        # A load balancer's name may not start with "internal-".
        if not APP_NAME.match(self.app_name) or f"{self.app_name}-".startswith("internal-"):
            raise ConfigError(
                f"app_name={self.app_name!r} is invalid: use lowercase letters, digits and hyphens, starting with "
                "a letter (not 'internal-') (set CANVALO_APP_NAME or context appName in cdktf.json)"
            )
        if not BRANCH.match(self.branch):
            raise ConfigError(
                f"branch={self.branch!r} is not a valid git branch name (set CANVALO_BRANCH or context branch)"
            )
        if not REPOSITORY.match(self.repository):
            raise ConfigError(
                f"repository={self.repository!r} is invalid: expected owner/name (set CANVALO_REPOSITORY)"
            )
        if self.codestar_connection_arn and not CONNECTION_ARN.match(self.codestar_connection_arn):
            raise ConfigError(
                f"codestar_connection_arn={self.codestar_connection_arn!r} is not a CodeStar connection ARN "
                "(set CANVALO_CODESTAR_CONNECTION_ARN to arn:aws:codeconnections:<region>:<account>:connection/<id>, "
                "or leave it empty to create one)"
            )
        if self.notification_email and not EMAIL.match(self.notification_email):
            raise ConfigError(
                f"notification_email={self.notification_email!r} is not an email address "
                "(set CANVALO_NOTIFICATION_EMAIL or context notificationEmail, or leave it empty)"
            )
        if not IMAGE_TAG.match(self.image_tag) or self.image_tag == "latest":
            raise ConfigError(
                f"image_tag={self.image_tag!r} is invalid: use an immutable tag (a commit id) or sha256 digest, "
                "never 'latest' (set CANVALO_IMAGE_TAG)"
            )
        if self.image_digest is not None and not IMAGE_DIGEST.match(self.image_digest):
            raise ConfigError(
                f"image_digest={self.image_digest!r} is invalid: expected sha256: and 64 hex digits, as ECR "
                "reports the pushed image (set CANVALO_IMAGE_DIGEST, or leave it unset to run by tag)"
            )
        for name in self.operator_roles:
            if not APPROVER_ROLE.match(name) or not name.strip("*?"):
                raise ConfigError(
                    f"operator_roles: {name!r} is invalid: expected an IAM role name, with * or ? as wildcards, "
                    "that names people's roles, not every role (set CANVALO_OPERATOR_ROLES, comma-separated, or "
                    "context operatorRoles in cdktf.json)"
                )
        names = [stage.name for stage in self.stages]
        if names != list(STAGE_NAMES):
            raise ConfigError(f"stages are {names}; expected exactly {', '.join(STAGE_NAMES)} in that order")
        what, longest = max(self.short_names().items(), key=lambda item: len(item[1]))
        if len(longest) > SHORT_NAME_LIMIT:
            room = SHORT_NAME_LIMIT - (len(longest) - len(self.app_name))
            raise ConfigError(
                f"app_name={self.app_name!r} is too long: {what} would be named {longest!r}, {len(longest)} "
                f"characters, and AWS allows {SHORT_NAME_LIMIT}; use at most {room} characters "
                "(set CANVALO_APP_NAME or context appName in cdktf.json)"
            )

    @property
    def environment_settings(self) -> dict[str, str]:
        """`settings_from_environment` as variable -> value."""
        return dict(self.settings_from_environment)

    def stage(self, name: str) -> StageConfig:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ConfigError(f"unknown stage {name!r}: the stages are {', '.join(STAGE_NAMES)}")

    @property
    def pipeline_stage(self) -> StageConfig:
        """The pipeline lives in the beta account (R4.7) and deploys beta without assuming a role (R4.8)."""
        return self.stage(PIPELINE_STAGE)

    def backend_name(self, stage: StageConfig) -> str:
        """`<app>-<stage>-backend`: the stage's ECS cluster and service, load balancer and target group."""
        return stage.resource_name(self.app_name, "backend")

    @property
    def connection_name(self) -> str:
        """The CodeStar connection the pipeline stack creates when none is configured."""
        return self.pipeline_stage.resource_name(self.app_name, "github")

    def short_names(self) -> dict[str, str]:
        """The names built from `app_name` that AWS holds to SHORT_NAME_LIMIT characters, by what they name."""
        names = {f"the {s.name} load balancer and target group": self.backend_name(s) for s in self.stages}
        names["the CodeStar connection"] = self.connection_name
        return names

    # The backend image lives in the pipeline account's ECR repository; every stage pulls the same image.
    ecr_repository_name = "canvalo-backend"

    @property
    def image_uri(self) -> str:
        """By digest when Build gave one, else by tag."""
        pipeline = self.pipeline_stage
        reference = self.image_digest or self.image_tag
        separator = "@" if reference.startswith("sha256:") else ":"
        return (
            f"{pipeline.account_id}.dkr.ecr.{pipeline.region}.amazonaws.com/"
            f"{self.ecr_repository_name}{separator}{reference}"
        )

    def backend_secret_name(self, stage: StageConfig) -> str:
        """The Secrets Manager secret whose JSON keys the backend reads (R5.1); its value is set out of band."""
        return f"{self.app_name}/{stage.name}/backend"

    def log_group_name(self, stage: StageConfig, component: str) -> str:
        return f"/{self.app_name}/{stage.name}/{component}"

    def role_arn(self, account_id: str, role_name: str) -> str:
        return f"arn:aws:iam::{account_id}:role{self.iam_path}{role_name}"

    def deploy_role_arn(self, stage: StageConfig) -> str | None:
        return self.role_arn(stage.account_id, self.deploy_role_name) if stage.cross_account_deploy else None

    def plan_role_arn(self, stage: StageConfig) -> str | None:
        return self.role_arn(stage.account_id, self.plan_role_name) if stage.cross_account_deploy else None

    @property
    def pipeline_deploy_role_arn(self) -> str:
        """The role of beta's Apply action, which deploys beta with its own rights (R4.8)."""
        return self.role_arn(self.pipeline_stage.account_id, self.pipeline_deploy_role_name)

    @property
    def pipeline_name(self) -> str:
        """`<app>-beta-pipeline`: the CodePipeline, and the prefix of its projects and roles."""
        return self.pipeline_stage.resource_name(self.app_name, "pipeline")

    @property
    def artifact_bucket(self) -> str:
        """`<app>-beta-pipeline-artifacts-<account>`: what the pipeline's actions hand each other, the plan summaries
        and the stack JSON each stage's last Apply applied."""
        return f"{self.pipeline_name}-artifacts-{self.pipeline_stage.account_id}"

    def pipeline_role_arn(self, kind: str) -> str:
        """`<app>-beta-pipeline-<kind>`: a role of the pipeline stack, in the pipeline account."""
        stage = self.pipeline_stage
        return self.role_arn(stage.account_id, stage.resource_name(self.app_name, f"pipeline-{kind}"))

    @property
    def operator_role_patterns(self) -> tuple[str, ...]:
        """`operator_roles` as `aws:PrincipalArn` patterns in the pipeline account: each name at the root path
        or under any path (an IAM Identity Center role's is `/aws-reserved/sso.amazonaws.com/...`), and only
        that name, so `canvalo-operator` never matches `not-canvalo-operator`."""
        account = self.pipeline_stage.account_id
        return tuple(
            f"arn:aws:iam::{account}:role{path}{name}" for name in self.operator_roles for path in ("/", "/*/")
        )

    @property
    def pipeline_plan_role_arn(self) -> str:
        """The role of every Plan action and the drift check: reads every stage, writes none; it may assume only
        the stages' plan roles."""
        return self.pipeline_role_arn("plan")

    def pipeline_apply_role_arn(self, stage: StageConfig) -> str:
        """The role of `stage`'s Apply action, the only pipeline role its deploy role trusts."""
        return (
            self.pipeline_role_arn(f"apply-{stage.name}")
            if stage.cross_account_deploy
            else self.pipeline_deploy_role_arn
        )

    def permissions_boundary_arn(self, stage: StageConfig) -> str:
        """Every role a stage stack creates carries this boundary; the deploy role may create no other."""
        return f"arn:aws:iam::{stage.account_id}:policy{self.iam_path}{self.permissions_boundary_name}"

    def state_bucket(self, stage: StageConfig) -> str:
        return f"{self.app_name}-tfstate-{stage.account_id}-{stage.region}"

    def lock_table(self, stage: StageConfig) -> str:
        return f"{self.app_name}-tfstate-lock"

    def require_real_accounts(self) -> None:
        """Refuse the committed placeholder account ids; called before anything talks to AWS."""
        fake = [f"{s.name}={s.account_id}" for s in self.stages if s.account_id in FAKE_ACCOUNT_IDS]
        if fake:
            raise ConfigError(
                f"placeholder account ids {', '.join(fake)}: set CANVALO_<STAGE>_ACCOUNT_ID to the real accounts"
            )


# Project-wide settings: context key in cdktf.json -> (ProjectConfig field, environment variable).
PROJECT_SETTINGS: dict[str, tuple[str, str]] = {
    "appName": ("app_name", "CANVALO_APP_NAME"),
    "branch": ("branch", "CANVALO_BRANCH"),
    "repository": ("repository", "CANVALO_REPOSITORY"),
    "codestarConnectionArn": ("codestar_connection_arn", "CANVALO_CODESTAR_CONNECTION_ARN"),
    "notificationEmail": ("notification_email", "CANVALO_NOTIFICATION_EMAIL"),
    "connectionAvailable": ("connection_available", "CANVALO_CONNECTION_AVAILABLE"),
    "imageTag": ("image_tag", "CANVALO_IMAGE_TAG"),
    "imageDigest": ("image_digest", "CANVALO_IMAGE_DIGEST"),
    "bedrockModelId": ("bedrock_model_id", "CANVALO_BEDROCK_MODEL_ID"),
    "bootstrapState": ("bootstrap_state", "CANVALO_BOOTSTRAP_STATE"),
    "operatorRoles": ("operator_roles", "CANVALO_OPERATOR_ROLES"),
}
# Former stage fields, now construct defaults or derived: setting one is refused with what replaced it.
RETIRED_STAGE_FIELDS: dict[str, str] = {
    "https": "it follows domain_name (set a domain_name for HTTPS on the ALB)",
    "private_load_balancer": "it follows domain_name (internal exactly where no domain_name is set)",
    "cross_account_deploy": f"every stage but {PIPELINE_STAGE}, where the pipeline lives, is deployed cross-account",
    "approval_before_apply": f"a person approves every change of {STAGE_NAMES[-1]}, the last stage",
    "availability_zones": f"every network spans {NETWORK_ZONES} zones (modules/network.py)",
    "cpu_target_percent": "auto scaling's target is modules/fargate_service.py's TaskSize default",
    "log_retention_days": "log retention is modules/logs.py's LOG_RETENTION_DAYS",
    "deregistration_delay_seconds": "the shutdown timings are modules/fargate_service.py's ShutdownTiming",
    "graceful_shutdown_seconds": "the shutdown timings are modules/fargate_service.py's ShutdownTiming",
    "stop_timeout_seconds": "the shutdown timings are modules/fargate_service.py's ShutdownTiming",
}
RETIRED_ENV_PATTERN = re.compile(r"^CANVALO_([A-Z]+)_(" + "|".join(n.upper() for n in RETIRED_STAGE_FIELDS) + r")$")
# Project settings that hold a list: a list in cdktf.json, or one comma-separated string.
PROJECT_LIST_SETTINGS = frozenset({"operator_roles"})
# Project settings that hold true or false.
PROJECT_FLAG_SETTINGS = frozenset({"connection_available"})
# Field name -> its annotation as written ("int", "bool", "str | None"): what an override is parsed as.
STAGE_FIELDS: dict[str, str] = {f.name: str(f.type) for f in fields(StageConfig) if f.name != "name"}
STAGE_ENV_PATTERN = re.compile(r"^CANVALO_([A-Z]+)_(" + "|".join(n.upper() for n in STAGE_FIELDS) + r")$")
REGION_VARIABLE = "CANVALO_REGION"
# Set by the pipeline itself for each commit (build.yml): never a setting to carry from one synth to the next.
NOT_FORWARDED = frozenset({"CANVALO_IMAGE_TAG", "CANVALO_IMAGE_DIGEST"})
# Every variable `load_project_config` reads, less NOT_FORWARDED: what `settings_from_environment` records.
FORWARDED_SETTINGS = (
    frozenset({REGION_VARIABLE})
    | {variable for _, variable in PROJECT_SETTINGS.values()}
    | {stage_env_var(stage, field_name) for stage in STAGE_NAMES for field_name in STAGE_FIELDS}
) - NOT_FORWARDED


def _parse_list(raw: object) -> tuple[str, ...]:
    """A list in cdktf.json, or one comma-separated string (the only form an environment variable has)."""
    items = raw if isinstance(raw, list) else [] if raw is None else str(raw).split(",")
    return tuple(text for text in (str(item).strip() for item in items) if text)


def _parse_flag(raw: object, what: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigError(f"{what}={raw!r} is not a flag: set it to true or false")


def _parse(stage: str, field_name: str, raw: object, source: str) -> object:
    kind = STAGE_FIELDS[field_name]
    if kind == "tuple[str, ...]":
        return _parse_list(raw)
    if raw is None or raw == "":
        return None
    text = str(raw).strip()
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"stage {stage}: {field_name}={raw!r} from {source} is not a whole number") from None
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"stage {stage}: {field_name}={raw!r} from {source} is not true or false")
    return text


def load_project_config(context: Mapping[str, Any], environ: Mapping[str, str]) -> ProjectConfig:
    """Build the validated configuration from cdktf.json's context and environment overrides."""
    region = str(environ.get(REGION_VARIABLE) or context.get("region") or "eu-west-1")
    stage_context = context.get("stages") or {}
    if not isinstance(stage_context, Mapping):
        raise ConfigError("context stages in cdktf.json must be an object keyed by stage name")
    for name in stage_context:
        if name not in STAGE_NAMES:
            raise ConfigError(
                f"unknown stage {name!r} in cdktf.json context stages: the stages are {', '.join(STAGE_NAMES)}"
            )
    for variable in environ:
        retired = RETIRED_ENV_PATTERN.match(variable)
        if retired:
            raise ConfigError(
                f"{variable} is no longer a setting: {RETIRED_STAGE_FIELDS[retired.group(2).lower()]}; unset it"
            )
        match = STAGE_ENV_PATTERN.match(variable)
        if match and match.group(1).lower() not in STAGE_NAMES:
            raise ConfigError(
                f"{variable} names unknown stage {match.group(1).lower()!r}: the stages are {', '.join(STAGE_NAMES)}"
            )

    stages = []
    for name in STAGE_NAMES:
        values: dict[str, Any] = {"region": region, **STAGE_DEFAULTS[name]}
        overrides = stage_context.get(name) or {}
        for key, raw in overrides.items():
            if key in RETIRED_STAGE_FIELDS:
                raise ConfigError(
                    f"stage {name}: {key} in cdktf.json context stages.{name} is no longer a setting: "
                    f"{RETIRED_STAGE_FIELDS[key]}; remove it"
                )
            if key not in STAGE_FIELDS:
                raise ConfigError(
                    f"stage {name}: unknown field {key!r} in cdktf.json context; known: {', '.join(STAGE_FIELDS)}"
                )
            values[key] = _parse(name, key, raw, f"cdktf.json stages.{name}.{key}")
        for key in STAGE_FIELDS:
            variable = stage_env_var(name, key)
            if variable in environ:
                values[key] = _parse(name, key, environ[variable], variable)
        missing = [key for key in ("account_id",) if not values.get(key)]
        if missing:
            raise ConfigError(f"stage {name}: account_id is not set (set {stage_env_var(name, 'account_id')})")
        stages.append(StageConfig(name=name, **values))

    project_values: dict[str, Any] = {}
    for context_key, (field_name, variable) in PROJECT_SETTINGS.items():
        raw = environ.get(variable, context.get(context_key))
        if field_name in PROJECT_LIST_SETTINGS:
            if raw is not None:
                project_values[field_name] = _parse_list(raw)
        elif field_name in PROJECT_FLAG_SETTINGS:
            if raw is not None and raw != "":
                project_values[field_name] = _parse_flag(raw, f"{field_name} ({variable} or context {context_key})")
        elif raw is not None and raw != "":
            project_values[field_name] = str(raw)
    if project_values.get("bootstrap_state", "local") not in ("local", "s3"):
        raise ConfigError(
            f"bootstrap_state={project_values['bootstrap_state']!r} is invalid: use local or s3 (CANVALO_BOOTSTRAP_STATE)"
        )
    for required in ("branch", "repository", "image_tag", "bedrock_model_id"):
        if required not in project_values:
            raise ConfigError(f"{required} is not set: add it to cdktf.json context or its CANVALO_ variable")
    forwarded = tuple(sorted((name, value) for name, value in environ.items() if name in FORWARDED_SETTINGS))
    return ProjectConfig(stages=tuple(stages), settings_from_environment=forwarded, **project_values)


def with_stage(project: ProjectConfig, stage: StageConfig) -> ProjectConfig:
    """A copy of the project with one stage replaced (tests vary a single stage this way)."""
    return replace(project, stages=tuple(stage if s.name == stage.name else s for s in project.stages))


def read_context(cdktf_json: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    """The `context` of cdktf.json, updated by the context the cdktn CLI passes in CDKTF_CONTEXT_JSON."""
    try:
        context = dict(json.loads(cdktf_json.read_text()).get("context", {}))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the context of {cdktf_json}: {exc}") from None
    passed = environ.get("CDKTF_CONTEXT_JSON")
    if passed:
        try:
            context.update(json.loads(passed))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"CDKTF_CONTEXT_JSON is not JSON: {exc}") from None
    return context


def load_from_environment(environ: Mapping[str, str], project_root: Path) -> ProjectConfig:
    return load_project_config(read_context(project_root / "cdktf.json", environ), environ)
