"""`make status`: what each stage runs, who deployed it, what waits, drift and alarms, in one table.

    python -m tools.status [--json]

Run with your own session in the pipeline (beta) account (`AWS_PROFILE=beta-admin`, say). From it, it reads
in that account each stage's release record (`/<app>/<stage>/release`, written by the stage's Apply:
pipelines/release.py), the pipeline's state (which approval waits, since when, its message), the drift
check's digest parameter (`/<app>/<last stage>/drift-digest`) and beta's alarms in ALARM. Gamma's and
prod's alarms it reads through their read-only `canvalo-plan` roles, which trust only the pipeline's plan
role: it assumes that one first, which `operator_roles` (CANVALO_OPERATOR_ROLES) lets your role do.

One row per stage, in pipeline order. A cell it could not read shows `error: ...` and the command exits 1;
0 when it read everything; 2 for bad configuration or credentials of another account. `--json` prints the
same data for scripts.

It loads the configuration (cdktf.json and `CANVALO_*`) itself, unlike the pipeline's scripts, which read only
what the pipeline stack synthesized into their environment: it runs on an operator's laptop, from their own
checkout, whose configuration is the one they deployed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from names import NOTHING_PUBLISHED, drift_digest_parameter, release_parameter
from pipelines.release import RecordError, ReleaseRecord
from stacks.config import ConfigError, ProjectConfig, StageConfig, load_from_environment

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXIT_INCOMPLETE = 1
EXIT_BAD_INPUT = 2
# The table's columns: (JSON field or error key, heading).
COLUMNS = (
    ("stage", "stage"),
    ("commit", "commit"),
    ("image", "image"),
    ("deployed_at", "deployed"),
    ("execution_id", "execution"),
    ("pending_approval", "waiting for"),
    ("drift", "drift check"),
    ("alarms", "alarms in ALARM"),
)
# What a table cell holds at most: errors and approval messages are cut (`--json` has them whole).
CELL_LIMIT = 120

Assume = Callable[[boto3.session.Session, str, str], boto3.session.Session]


class StatusError(Exception):
    """Nothing can be read: the configuration or the credentials are wrong. One line, exit 2."""


@dataclass(frozen=True)
class PendingApproval:
    # `<pipeline stage>/<action>`, as the console names it.
    action: str
    since: str | None
    # The approval's CustomData as CodePipeline resolved it: the plan's headline.
    message: str | None


@dataclass(frozen=True)
class DriftCheck:
    """What the daily check's digest parameter says. drift.py records no time of a check: it writes the
    parameter when what it reports changes, so `since` is when the current result began."""

    # "reported": a drift or a failed check was mailed and no check since came back clean; "clean": a
    # check came back clean after one had reported; "nothing reported": no check ever reported anything.
    result: str
    # The parameter's LastModifiedDate.
    since: str | None


@dataclass
class StageStatus:
    stage: str
    commit: str | None = None
    image: str | None = None
    deployed_at: str | None = None
    execution_id: str | None = None
    pending_approval: list[PendingApproval] = field(default_factory=list)
    # None for a stage the daily drift check does not cover.
    drift: DriftCheck | None = None
    alarms: list[str] = field(default_factory=list)
    # Column -> why it could not be read.
    errors: dict[str, str] = field(default_factory=dict)


def one_line(error: BaseException) -> str:
    """An AWS error as `Code: message` (what a cell has room for), anything else as its text on one line."""
    if isinstance(error, ClientError):
        details = error.response.get("Error") or {}
        text = f"{details.get('Code', 'Error')}: {details.get('Message', '')}"
    else:
        text = str(error)
    return " ".join(text.split())


def iso(value: Any) -> str | None:
    """A time as the release records hold it: ISO 8601 in UTC, to the second."""
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return utc.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return str(value) if value else None


def assume_role(session: boto3.session.Session, role_arn: str, session_name: str) -> boto3.session.Session:
    """A session as `role_arn`, assumed with `session`'s credentials."""
    credentials = session.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session_name)["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=session.region_name,
    )


class StageSessions:
    """Sessions that read a stage's alarms: the operator's own for the pipeline's account, else the stage's
    plan role, reached through the pipeline's plan role (assumed once)."""

    def __init__(self, project: ProjectConfig, session: boto3.session.Session, assume: Assume) -> None:
        self.project, self.session, self.assume = project, session, assume
        self._through: boto3.session.Session | BaseException | None = None

    def _plan_session(self) -> boto3.session.Session:
        if self._through is None:
            try:
                # The plan role admits operators under this session name only, and lets such a session only
                # assume the stages' plan roles.
                name = self.project.status_session_name
                self._through = self.assume(self.session, self.project.pipeline_plan_role_arn, name)
            except (ClientError, BotoCoreError) as error:
                self._through = error
        if isinstance(self._through, BaseException):
            raise StatusError(
                f"cannot assume {self.project.pipeline_plan_role_arn} (is your role in operator_roles?): "
                f"{one_line(self._through)}"
            )
        return self._through

    def of(self, stage: StageConfig) -> boto3.session.Session:
        role_arn = self.project.plan_role_arn(stage)
        if role_arn is None:
            return self.session
        try:
            return self.assume(self._plan_session(), role_arn, self.project.status_session_name)
        except (ClientError, BotoCoreError) as error:
            raise StatusError(f"cannot assume {role_arn}: {one_line(error)}") from None


def read_releases(ssm: Any, project: ProjectConfig, rows: Mapping[str, StageStatus]) -> None:
    for stage in project.stages:
        row, parameter = rows[stage.name], release_parameter(project.app_name, stage.name)
        try:
            release = ReleaseRecord.parse(parameter, str(ssm.get_parameter(Name=parameter)["Parameter"]["Value"]))
        except (ClientError, BotoCoreError, RecordError) as error:
            missing = isinstance(error, ClientError) and error.response["Error"]["Code"] == "ParameterNotFound"
            hint = ": deploy the pipeline stack of this commit, which creates it" if missing else ""
            row.errors["commit"] = f"cannot read {parameter}: {one_line(error)}{hint}"
            continue
        if release is not None:
            row.commit, row.image = release.commit, release.image
            row.deployed_at, row.execution_id = release.deployed_at, release.execution_id


def deployment_stage(pipeline_stage: str, names: Sequence[str]) -> str | None:
    """The stage a pipeline stage belongs to: `Beta` -> beta."""
    return next((name for name in names if pipeline_stage.lower().startswith(name)), None)


def read_approvals(codepipeline: Any, project: ProjectConfig, rows: Mapping[str, StageStatus]) -> None:
    """Approvals in progress: an approval action's latest execution carries the token that answers it."""
    names = [s.name for s in project.stages]
    try:
        state = codepipeline.get_pipeline_state(name=project.pipeline_name)
        for stage_state in state.get("stageStates") or []:
            owner = deployment_stage(str(stage_state.get("stageName", "")), names)
            for action in stage_state.get("actionStates") or []:
                latest = action.get("latestExecution") or {}
                if owner is None or latest.get("status") != "InProgress" or not latest.get("token"):
                    continue
                where = f"{stage_state['stageName']}/{action['actionName']}"
                execution_id = (stage_state.get("latestExecution") or {}).get("pipelineExecutionId")
                message = approval_message(codepipeline, project.pipeline_name, execution_id, stage_state, action)
                rows[owner].pending_approval.append(
                    PendingApproval(where, iso(latest.get("lastStatusChange")), message)
                )
    except (ClientError, BotoCoreError) as error:
        for row in rows.values():
            row.errors["pending_approval"] = f"cannot read pipeline {project.pipeline_name}: {one_line(error)}"


def approval_message(
    codepipeline: Any,
    pipeline: str,
    execution_id: str | None,
    stage_state: Mapping[str, Any],
    action: Mapping[str, Any],
) -> str | None:
    """The approval's CustomData as resolved for this execution (the plan's headline)."""
    if not execution_id:
        return None
    pages = codepipeline.get_paginator("list_action_executions").paginate(
        pipelineName=pipeline, filter={"pipelineExecutionId": execution_id}
    )
    for page in pages:
        for detail in page.get("actionExecutionDetails") or []:
            if (detail.get("stageName"), detail.get("actionName")) == (stage_state["stageName"], action["actionName"]):
                data = (detail.get("input") or {}).get("resolvedConfiguration") or {}
                return str(data["CustomData"]) if data.get("CustomData") else None
    return None


def read_drift(ssm: Any, project: ProjectConfig, rows: Mapping[str, StageStatus]) -> None:
    """The daily check covers the last stage (stacks/pipeline.py): its digest parameter says what stands."""
    checked = project.stages[-1]
    parameter = drift_digest_parameter(project.app_name, checked.name)
    try:
        found = ssm.get_parameter(Name=parameter)["Parameter"]
    except (ClientError, BotoCoreError) as error:
        rows[checked.name].errors["drift"] = f"cannot read {parameter}: {one_line(error)}"
        return
    value, since = str(found["Value"]), iso(found.get("LastModifiedDate"))
    if value != NOTHING_PUBLISHED:
        rows[checked.name].drift = DriftCheck("reported", since)
    elif int(found.get("Version") or 1) == 1:
        # Still the pipeline stack's placeholder: no check has reported anything, ever.
        rows[checked.name].drift = DriftCheck("nothing reported", None)
    else:
        rows[checked.name].drift = DriftCheck("clean", since)


def alarms_in_alarm(cloudwatch: Any, prefix: str) -> list[str]:
    names: list[str] = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(StateValue="ALARM", AlarmNamePrefix=prefix):
        found = [*(page.get("MetricAlarms") or []), *(page.get("CompositeAlarms") or [])]
        # The state is checked here too: moto answers a prefix and a state with the prefix's alarms alone.
        names += [str(a["AlarmName"]) for a in found if a.get("StateValue") == "ALARM"]
    return sorted(names)


def read_alarms(sessions: StageSessions, project: ProjectConfig, rows: Mapping[str, StageStatus]) -> None:
    for stage in project.stages:
        row = rows[stage.name]
        try:
            cloudwatch = sessions.of(stage).client("cloudwatch", region_name=stage.region)
            # Every alarm of the stage is named `<app>-<stage>-...` (modules/service_alarms.py).
            row.alarms = alarms_in_alarm(cloudwatch, stage.resource_name(project.app_name, ""))
        except StatusError as error:
            row.errors["alarms"] = str(error)
        except (ClientError, BotoCoreError) as error:
            row.errors["alarms"] = f"cannot read {stage.name}'s alarms: {one_line(error)}"


def collect(project: ProjectConfig, session: boto3.session.Session, assume: Assume = assume_role) -> list[StageStatus]:
    """Every stage's row; a part that cannot be read is an error in its row, never an exception."""
    rows = {s.name: StageStatus(s.name) for s in project.stages}
    region = project.pipeline_stage.region
    read_releases(session.client("ssm", region_name=region), project, rows)
    read_approvals(session.client("codepipeline", region_name=region), project, rows)
    read_drift(session.client("ssm", region_name=region), project, rows)
    read_alarms(StageSessions(project, session, assume), project, rows)
    return list(rows.values())


def check_account(project: ProjectConfig, session: boto3.session.Session) -> None:
    """The records and the pipeline live in the pipeline's account: other credentials read nothing."""
    expected = project.pipeline_stage.account_id
    try:
        account = session.client("sts", region_name=project.pipeline_stage.region).get_caller_identity()["Account"]
    except NoCredentialsError:
        raise StatusError(
            f"no AWS credentials: sign in to the pipeline account {expected} (aws sso login --profile <beta profile>, "
            "then AWS_PROFILE=<beta profile>)"
        ) from None
    except (ClientError, BotoCoreError) as error:
        raise StatusError(f"cannot tell whose credentials these are: {one_line(error)}") from None
    if account != expected:
        raise StatusError(
            f"these credentials are of account {account}; make status reads the pipeline account {expected} (beta): "
            "select a profile of that account (AWS_PROFILE)"
        )


# -- output ---------------------------------------------------------------------------------------


def short_image(image: str) -> str:
    """`<registry>/<repository>:<tag>` -> `<repository>:<tag>`, a content tag or digest cut to 12 hex digits."""
    name = image.rsplit("/", 1)[-1]
    for marker in ("@sha256:", ":app-"):
        head, found, digest = name.partition(marker)
        if found and len(digest) > 12:
            return f"{head}{marker}{digest[:12]}"
    return name


def cut(text: str, limit: int = CELL_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cells(row: StageStatus) -> list[str]:
    def shown(key: str, value: str) -> str:
        return cut(f"error: {row.errors[key]}") if key in row.errors else value

    never = row.commit is None
    approval = "; ".join(
        cut(f"{p.action} since {p.since or '?'}" + (f": {p.message}" if p.message else ""), CELL_LIMIT)
        for p in row.pending_approval
    )
    drift = (
        "-" if row.drift is None else f"{row.drift.result}" + (f" since {row.drift.since}" if row.drift.since else "")
    )
    return [
        row.stage,
        shown("commit", "never deployed" if never else (row.commit or "")[:12]),
        "" if never else short_image(row.image) if row.image else "unknown",
        row.deployed_at or "",
        (row.execution_id or "unknown")[:8] if not never else "",
        shown("pending_approval", approval or "-"),
        shown("drift", drift),
        shown("alarms", ", ".join(row.alarms) or "none"),
    ]


def table(rows: Iterable[StageStatus]) -> str:
    body = [cells(row) for row in rows]
    headings = [heading for _, heading in COLUMNS]
    widths = [max(len(line[i]) for line in [headings, *body]) for i in range(len(headings))]
    lines = [headings, ["-" * width for width in widths], *body]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def as_json(rows: Sequence[StageStatus]) -> str:
    return json.dumps({"complete": not any(r.errors for r in rows), "stages": [asdict(r) for r in rows]}, indent=2)


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    session: boto3.session.Session | None = None,
    assume: Assume = assume_role,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.status", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the same data as JSON, for scripts")
    args = parser.parse_args(argv)
    try:
        project = load_from_environment(environ, PROJECT_ROOT)
        project.require_real_accounts()
        session = session or boto3.session.Session(region_name=project.pipeline_stage.region)
        check_account(project, session)
    except (ConfigError, StatusError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    rows = collect(project, session, assume)
    print(as_json(rows) if args.json else table(rows))
    return EXIT_INCOMPLETE if any(row.errors for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
