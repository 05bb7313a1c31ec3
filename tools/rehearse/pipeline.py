"""CodePipeline as the rehearsal plays it: the pipeline stack's applied definition, executed action by action.

The definition is read from the `pipeline` stack's state as Terraform last applied it (so a self-update
takes effect only once applied): the trigger's push filters, stages, actions, run order, each CodeBuild
project's buildspec, environment and role, input and output artifacts, namespaces. The pipeline's own API
calls (GetPipelineExecution, StartPipelineExecution, StopPipelineExecution, GetPipelineState,
PutApprovalResult, ListActionExecutions) reach this module's server on 127.0.0.1, which also hands each
build its role's credentials as CodeBuild's container endpoint does.

Several executions are in flight at once, as QUEUED mode runs them: "it enters one stage at a time and locks
the stage while all action executions in the stage are running"
(https://docs.aws.amazon.com/codepipeline/latest/userguide/pipelines-stop.html); "executions are processed
one by one in the order that they are queued"
(https://docs.aws.amazon.com/codepipeline/latest/userguide/concepts-how-it-works.html). `Pipeline.run_queue`
is a step-wise scheduler: in each round every execution in flight, oldest first, makes one move (runs its
next action, or enters its next stage when no other execution holds it); an execution that finished a stage
unlocks it and waits before the next one, InProgress, until that stage is free, and the oldest waiting one
enters first. A manual approval waiting for a person holds its stage. So a newer execution plans Beta while
an older one is in Gamma, and waits before Prod while the older waits there for its approval.

A pipeline update (the `pipeline` stack's applied `aws_codepipeline` changed, by UpdatePipeline or by an
administrator) cancels every execution in flight that started on the previous definition: status
`Cancelled`, "The pipeline's definition was updated before the pipeline execution could be completed"
(https://docs.aws.amazon.com/codepipeline/latest/APIReference/API_PipelineExecution.html). AWS does not say
what becomes of an action running at that moment; the rehearsal lets it complete (the only one that can be
running is the build that applied the update), and cancels its execution after it unless that build stopped
it meanwhile (the self-update stops its own with abandon: Stopped). A person's approval in progress is
dropped with its execution: its token answers nothing. Executions started after the update run on the new
definition.

What the model cannot show:
- Real time. Actions take no time relative to each other: one action runs at a time (a round interleaves
  executions action by action), so two builds never overlap and a CodeBuild action of one execution never
  runs while another's is half done. Each round gives every execution one move, as if all actions took the
  same time.
- CodePipeline runs the actions of one run order concurrently. Here a run order's CodeBuild actions run one
  after another, then its approvals are settled: an approval not answered by then (through
  PutApprovalResult, as Review does) is put to `Pipeline.reviewer`, the person, who answers at once or
  (None) later, through `Pipeline.decide`, while the execution holds the stage.
- A failed action fails its stage at once, and an approval of the same run order still unanswered is dropped;
  "Retry failed actions" asks it again, with a new token. CodePipeline lets the other in-progress actions
  of the stage finish first. A failed execution unlocks its stage; whether AWS lets a newer execution enter
  it before the failed one is retried is not modelled (no scenario retries with another in flight).
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import re
import shutil
import subprocess
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tools.rehearse.codebuild import (
    EVERY_PROJECT,
    Build,
    Machine,
    StandIn,
    collect_artifacts,
    credentials_document,
    environment_of_project,
    run_build,
)
from tools.rehearse.trigger import PushFilter, blocks, read_push_filters, trigger_refusal
from tools.rehearse.window import DEFAULT_START, HORIZON_DAYS, Clock, Window
from tools.rehearse.world import World

VARIABLE = re.compile(r"#\{([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\}")


class UnresolvedVariableError(Exception):
    """A variable reference no earlier action of the execution produced. CodePipeline then fails the action,
    in its words "An action in this pipeline failed because one or more variables could not be resolved:
    Action name=<action>" (as reported in aws-samples/ecs-blue-green-deployment-with-codedeploy#4), instead of
    passing an empty value on."""

    def __init__(self, action: str, references: list[str]) -> None:
        super().__init__(
            "An action in this pipeline failed because one or more variables could not be resolved: "
            f"Action name={action} ({', '.join(references)})"
        )


def substitute(text: str, execution: Execution, action: str) -> str:
    """`text` with each `#{namespace.name}` replaced by its value in `execution`; UnresolvedVariableError if one has none."""
    missing: list[str] = []

    def value(match: re.Match[str]) -> str:
        namespace, name = match.groups()
        if namespace == "codepipeline" and name == "PipelineExecutionId":
            return execution.id
        found = execution.variables.get(namespace, {}).get(name)
        if found is None:
            missing.append(match.group(0))
            return ""
        return found

    resolved = VARIABLE.sub(value, text)
    if missing:
        raise UnresolvedVariableError(action, missing)
    return resolved


# The role whose sessions the rehearsal's reviewer approves with: the committed prod `approver_roles`.
APPROVER_ROLE = "canvalo-release-approver"
ONE_HOUR = datetime.timedelta(hours=1)
# What an execution's trigger says when a push started it, as GetPipelineExecution reports it.
PUSHED = ("Webhook", "push")
# Why an update of the pipeline ends an execution, in the words of AWS's PipelineExecution status `Cancelled`.
CANCELLED = "the pipeline's definition was updated before the pipeline execution could be completed"


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
    """A stage's `before_entry` condition: entered when every rule holds, else `result` (the pipeline's: FAIL)."""

    result: str
    rules: list[dict[str, Any]]


@dataclass(frozen=True)
class Definition:
    name: str
    stages: list[tuple[str, list[Action]]]
    projects: dict[str, dict[str, Any]]
    roles: dict[str, str]
    entry: dict[str, EntryCondition] = field(default_factory=dict)
    # The trigger's push filters; None: no trigger, so every push to the Source branch starts an execution.
    push_filters: tuple[PushFilter, ...] | None = None

    @property
    def source_branch(self) -> str:
        """The branch the Source action reads, which the rehearsal's pushes move."""
        sources = [a for _, actions in self.stages for a in actions if a.category == "Source"]
        return sources[0].configuration.get("BranchName", "") if sources else ""


def applied_pipeline(world: World, stack: str = "pipeline") -> tuple[dict[str, Any], dict[str, Any]]:
    """The `pipeline` stack's state resources and its aws_codepipeline's configuration, as last applied."""
    resources: dict[str, Any] = world.read_state(stack)["resources"]
    pipelines = [r for address, r in resources.items() if address.startswith("aws_codepipeline.")]
    if not pipelines:
        raise RuntimeError("the pipeline stack's state holds no aws_codepipeline: deploy the pipeline stack first")
    return resources, pipelines[0]["config"]


def definition_version(world: World) -> str:
    """A fingerprint of the applied pipeline definition: it changes exactly when an update would cancel the
    executions in flight (the aws_codepipeline's own configuration; a CodeBuild project's change does not)."""
    _, pipeline = applied_pipeline(world)
    return hashlib.sha256(json.dumps(pipeline, sort_keys=True).encode()).hexdigest()[:16]


def read_definition(world: World, stack: str = "pipeline") -> Definition:
    """The pipeline as the `pipeline` stack's state says it was last applied."""
    resources, pipeline = applied_pipeline(world, stack)
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
        # Stable: actions of one run order keep the definition's order (Review before Approve).
        stages.append((stage["name"], sorted(actions, key=lambda a: a.run_order)))
        for before_entry in blocks(stage.get("before_entry")):
            for condition in blocks(before_entry.get("condition")):
                entry[stage["name"]] = EntryCondition(str(condition["result"]), blocks(condition["rule"]))
    projects = {
        r["config"]["name"]: r["config"]
        for address, r in resources.items()
        if address.startswith("aws_codebuild_project.")
    }
    roles = {name: str(project["service_role"]) for name, project in projects.items()}
    return Definition(
        name=pipeline["name"],
        stages=stages,
        projects=projects,
        roles=roles,
        entry=entry,
        push_filters=read_push_filters(pipeline),
    )


@dataclass
class Step:
    execution: str
    stage: str
    action: str
    seconds: float
    result: str
    detail: str = ""


@dataclass(frozen=True)
class ApprovalAnswer:
    """What PutApprovalResult said to one approval: `status` Approved or Rejected, from the session ARN `by`,
    during the build of the action `through` (Review)."""

    token: str
    status: str
    summary: str
    by: str
    through: str


@dataclass
class Execution:
    id: str
    commit: str
    trigger: tuple[str, str] = PUSHED
    status: str = "InProgress"
    stopped_reason: str = ""
    artifacts: dict[str, Path] = field(default_factory=dict)
    variables: dict[str, dict[str, str]] = field(default_factory=dict)
    done_actions: set[tuple[str, str]] = field(default_factory=set)
    # Who answered each approval (stage, action) -> the approver's session ARN, as ListActionExecutions says.
    approvers: dict[tuple[str, str], str] = field(default_factory=dict)
    # When the execution entered each stage, on the pipeline's clock (a window's wait shows here).
    entered: dict[str, datetime.datetime] = field(default_factory=dict)
    # The stage the execution is running now ("" between stages), as GetPipelineState shows it.
    stage_in_progress: str = ""
    # Approvals in progress, (stage, action) -> the token that answers it (GetPipelineState hands it out).
    pending: dict[tuple[str, str], str] = field(default_factory=dict)
    # What PutApprovalResult answered each approval (Pipeline.settle reads it); a retry puts the approval in
    # progress again, with a new token, and forgets the old answer.
    answers: dict[tuple[str, str], ApprovalAnswer] = field(default_factory=dict)
    # The applied pipeline definition the execution started on (definition_version): an update cancels it.
    version: str = ""
    # The index of the stage it is in, or enters next (where a retry resumes).
    position: int = 0
    # The stage it waits before, InProgress, while another execution holds it ("" when it does not wait).
    waiting_for: str = ""
    # The approval waiting for a person's answer (Pipeline.decide), which holds the stage meanwhile.
    awaiting_person: tuple[str, str] | None = None
    # A person's answers, (stage, action) -> approved, until the approval is settled.
    decisions: dict[tuple[str, str], bool] = field(default_factory=dict)


@dataclass
class Flight:
    """An execution in flight: the moves it has left to make (Pipeline._fly)."""

    execution: Execution
    steps: Generator[bool, None, None]


def api_error(kind: str, message: str) -> tuple[int, dict[str, Any]]:
    """A CodePipeline error as boto3 reads it: HTTP 400 and the exception's name in `__type`."""
    return 400, {"__type": kind, "message": message}


class Services:
    """127.0.0.1 server: CodeBuild's credentials endpoint and the CodePipeline API calls the actions make."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.credentials: dict[str, bytes] = {}
        self.executions: dict[str, Execution] = {}
        self.queue: list[Execution] = []
        # Who calls the API: the session ARN of the build running now, and its action's name. One build runs
        # at a time, so its requests are known to be its own; their signatures are not checked.
        self.caller: str = ""
        self.calling_action: str = ""
        # The pipeline the executions belong to, once one ran; PutApprovalResult for another is refused.
        self.pipeline_name: str = ""
        # The applied definition's fingerprint now: what an execution StartPipelineExecution starts runs on.
        self.version: Callable[[], str] = lambda: definition_version(world)
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
        """One CodePipeline API call: (HTTP status, JSON answer). `authorization` is not checked (see `caller`)."""
        handlers: dict[str, Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]] = {
            "GetPipelineExecution": self.get_pipeline_execution,
            "StartPipelineExecution": self.start_pipeline_execution,
            "ListActionExecutions": self.list_action_executions,
            "GetPipelineState": self.get_pipeline_state,
            "PutApprovalResult": self.put_approval_result,
            "StopPipelineExecution": self.stop_pipeline_execution,
        }
        handler = handlers.get(operation)
        if handler is None:
            return api_error("UnknownOperationException", f"{operation} is not modelled")
        return handler(request)

    def get_pipeline_execution(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        execution = self.executions.get(request.get("pipelineExecutionId", ""))
        if execution is None:
            return api_error("PipelineExecutionNotFoundException", "no such execution")
        return 200, {
            "pipelineExecution": {
                "pipelineName": request["pipelineName"],
                "pipelineExecutionId": execution.id,
                "status": execution.status,
                "artifactRevisions": [{"name": "Source", "revisionId": execution.commit}],
                "trigger": {"triggerType": execution.trigger[0], "triggerDetail": execution.trigger[1]},
            }
        }

    def start_pipeline_execution(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        revisions = request.get("sourceRevisions") or []
        commit = revisions[0]["revisionValue"] if revisions else ""
        # CodePipeline records who started an execution as the caller's session ARN.
        execution = Execution(
            id=new_execution_id(),
            commit=commit,
            trigger=("StartPipelineExecution", self.caller),
            version=self.version(),
        )
        self.executions[execution.id] = execution
        self.queue.append(execution)
        return 200, {"pipelineExecutionId": execution.id}

    def list_action_executions(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The approvals of one execution, each with who approved it (`updatedBy`); no other action."""
        execution = self.executions.get((request.get("filter") or {}).get("pipelineExecutionId", ""))
        if execution is None:
            return api_error("PipelineExecutionNotFoundException", "no such execution")
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

    def get_pipeline_state(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Each stage as the latest execution that reached it left it, and the stage an execution is running
        now as in progress, with each approval's token while it waits for an answer."""
        stages: dict[str, dict[str, Any]] = {}

        def state_of(stage_name: str) -> dict[str, Any]:
            return stages.setdefault(stage_name, {"stageName": stage_name, "actionStates": {}})

        for execution in self.executions.values():
            for stage_name, action_name in sorted(execution.done_actions):
                state = state_of(stage_name)
                state["latestExecution"] = {"pipelineExecutionId": execution.id, "status": "Succeeded"}
                state["actionStates"][action_name] = {
                    "actionName": action_name,
                    "latestExecution": {"status": "Succeeded"},
                }
        # After the loop: the execution running a stage is that stage's latest, whatever came before it.
        for execution in self.executions.values():
            if not execution.stage_in_progress:
                continue
            state = state_of(execution.stage_in_progress)
            state["latestExecution"] = {"pipelineExecutionId": execution.id, "status": "InProgress"}
            for (stage_name, action_name), token in execution.pending.items():
                if stage_name == execution.stage_in_progress:
                    state["actionStates"][action_name] = {
                        "actionName": action_name,
                        "latestExecution": {"status": "InProgress", "token": token},
                    }
        states = [{**state, "actionStates": list(state["actionStates"].values())} for state in stages.values()]
        return 200, {"pipelineName": request.get("name", ""), "stageStates": states}

    def put_approval_result(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer an approval in progress with its token, as the calling build's session (`caller`)
        (https://docs.aws.amazon.com/codepipeline/latest/APIReference/API_PutApprovalResult.html)."""
        key = (str(request.get("stageName", "")), str(request.get("actionName", "")))
        token, result = str(request.get("token", "")), request.get("result") or {}
        if self.pipeline_name and request.get("pipelineName") != self.pipeline_name:
            return api_error("PipelineNotFoundException", f"no pipeline {request.get('pipelineName')!r}")
        if result.get("status") not in ("Approved", "Rejected") or not result.get("summary"):
            return api_error("ValidationException", "result needs a summary and a status of Approved or Rejected")
        for execution in self.executions.values():
            answered = execution.answers.get(key)
            if answered is not None and answered.token == token:
                return api_error("ApprovalAlreadyCompletedException", f"{'/'.join(key)} was already {answered.status}")
            if token and execution.pending.get(key) == token:
                del execution.pending[key]
                execution.answers[key] = ApprovalAnswer(
                    token, str(result["status"]), str(result["summary"]), self.caller, self.calling_action
                )
                return 200, {"approvedAt": time.time()}
        return api_error(
            "InvalidApprovalTokenException", f"the token does not answer an approval of {'/'.join(key)} in progress"
        )

    def stop_pipeline_execution(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        execution = self.executions.get(request.get("pipelineExecutionId", ""))
        if execution is None:
            return api_error("PipelineExecutionNotStoppableException", "no such execution")
        if execution.status != "InProgress":
            # https://docs.aws.amazon.com/codepipeline/latest/APIReference/API_StopPipelineExecution.html
            return api_error(
                "PipelineExecutionNotStoppableException",
                f"execution {execution.id} is {execution.status}, no longer in progress",
            )
        execution.status = "Stopping"
        execution.stopped_reason = str(request.get("reason") or "")
        return 200, {"pipelineExecutionId": execution.id}


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
        # A person's approvals, by stage (Review's are not counted); `reviewer` is the person: (stage, the
        # approval's message) -> approve? `approver` is the session ARN CodePipeline records for them.
        self.approvals: Counter[str] = Counter()
        # None: the person has not answered yet (the execution waits, holding its stage, until `decide`).
        self.reviewer: Callable[[str, str], bool | None] = lambda stage, message: True
        self.approver = f"arn:aws:sts::{world.accounts['beta']}:assumed-role/{APPROVER_ROLE}/reviewer"
        # The branch head as the pipeline last heard of it (a push or a release): what a push is compared with.
        self.branch_head: str | None = None
        self.counter = 0
        self.keep = keep
        self.cleaner = ThreadPoolExecutor(max_workers=1)
        self.pending: list[Future[None]] = []
        # The executions in flight, oldest first, and the applied definition's fingerprint as last seen.
        self.flights: list[Flight] = []
        self.version_seen: str | None = None
        services.version = self.definition_version

    def push(self, commit: str) -> Execution | None:
        """GitHub's push of the branch to `commit`, through the applied trigger: an execution queued, or None
        (and a NotStarted step saying which filter) when the trigger starts none for the files it changes."""
        definition = self.applied_definition()
        branch = definition.source_branch
        files = self.changed_files(commit)
        self.branch_head = commit
        refusal = trigger_refusal(definition.push_filters, branch, files)
        if refusal:
            self.record(Step("(none)", "(trigger)", f"push {commit[:10]}", 0.0, "NotStarted", refusal))
            return None
        return self.start(commit, PUSHED)

    def release(self, commit: str, by: str) -> Execution:
        """An operator's "Release change" (StartPipelineExecution) of `commit` as the session ARN `by`: no trigger
        filter applies. The rehearsal releases only the branch head, so later pushes are compared with it."""
        self.branch_head = commit
        return self.start(commit, ("StartPipelineExecution", by))

    def start(self, commit: str, trigger: tuple[str, str]) -> Execution:
        execution = Execution(id=new_execution_id(), commit=commit, trigger=trigger, version=self.definition_version())
        self.services.executions[execution.id] = execution
        self.services.queue.append(execution)
        return execution

    def changed_files(self, commit: str) -> list[str]:
        """The files a push to `commit` changes: the diff from the branch head the pipeline last heard of (renames
        as a removal and an addition, so a file moved out of docs/ counts); the first time, every file."""
        if self.branch_head is None:
            command = ["git", "ls-tree", "-r", "-z", "--name-only", commit]
        else:
            command = ["git", "diff", "-z", "--name-only", "--no-renames", self.branch_head, commit]
        listed = subprocess.run(command, cwd=self.repository, capture_output=True, text=True, check=True).stdout
        return [path for path in listed.split("\0") if path]

    def run_queue(self) -> list[Execution]:
        """Run the executions in flight, and those started meanwhile, until none can move: each has ended, or
        waits for a person (`decide`) or behind one that does. Returns the executions that ended during this
        call, in the order they started. See the module's docstring for the rounds and the stage locks."""
        ended: list[Execution] = []
        while True:
            self._board()
            moved = False
            for flight in list(self.flights):
                if flight in self.flights:
                    moved = self._move(flight, ended) or moved
            if not moved and not self.services.queue:
                order = list(self.services.executions)
                return sorted(ended, key=lambda execution: order.index(execution.id))

    def _board(self) -> None:
        """Executions started since the last round (a push, a release, StartPipelineExecution) join the flights."""
        while self.services.queue:
            execution = self.services.queue.pop(0)
            self.flights.append(Flight(execution, self._fly(execution, execution.position)))

    def _move(self, flight: Flight, ended: list[Execution]) -> bool:
        """One move of one execution: whether it did anything (ran an action, entered or ended a stage)."""
        execution = flight.execution
        if execution.status == "Stopping":
            # Stopped between actions (nothing of it is running here): it ends now, whether abandon or not.
            self._land(flight, ended, "Stopped", execution.stopped_reason)
            return True
        try:
            moved = next(flight.steps)
        except StopIteration:
            self.flights.remove(flight)
            ended.append(execution)
            moved = True
        if moved:
            self._cancel_outdated(ended)
        return moved

    def _land(self, flight: Flight, ended: list[Execution], status: str, why: str) -> None:
        """End an execution that is not running an action: its stage (and any approval token) is released."""
        execution = flight.execution
        where = execution.stage_in_progress or f"(before {execution.waiting_for or 'its next stage'})"
        flight.steps.close()
        execution.status = status
        execution.waiting_for = ""
        self.flights.remove(flight)
        ended.append(execution)
        self.record(Step(execution.id[:8], where, "(execution)", 0.0, status, why))

    def _cancel_outdated(self, ended: list[Execution]) -> None:
        """After an update of the pipeline's definition, every execution in flight that started on the previous one
        is Cancelled (the action that applied the update has completed by now)."""
        current = self.definition_version()
        if current == self.version_seen:
            return
        self.version_seen = current
        # Started but not yet in a round (queued before its Source) is in flight too, as AWS counts it.
        self._board()
        for flight in [f for f in self.flights if f.execution.version != current]:
            self._land(flight, ended, "Cancelled", CANCELLED)

    def definition_version(self) -> str:
        return definition_version(self.world)

    def applied_definition(self) -> Definition:
        return read_definition(self.world)

    def _fly(self, execution: Execution, start: int) -> Generator[bool, None, None]:
        """An execution from stage `start` on: every stage in order, each entered once no other execution holds
        it, until one fails or the execution is stopped. Yields after each move: True when it did something,
        False when it only waited."""
        definition = self.applied_definition()
        self.services.pipeline_name = definition.name
        execution.status = "InProgress"
        for index in range(start, len(definition.stages)):
            stage, actions = definition.stages[index]
            execution.position = index
            while (holder := self.holder(stage)) is not None:
                if execution.waiting_for != stage:
                    execution.waiting_for = stage
                    self.record(Step(execution.id[:8], stage, "(stage)", 0.0, "Waiting", f"locked by {holder[:8]}"))
                yield False
            execution.waiting_for = ""
            if not (yield from self.run_stage(definition, execution, stage, actions)):
                return
        execution.status = "Succeeded"

    def holder(self, stage: str) -> str | None:
        """The execution holding `stage` (its actions running, an approval waiting), if any."""
        held = [f.execution.id for f in self.flights if f.execution.stage_in_progress == stage]
        return held[0] if held else None

    def decide(self, execution: Execution, approved: bool) -> None:
        """A person's answer to the approval `execution` waits on (the reviewer said None: not yet)."""
        if execution.awaiting_person is None:
            raise RuntimeError(f"execution {execution.id[:8]} waits for no person's approval")
        execution.decisions[execution.awaiting_person] = approved

    def run_stage(
        self, definition: Definition, execution: Execution, stage: str, actions: list[Action]
    ) -> Generator[bool, None, bool]:
        """Enter the stage (its entry condition may wait for a window), then its actions by run order; False
        when the execution ends here (failed or stopped). The stage is held until it returns or is closed."""
        entered, why = self.enter(definition, execution, stage)
        if not entered:
            self.record(Step(execution.id[:8], stage, "(stage)", 0.0, "Failed", why))
            execution.status = "Failed"
            return False
        execution.entered[stage] = self.clock.now()
        execution.stage_in_progress = stage
        try:
            for _, group in itertools.groupby(actions, key=lambda action: action.run_order):
                if not (yield from self.run_group(definition, execution, list(group))):
                    return False
            return True
        finally:
            # Whatever ended the stage, no approval of it is still in progress (its token answers nothing now).
            execution.stage_in_progress = ""
            execution.pending.clear()
            execution.awaiting_person = None

    def run_group(
        self, definition: Definition, execution: Execution, group: list[Action]
    ) -> Generator[bool, None, bool]:
        """One run order of a stage: its approvals are put in progress first (each with a fresh token), so that a
        build beside them (Review) can answer one; then its CodeBuild actions run; then each approval is
        settled, after a person's answer if it needs one. False when the execution ends here. Actions done
        already (a retry) are not run again."""
        todo = [action for action in group if (action.stage, action.name) not in execution.done_actions]
        approvals = [action for action in todo if action.category == "Approval"]
        for approval in approvals:
            key = (approval.stage, approval.name)
            execution.answers.pop(key, None)
            execution.pending[key] = str(uuid.uuid4())
        for action in todo:
            if action.category == "Approval":
                continue
            if not self.run_step(definition, execution, action):
                return False
            yield True
        for approval in approvals:
            yield from self.ask_person(execution, approval)
            if not self.run_step(definition, execution, approval):
                return False
            yield True
        return True

    def ask_person(self, execution: Execution, action: Action) -> Generator[bool, None, None]:
        """An approval no build answered goes to the person (`reviewer`); one who has not answered yet (None)
        keeps the execution in its stage until `decide` gives the answer."""
        key = (action.stage, action.name)
        if key in execution.answers or key in execution.decisions:
            return
        try:
            message = substitute(action.configuration.get("CustomData", ""), execution, action.name)
        except UnresolvedVariableError:
            return  # nothing to ask: the approval fails as it settles

        decision = self.reviewer(action.stage, message)
        if decision is not None:
            execution.decisions[key] = decision
            return
        execution.awaiting_person = key
        self.record(Step(execution.id[:8], action.stage, action.name, 0.0, "Waiting", f"for a person: {message[:120]}"))
        while key not in execution.decisions:
            yield False
        execution.awaiting_person = None

    def run_step(self, definition: Definition, execution: Execution, action: Action) -> bool:
        """Run one action and record its step; False when it failed or the execution was stopped meanwhile."""
        started = time.monotonic()
        ok, detail = self.run_action(definition, execution, action)
        short = execution.id[:8]
        if execution.status == "Stopping":
            execution.status = "Stopped"
            self.record(
                Step(short, action.stage, action.name, time.monotonic() - started, "Stopped", execution.stopped_reason)
            )
            return False
        result = "Succeeded" if ok else "Failed"
        self.record(Step(short, action.stage, action.name, time.monotonic() - started, result, detail))
        if not ok:
            execution.status = "Failed"
            return False
        execution.done_actions.add((action.stage, action.name))
        return True

    def retry_failed(self, execution: Execution) -> None:
        """CodePipeline's "Retry failed actions": the same execution, artifacts and variables, from the stage it
        failed in (its actions done already are not run again); then the flights run until none can move."""
        if execution.status != "Failed":
            raise RuntimeError(f"execution {execution.id} did not fail: nothing to retry")
        execution.status = "InProgress"
        self.flights.append(Flight(execution, self._fly(execution, execution.position)))
        self.run_queue()

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
        """Whether the stage is entered, as CodePipeline evaluates its entry condition: a DeploymentWindow rule
        waits, its condition in progress, until the window opens (tools/rehearse/window.py quotes AWS), and
        only then is the stage entered; a window that never opens fails the condition, so the stage. The
        pipeline's conditions are FAIL conditions of DeploymentWindow rules alone (modules/pipeline.py), so
        the rehearsal models nothing else: any other condition stops it rather than being guessed at."""
        condition = definition.entry.get(stage)
        if condition is None:
            return True, ""
        if condition.result != "FAIL":
            raise RuntimeError(
                f"stage {stage}: the rehearsal models FAIL entry conditions only, not {condition.result}"
            )
        windows = []
        for rule in condition.rules:
            provider = blocks(rule["rule_type_id"])[0]["provider"]
            if provider != "DeploymentWindow":
                raise RuntimeError(
                    f"stage {stage}: entry condition rule {rule['name']} is {provider}: the rehearsal models "
                    "DeploymentWindow rules only"
                )
            settings = rule["configuration"]
            try:
                windows.append((rule["name"], Window.parse(settings["Cron"], settings.get("TimeZone", "UTC"))))
            except ValueError as error:
                raise RuntimeError(f"stage {stage}: DeploymentWindow rule {rule['name']}: {error}") from None
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
            return self.settle(execution, action)
        return self.codebuild(definition, execution, action)

    def settle(self, execution: Execution, action: Action) -> tuple[bool, str]:
        """The approval's outcome: the answer PutApprovalResult gave while it was in progress (Review's), else
        the person's (asked by `ask_person`), which alone counts in `approvals`."""
        key = (action.stage, action.name)
        execution.pending.pop(key, None)
        answer = execution.answers.get(key)
        if answer is not None:
            if answer.status != "Approved":
                return False, f"rejected by {answer.through} ({answer.by}): {answer.summary[:160]}"
            execution.approvers[key] = answer.by
            return True, f"approved by {answer.through} ({answer.by}): {answer.summary[:160]}"
        try:
            message = substitute(action.configuration.get("CustomData", ""), execution, action.name)
        except UnresolvedVariableError as unresolved:
            return False, str(unresolved)
        if not execution.decisions.pop(key, False):
            return False, f"rejected by the rehearsal (a person): {message[:160]}"
        self.approvals[action.stage] += 1
        execution.approvers[key] = self.approver
        return True, f"approved by the rehearsal (a person): {message[:160]}"

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
        try:
            action_variables = {
                v["name"]: substitute(v["value"], execution, action.name)
                for v in json.loads(action.configuration.get("EnvironmentVariables") or "[]")
            }
        except UnresolvedVariableError as unresolved:
            return False, str(unresolved)
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
        # The build's CodePipeline calls are its role's session's: who started an execution, who answered an approval.
        role_account, role_name = (
            definition.roles[project_name].split(":")[4],
            definition.roles[project_name].rsplit("/", 1)[-1],
        )
        self.services.caller = f"arn:aws:sts::{role_account}:assumed-role/{role_name}/codebuild"
        self.services.calling_action = action.name
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
                s
                for s in [*self.stand_ins, *self.machine.stand_ins]
                if s.project_kind in (kind, EVERY_PROJECT) and s.mode in (None, action_variables.get("MODE"))
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
