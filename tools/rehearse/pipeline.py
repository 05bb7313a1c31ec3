"""CodePipeline as the rehearsal plays it: the pipeline stack's applied definition, executed action by action.

The definition is read from the `pipeline` stack's state as Terraform last applied it (so a self-update
takes effect only once applied): stages, actions, run order, each CodeBuild project's buildspec,
environment and role, input and output artifacts, namespaces. The pipeline's own API calls
(GetPipelineExecution, StartPipelineExecution, StopPipelineExecution) reach this module's server on
127.0.0.1, which also hands each build its role's credentials as CodeBuild's container endpoint does.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tools.rehearse.codebuild import (
    Build,
    Machine,
    StandIn,
    collect_artifacts,
    credentials_document,
    environment_of_project,
    run_build,
)
from tools.rehearse.window import DEFAULT_START, HORIZON_DAYS, Clock, Window
from tools.rehearse.world import World

VARIABLE = re.compile(r"#\{([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\}")
# The role whose sessions the rehearsal's reviewer approves with: the committed prod `approver_roles`.
APPROVER_ROLE = "canvalo-release-approver"
ONE_HOUR = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Action:
    stage: str
    name: str
    category: str
    run_order: int
    configuration: dict[str, str]
    inputs: list[str]
    outputs: list[str]
    namespace: str | None


@dataclass(frozen=True)
class EntryCondition:
    """A stage's `before_entry` condition: entered when every rule holds, else `result` (SKIP or FAIL)."""

    result: str
    rules: list[dict[str, Any]]


@dataclass(frozen=True)
class Definition:
    name: str
    stages: list[tuple[str, list[Action]]]
    projects: dict[str, dict[str, Any]]
    roles: dict[str, str]
    entry: dict[str, EntryCondition] = field(default_factory=dict)


def read_definition(world: World, stack: str = "pipeline") -> Definition:
    """The pipeline as the `pipeline` stack's state says it was last applied."""
    resources = world.read_state(stack)["resources"]
    pipelines = [r for address, r in resources.items() if address.startswith("aws_codepipeline.")]
    if not pipelines:
        raise RuntimeError("the pipeline stack's state holds no aws_codepipeline: deploy the pipeline stack first")
    pipeline = pipelines[0]["config"]
    stages = []
    entry: dict[str, EntryCondition] = {}
    for stage in pipeline["stage"]:
        actions = [
            Action(
                stage=stage["name"],
                name=a["name"],
                category=a["category"],
                run_order=int(a.get("run_order") or 1),
                configuration=dict(a.get("configuration") or {}),
                inputs=list(a.get("input_artifacts") or []),
                outputs=list(a.get("output_artifacts") or []),
                namespace=a.get("namespace"),
            )
            for a in stage["action"]
        ]
        stages.append((stage["name"], sorted(actions, key=lambda a: a.run_order)))
        condition = (stage.get("before_entry") or {}).get("condition")
        if condition:
            entry[stage["name"]] = EntryCondition(str(condition["result"]), list(condition["rule"]))
    projects = {
        r["config"]["name"]: r["config"]
        for address, r in resources.items()
        if address.startswith("aws_codebuild_project.")
    }
    roles = {name: str(project["service_role"]) for name, project in projects.items()}
    return Definition(name=pipeline["name"], stages=stages, projects=projects, roles=roles, entry=entry)


@dataclass
class Step:
    execution: str
    stage: str
    action: str
    seconds: float
    result: str
    detail: str = ""


@dataclass
class Execution:
    id: str
    commit: str
    trigger: tuple[str, str] = ("Webhook", "push")
    status: str = "InProgress"
    stopped_reason: str = ""
    artifacts: dict[str, Path] = field(default_factory=dict)
    variables: dict[str, dict[str, str]] = field(default_factory=dict)
    done_actions: set[tuple[str, str]] = field(default_factory=set)
    # Who answered each approval (stage, action) -> the approver's session ARN, as ListActionExecutions says.
    approvers: dict[tuple[str, str], str] = field(default_factory=dict)
    # When the execution entered each stage, on the pipeline's clock (a window's wait shows here).
    entered: dict[str, datetime.datetime] = field(default_factory=dict)


class Services:
    """127.0.0.1 server: CodeBuild's credentials endpoint and the CodePipeline API calls the actions make."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.credentials: dict[str, bytes] = {}
        self.executions: dict[str, Execution] = {}
        self.queue: list[Execution] = []
        self.caller_of_start: str = ""
        services = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def do_GET(self) -> None:
                token = self.path.rsplit("/", 1)[-1]
                body = services.credentials.get(token)
                self.send_response(200 if body else 404)
                self.end_headers()
                self.wfile.write(body or b"{}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                operation = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
                status, answer = services.codepipeline(operation, request, self.headers.get("Authorization") or "")
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def credentials_url(self, role_arn: str) -> str:
        token = uuid.uuid4().hex
        self.credentials[token] = credentials_document(self.world.role_credentials(role_arn, "codebuild"))
        return f"{self.url}/credentials/{token}"

    def codepipeline(self, operation: str, request: dict[str, Any], authorization: str) -> tuple[int, dict[str, Any]]:
        if operation == "GetPipelineExecution":
            execution = self.executions.get(request.get("pipelineExecutionId", ""))
            if execution is None:
                return 400, {"__type": "PipelineExecutionNotFoundException", "message": "no such execution"}
            return 200, {
                "pipelineExecution": {
                    "pipelineName": request["pipelineName"],
                    "pipelineExecutionId": execution.id,
                    "status": execution.status,
                    "artifactRevisions": [{"name": "Source", "revisionId": execution.commit}],
                    "trigger": {"triggerType": execution.trigger[0], "triggerDetail": execution.trigger[1]},
                }
            }
        if operation == "StartPipelineExecution":
            revisions = request.get("sourceRevisions") or []
            commit = revisions[0]["revisionValue"] if revisions else ""
            execution = Execution(
                id=new_execution_id(), commit=commit, trigger=("StartPipelineExecution", self.caller_of_start)
            )
            self.executions[execution.id] = execution
            self.queue.append(execution)
            return 200, {"pipelineExecutionId": execution.id}
        if operation == "ListActionExecutions":
            execution = self.executions.get((request.get("filter") or {}).get("pipelineExecutionId", ""))
            if execution is None:
                return 400, {"__type": "PipelineExecutionNotFoundException", "message": "no such execution"}
            details = [
                {
                    "pipelineExecutionId": execution.id,
                    "actionExecutionId": f"{execution.id[:8]}-{stage}-{action}",
                    "stageName": stage,
                    "actionName": action,
                    "status": "Succeeded",
                    "updatedBy": approver,
                    "lastUpdateTime": time.time(),
                }
                for (stage, action), approver in execution.approvers.items()
            ]
            return 200, {"actionExecutionDetails": details}
        if operation == "GetPipelineState":
            # Each stage as the latest execution that reached it left it. Approvals are answered as they come
            # (Pipeline.reviewer), so between executions none is in progress, as in CodePipeline.
            stages: dict[str, dict[str, Any]] = {}
            for execution in self.executions.values():
                for stage_name, action_name in sorted(execution.done_actions):
                    state = stages.setdefault(stage_name, {"stageName": stage_name, "actionStates": {}})
                    state["latestExecution"] = {"pipelineExecutionId": execution.id, "status": "Succeeded"}
                    state["actionStates"][action_name] = {
                        "actionName": action_name,
                        "latestExecution": {"status": "Succeeded"},
                    }
            states = [{**state, "actionStates": list(state["actionStates"].values())} for state in stages.values()]
            return 200, {"pipelineName": request.get("name", ""), "stageStates": states}
        if operation == "StopPipelineExecution":
            execution = self.executions.get(request.get("pipelineExecutionId", ""))
            if execution is None:
                return 400, {"__type": "PipelineExecutionNotStoppableException", "message": "no such execution"}
            execution.status = "Stopping"
            execution.stopped_reason = str(request.get("reason") or "")
            return 200, {"pipelineExecutionId": execution.id}
        return 400, {"__type": "UnknownOperationException", "message": f"{operation} is not modelled"}


def new_execution_id() -> str:
    return str(uuid.uuid4())


class Pipeline:
    """Runs executions of the applied pipeline definition over a git repository standing in for GitHub."""

    def __init__(
        self,
        *,
        world: World,
        machine: Machine,
        services: Services,
        repository: Path,
        root: Path,
        stand_ins: list[StandIn],
        record: Callable[[Step], None],
        keep: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.world = world
        self.machine = machine
        self.services = services
        self.repository = repository
        self.root = root
        self.stand_ins = stand_ins
        self.record = record
        # What DeploymentWindow rules are evaluated against: never the machine's own time of day, so a
        # rehearsal passes or fails the same at any hour; waiting for a window moves it, nothing sleeps.
        self.clock = clock or Clock(DEFAULT_START)
        # Approvals given, by stage; `reviewer` is the person: (stage, the approval's message) -> approve?
        # `approver` is the session ARN CodePipeline records for whoever answers.
        self.approvals: Counter[str] = Counter()
        self.reviewer: Callable[[str, str], bool] = lambda stage, message: True
        self.approver = f"arn:aws:sts::{world.accounts['beta']}:assumed-role/{APPROVER_ROLE}/reviewer"
        self.counter = 0
        self.keep = keep
        self.cleaner = ThreadPoolExecutor(max_workers=1)
        self.pending: list[Future[None]] = []

    def push(self, commit: str) -> Execution:
        execution = Execution(id=new_execution_id(), commit=commit)
        self.services.executions[execution.id] = execution
        self.services.queue.append(execution)
        return execution

    def run_queue(self) -> list[Execution]:
        finished = []
        while self.services.queue:
            execution = self.services.queue.pop(0)
            self.run(execution)
            finished.append(execution)
        return finished

    def run(self, execution: Execution) -> None:
        definition = read_definition(self.world)
        execution.status = "InProgress"
        for stage, actions in definition.stages:
            entered, why = self.enter(definition, execution, stage)
            if entered:
                execution.entered[stage] = self.clock.now()
            else:
                short = execution.id[:8]
                if definition.entry[stage].result == "SKIP":
                    self.record(Step(short, stage, "(stage)", 0.0, "Skipped", why))
                    execution.done_actions.update((stage, action.name) for action in actions)
                    continue
                self.record(Step(short, stage, "(stage)", 0.0, "Failed", why))
                execution.status = "Failed"
                return
            for action in actions:
                key = (stage, action.name)
                if key in execution.done_actions:
                    continue
                started = time.monotonic()
                ok, detail = self.run_action(definition, execution, action)
                short = execution.id[:8]
                if execution.status == "Stopping":
                    execution.status = "Stopped"
                    self.record(
                        Step(short, stage, action.name, time.monotonic() - started, "Stopped", execution.stopped_reason)
                    )
                    return
                self.record(
                    Step(short, stage, action.name, time.monotonic() - started, "Succeeded" if ok else "Failed", detail)
                )
                if not ok:
                    execution.status = "Failed"
                    return
                execution.done_actions.add(key)
        execution.status = "Succeeded"

    def retry_failed(self, execution: Execution) -> None:
        """CodePipeline's "Retry failed actions": the same execution, artifacts and variables."""
        if execution.status != "Failed":
            raise RuntimeError(f"execution {execution.id} did not fail: nothing to retry")
        self.run(execution)

    def _discard(self, folder: Path) -> None:
        """A finished build's copies (each with its own .venv and node_modules, hundreds of megabytes) go
        once its artifacts are collected, in the background, as a CodeBuild container goes."""
        if not self.keep:
            self.pending.append(self.cleaner.submit(shutil.rmtree, folder, True))

    def close(self) -> None:
        """Wait for the discarding to finish."""
        for future in self.pending:
            future.result()
        self.cleaner.shutdown()

    def enter(self, definition: Definition, execution: Execution, stage: str) -> tuple[bool, str]:
        """Whether the stage's entry condition holds, as CodePipeline evaluates it: VariableCheck rules once;
        a DeploymentWindow rule waits, its condition in progress, until the window opens (tools/rehearse/window.py
        quotes AWS), and only then is the stage entered. The other rules are not looked at again after the
        wait, as AWS warns of CloudWatchAlarm rules. A window that never opens fails the condition."""
        condition = definition.entry.get(stage)
        if condition is None:
            return True, ""
        windows = []
        for rule in condition.rules:
            provider = rule["rule_type_id"]["provider"]
            settings = rule["configuration"]
            if provider == "DeploymentWindow":
                try:
                    windows.append((rule["name"], Window.parse(settings["Cron"], settings.get("TimeZone", "UTC"))))
                except ValueError as error:
                    raise RuntimeError(f"stage {stage}: DeploymentWindow rule {rule['name']}: {error}") from None
                continue
            if provider != "VariableCheck":
                raise RuntimeError(
                    f"stage {stage}: the rehearsal models VariableCheck and DeploymentWindow rules only, not {provider}"
                )
            value, wanted = self.substitute(settings["Variable"], execution), settings["Value"]
            holds = {"EQ": value == wanted, "NE": value != wanted, "CONTAINS": wanted in value}
            if not holds[settings["Operator"]]:
                return False, f"entry condition {rule['name']}: {settings['Variable']} is {value!r}, not {wanted!r}"
        for name, window in windows:
            closed_at = self.clock.now()
            opening = window.next_opening(closed_at)
            if opening is None:
                return False, f"entry condition {name}: the window does not open in the next {HORIZON_DAYS} days"
            if opening > closed_at:
                self.clock.wait_until(opening)
                self.record(
                    Step(
                        execution.id[:8],
                        stage,
                        "(stage)",
                        # No real time passes: the hours waited are on the rehearsal's clock, in the detail.
                        0.0,
                        "Waited",
                        f"entry condition {name}: closed at {closed_at:%a %Y-%m-%d %H:%M %Z}, entered when it "
                        f"opened at {opening:%a %Y-%m-%d %H:%M %Z} ({(opening - closed_at) / ONE_HOUR:.1f} h later)",
                    )
                )
        return True, ""

    def run_action(self, definition: Definition, execution: Execution, action: Action) -> tuple[bool, str]:
        if action.category == "Source":
            return self.source(execution, action)
        if action.category == "Approval":
            message = self.substitute(action.configuration.get("CustomData", ""), execution)
            if not self.reviewer(action.stage, message):
                return False, f"rejected by the reviewer: {message[:160]}"
            self.approvals[action.stage] += 1
            execution.approvers[(action.stage, action.name)] = self.approver
            return True, f"approved by the rehearsal: {message[:160]}"
        return self.codebuild(definition, execution, action)

    def substitute(self, text: str, execution: Execution) -> str:
        def value(match: re.Match[str]) -> str:
            namespace, name = match.groups()
            if namespace == "codepipeline" and name == "PipelineExecutionId":
                return execution.id
            return execution.variables.get(namespace, {}).get(name, "")

        return VARIABLE.sub(value, text)

    def source(self, execution: Execution, action: Action) -> tuple[bool, str]:
        """CODE_ZIP: the commit's files in a zip, which keeps no file modes and no .git."""
        if not execution.commit:
            # Started without a revision: the branch head as it is now.
            branch = action.configuration.get("BranchName", "main")
            head = subprocess.run(
                ["git", "rev-parse", branch], cwd=self.repository, capture_output=True, text=True, check=True
            )
            execution.commit = head.stdout.strip()
        self.counter += 1
        archive = self.root / f"source-{self.counter}.zip"
        subprocess.run(
            ["git", "archive", "--format=zip", f"--output={archive}", execution.commit],
            cwd=self.repository,
            check=True,
        )
        target = self.root / f"artifact-{self.counter}-{action.outputs[0]}"
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(target)
        execution.artifacts[action.outputs[0]] = target
        message = subprocess.run(
            ["git", "log", "-1", "--format=%s", execution.commit],
            cwd=self.repository,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if action.namespace:
            execution.variables[action.namespace] = {
                "CommitId": execution.commit,
                "BranchName": action.configuration.get("BranchName", ""),
                "CommitMessage": message,
                "FullRepositoryName": action.configuration.get("FullRepositoryId", ""),
            }
        return True, f"commit {execution.commit[:10]}: {message[:80]}"

    def codebuild(self, definition: Definition, execution: Execution, action: Action) -> tuple[bool, str]:
        project_name = action.configuration["ProjectName"]
        project = definition.projects.get(project_name)
        if project is None:
            return False, f"project {project_name} does not exist"
        self.counter += 1
        workdir = self.root / f"build-{self.counter}-{action.stage}-{action.name}"
        workdir.mkdir()
        copies: dict[str, Path] = {}
        for name in action.inputs:
            if name not in execution.artifacts:
                return False, f"input artifact {name} was never produced"
            copies[name] = workdir / "src" / name
            shutil.copytree(execution.artifacts[name], copies[name], symlinks=True)
        primary_name = action.configuration.get("PrimarySource") or action.inputs[0]
        action_variables = {
            v["name"]: self.substitute(v["value"], execution)
            for v in json.loads(action.configuration.get("EnvironmentVariables") or "[]")
        }
        # CodePipeline records who started an execution as the caller's session ARN.
        role_account, role_name = (
            definition.roles[project_name].split(":")[4],
            definition.roles[project_name].rsplit("/", 1)[-1],
        )
        self.services.caller_of_start = f"arn:aws:sts::{role_account}:assumed-role/{role_name}/codebuild"
        kind = project_name.removeprefix(f"{definition.name}-")
        build = Build(
            project=project_name,
            buildspec=project["source"]["buildspec"],
            primary=copies[primary_name],
            secondary={name: path for name, path in copies.items() if name != primary_name},
            environment={
                **environment_of_project(project),
                **action_variables,
                "CODEBUILD_BUILD_ID": f"{project_name}:{uuid.uuid4()}",
                "CODEBUILD_BUILD_URL": f"https://console.aws.amazon.com/codesuite/codebuild/projects/{project_name}",
                "CODEBUILD_RESOLVED_SOURCE_VERSION": execution.commit,
                "CODEBUILD_INITIATOR": f"codepipeline/{definition.name}",
                "AWS_REGION": self.world.region,
                "AWS_DEFAULT_REGION": self.world.region,
                "AWS_ENDPOINT_URL_CODEPIPELINE": self.services.url,
            },
            credentials_url=self.services.credentials_url(definition.roles[project_name]),
            stand_ins=[
                s for s in self.stand_ins if s.project_kind == kind and s.mode in (None, action_variables.get("MODE"))
            ],
        )
        try:
            notes = run_build(build, self.machine, workdir)
            return self._hand_on(build, execution, action, notes)
        finally:
            self._discard(workdir / "src")
            self._discard(workdir / "tmp")

    def _hand_on(self, build: Build, execution: Execution, action: Action, notes: list[str]) -> tuple[bool, str]:
        """The build's result: its output artifacts and exported variables, or why it failed."""
        if build.status != 0:
            return False, f"exit {build.status}: {last_error(build.log)}"
        for output in action.outputs:
            target = self.root / f"artifact-{self.counter}-{output}"
            collect_artifacts(build.buildspec, build.primary, target)
            execution.artifacts[output] = target
        if action.namespace:
            execution.variables[action.namespace] = dict(build.exported)
        return True, "; ".join(notes)


def last_error(log: Path | None) -> str:
    """The line of the log that says why: the last `error:`/`Error:` line, else the last line."""
    if log is None or not log.exists():
        return ""
    lines = [
        line.strip()
        for line in log.read_text(errors="replace").splitlines()
        if line.strip() and not line.startswith("[Container]")
    ]
    # Terraform's own `Error:` says more than the wrapper's `error: terraform apply failed`.
    for line in reversed(lines):
        if line.startswith("Error:"):
            return line[:300]
    for line in reversed(lines):
        if line.lower().startswith("error") or "Permission denied" in line:
            return line[:300]
    return lines[-1][:300] if lines else ""
