"""The rehearsal's QUEUED scheduler (tools/rehearse/pipeline.py `Pipeline.run_queue`), with scripted actions
instead of builds: no moto, no CodeBuild. Each stage holds at most one execution; one that finished a stage waits
before the next while another holds it; a person's pending approval holds its stage; an update of the applied
definition cancels the executions that started on the previous one, as AWS documents QUEUED mode and
`Cancelled` (the module's docstring quotes both)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest

from tools.rehearse.codebuild import Machine
from tools.rehearse.pipeline import PUSHED, Action, Definition, Execution, Pipeline, Services, Step
from tools.rehearse.world import World

PROD = "Prod"
Hook = Callable[[Execution], None]


def stage(name: str, *actions: tuple[str, str, int]) -> tuple[str, list[Action]]:
    return name, [
        Action(name, action, category, run_order, {}, [], [], None) for action, category, run_order in actions
    ]


DEPLOYMENT = (("Plan", "Build", 1), ("Approve", "Approval", 2), ("Apply", "Build", 3))
STAGES = [
    stage("Source", ("Source", "Source", 1)),
    stage("Build", ("Build", "Build", 1)),
    stage("Beta", *DEPLOYMENT),
    stage("Gamma", *DEPLOYMENT),
    stage(PROD, *DEPLOYMENT),
]


class Scripted(Pipeline):
    """The rehearsal's Pipeline with every non-approval action succeeding at once (a hook may act as it runs:
    update the definition, start or stop an execution); approvals are settled by the real code."""

    def __init__(self, root: Path) -> None:
        self.steps: list[Step] = []
        self.ran: list[tuple[str, str, str]] = []
        self.hooks: dict[tuple[str, str, str], Hook] = {}
        self.version = "v1"
        world = World(endpoint="http://127.0.0.1:9", region="eu-west-1", accounts={"beta": "444444444444"})
        super().__init__(
            world=world,
            machine=cast(Machine, None),
            services=Services(world),
            repository=root,
            root=root,
            stand_ins=[],
            record=self.steps.append,
        )

    def applied_definition(self) -> Definition:
        return Definition(name="canvalo", stages=STAGES, projects={}, roles={})

    def definition_version(self) -> str:
        return self.version

    def run_action(self, definition: Definition, execution: Execution, action: Action) -> tuple[bool, str]:
        if action.category == "Approval":
            return self.settle(execution, action)
        # The lock: whoever runs an action of a stage holds it, and nobody else does.
        holders = [f.execution.commit for f in self.flights if f.execution.stage_in_progress == action.stage]
        assert holders == [execution.commit], f"{action.stage} held by {holders} while {execution.commit} runs"
        self.ran.append((execution.commit, action.stage, action.name))
        hook = self.hooks.get((execution.commit, action.stage, action.name))
        if hook is not None:
            hook(execution)
        return True, ""

    def index(self, commit: str, stage_name: str, action: str) -> int:
        return self.ran.index((commit, stage_name, action))


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Scripted]:
    scripted = Scripted(tmp_path)
    try:
        yield scripted
    finally:
        scripted.services.close()
        scripted.close()


def hold_prod(stage_name: str, message: str) -> bool | None:
    """A person who has not answered prod's approval yet, and approves any other at once."""
    return None if stage_name == PROD else True


@pytest.mark.req("R4.1")
def test_two_executions_interleave_stage_by_stage_and_reach_prod_oldest_first(pipeline: Scripted) -> None:
    first, second = pipeline.start("one", PUSHED), pipeline.start("two", PUSHED)
    ended = pipeline.run_queue()
    assert [e.status for e in ended] == ["Succeeded", "Succeeded"] and ended == [first, second]
    # The newer one plans Beta only once the older left it, and while the older is still on its way to prod.
    assert pipeline.index("one", "Beta", "Apply") < pipeline.index("two", "Beta", "Plan")
    assert pipeline.index("two", "Beta", "Plan") < pipeline.index("one", PROD, "Plan")
    assert pipeline.index("one", PROD, "Apply") < pipeline.index("two", PROD, "Plan")
    # One after another in each stage (the lock), never one after the other for the whole pipeline: the newer
    # one's Source runs as soon as the older left Source.
    assert pipeline.index("one", "Build", "Build") < pipeline.index("two", "Source", "Source")
    assert pipeline.index("two", "Source", "Source") < pipeline.index("one", "Beta", "Plan")


@pytest.mark.req("R4.1")
def test_a_pending_approval_holds_its_stage_and_the_next_execution_waits_before_it(pipeline: Scripted) -> None:
    pipeline.reviewer = hold_prod
    first = pipeline.start("one", PUSHED)
    assert pipeline.run_queue() == []
    assert first.awaiting_person == (PROD, "Approve") and first.stage_in_progress == PROD
    second = pipeline.start("two", PUSHED)
    assert pipeline.run_queue() == []
    # The second ran Beta and Gamma whole, and waits before Prod, in progress, while the first holds it.
    assert ("two", "Gamma", "Apply") in pipeline.ran and ("two", PROD, "Plan") not in pipeline.ran
    assert (second.status, second.waiting_for, second.stage_in_progress) == ("InProgress", PROD, "")
    assert [s.detail for s in pipeline.steps if s.result == "Waiting" and s.execution == second.id[:8]] == [
        f"locked by {first.id[:8]}"
    ]
    # An execution that waits for no person cannot be answered for.
    with pytest.raises(RuntimeError, match="waits for no person"):
        pipeline.decide(second, True)
    pipeline.decide(first, True)
    pipeline.reviewer = lambda stage_name, message: True
    assert [e.status for e in pipeline.run_queue()] == ["Succeeded", "Succeeded"]
    assert pipeline.index("one", PROD, "Apply") < pipeline.index("two", PROD, "Plan")
    assert pipeline.approvals[PROD] == 2


@pytest.mark.req("R4.1")
def test_a_rejection_by_the_person_fails_the_execution_and_frees_the_stage(pipeline: Scripted) -> None:
    pipeline.reviewer = hold_prod
    first = pipeline.start("one", PUSHED)
    pipeline.run_queue()
    second = pipeline.start("two", PUSHED)
    pipeline.run_queue()
    pipeline.decide(first, False)
    pipeline.reviewer = lambda stage_name, message: True
    assert [e.status for e in pipeline.run_queue()] == ["Failed", "Succeeded"]
    assert ("one", PROD, "Apply") not in pipeline.ran and ("two", PROD, "Apply") in pipeline.ran
    assert second.waiting_for == ""


def update_and_restart(pipeline: Scripted, stop_itself: bool) -> Hook:
    """What UpdatePipeline does when the pipeline stack changed: the definition is applied, a new execution of
    the branch head starts (on the new definition), and the build stops its own execution (abandon)."""

    def hook(execution: Execution) -> None:
        pipeline.version = "v2"
        pipeline.start("", ("StartPipelineExecution", "the update role"))
        if stop_itself:
            status, _ = pipeline.services.stop_pipeline_execution(
                {"pipelineExecutionId": execution.id, "abandon": True, "reason": "restarted"}
            )
            assert status == 200

    return hook


@pytest.mark.req("R4.4")
def test_a_pipeline_update_cancels_the_executions_in_flight_and_the_restart_runs_on(pipeline: Scripted) -> None:
    pipeline.reviewer = hold_prod
    first = pipeline.start("one", PUSHED)
    pipeline.run_queue()
    token = first.pending[(PROD, "Approve")]
    pipeline.hooks[("two", "Build", "Build")] = update_and_restart(pipeline, stop_itself=True)
    pipeline.reviewer = lambda stage_name, message: True
    second = pipeline.start("two", PUSHED)
    ended = pipeline.run_queue()
    restarted = ended[-1]
    assert [(e.commit, e.status) for e in ended] == [("one", "Cancelled"), ("two", "Stopped"), ("", "Succeeded")]
    assert restarted.trigger[0] == "StartPipelineExecution" and restarted.version == "v2"
    # The cancelled one's approval is gone with it: its token answers nothing, and it applied nothing.
    assert first.pending == {} and first.stage_in_progress == "" and ("one", PROD, "Apply") not in pipeline.ran
    status, answer = pipeline.services.put_approval_result(
        {
            "pipelineName": "canvalo",
            "stageName": PROD,
            "actionName": "Approve",
            "token": token,
            "result": {"status": "Approved", "summary": "too late"},
        }
    )
    assert (status, answer["__type"]) == (400, "InvalidApprovalTokenException")
    # Nothing of the stopped one ran after its build; the restart went all the way.
    assert ("two", "Beta", "Plan") not in pipeline.ran and ("", PROD, "Apply") in pipeline.ran
    cancelled = [s for s in pipeline.steps if s.result == "Cancelled"]
    assert [(s.execution, s.stage) for s in cancelled] == [(first.id[:8], PROD)]
    assert "definition was updated" in cancelled[0].detail
    # Stopping an execution that is no longer in progress is refused, as AWS does.
    status, answer = pipeline.services.stop_pipeline_execution({"pipelineExecutionId": second.id})
    assert (status, answer["__type"]) == (400, "PipelineExecutionNotStoppableException")


@pytest.mark.req("R4.4")
def test_the_action_that_applied_an_update_completes_and_then_its_execution_is_cancelled(pipeline: Scripted) -> None:
    pipeline.hooks[("one", "Build", "Build")] = update_and_restart(pipeline, stop_itself=False)
    first = pipeline.start("one", PUSHED)
    ended = pipeline.run_queue()
    assert [(e.commit, e.status) for e in ended] == [("one", "Cancelled"), ("", "Succeeded")]
    built = [s for s in pipeline.steps if s.execution == first.id[:8] and s.action == "Build"]
    assert [s.result for s in built] == ["Succeeded"] and ("one", "Beta", "Plan") not in pipeline.ran
