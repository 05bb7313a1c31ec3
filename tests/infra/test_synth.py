"""Whole-synth properties: the stack set, snapshots, no secrets, every provider and backend wired right."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from tests.infra.conftest import SENTINELS, STAGES, Document, data_sources, resources
from tools.requirements import PROJECT_ROOT


@pytest.fixture
def json_snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


def test_every_stack_matches_its_snapshot(stacks: dict[str, Document], json_snapshot: SnapshotAssertion) -> None:
    """Any change to the synthesized JSON shows up here; accept it with `make snapshots` after review."""
    for name, document in stacks.items():
        assert document == json_snapshot(name=name)


@pytest.mark.req("R5.2")
def test_no_secret_value_reaches_the_synthesized_json(synth_outdir: Path) -> None:
    everything = "\n".join(path.read_text(errors="replace") for path in synth_outdir.rglob("*") if path.is_file())
    assert "cdk.tf.json" in "\n".join(str(p) for p in synth_outdir.rglob("*"))
    for name, value in SENTINELS.items():
        assert value not in everything, f"the value of {name} leaked into cdktf.out"


@pytest.mark.req("R6.2")
def test_each_stage_is_a_bootstrap_stack_and_one_workload_stack(stacks: dict[str, Document]) -> None:
    """`cdktn deploy beta` deploys beta: its network, backend and frontend are one state (stacks/workload.py)."""
    expected = {name for stage in STAGES for name in (f"bootstrap-{stage}", stage)} | {"pipeline"}
    assert set(stacks) == expected
    for stage in STAGES:
        document = stacks[stage]
        assert not data_sources(document, "terraform_remote_state"), f"{stage} reads no other state"
        assert document["terraform"]["backend"]["s3"]["key"] == f"{stage}/terraform.tfstate"
        for kind in ("aws_vpc", "aws_ecs_service", "aws_cloudfront_distribution"):
            assert resources(document, kind), f"{stage} holds its {kind}"


@pytest.mark.req("R4.8", "R4.6")
@pytest.mark.parametrize("stage", STAGES)
def test_providers_pin_the_stage_account_and_assume_the_deploy_role_outside_beta(
    stacks: dict[str, Document], stage: str
) -> None:
    accounts = {"beta": "111111111111", "gamma": "222222222222", "prod": "333333333333"}
    for name, document in stacks.items():
        if not (name.startswith(f"{stage}-") or name == f"bootstrap-{stage}"):
            continue
        for provider in document["provider"]["aws"]:
            assert provider["allowed_account_ids"] == [accounts[stage]], name
            assert provider["default_tags"][0]["tags"]["stage"] == stage
            assert {"application", "managed-by"} <= set(provider["default_tags"][0]["tags"])
            role = provider.get("assume_role")
            if stage == "beta" or name.startswith("bootstrap-"):
                assert role is None, f"{name} must use the caller's own credentials"
            else:
                assert role == [
                    {
                        "role_arn": f"arn:aws:iam::{accounts[stage]}:role/canvalo/canvalo-deploy",
                        "session_name": f"terraform-{name}",
                    }
                ]


@pytest.mark.req("R6.2", "R4.6")
def test_every_deployed_stack_keeps_its_own_encrypted_locked_state(stacks: dict[str, Document]) -> None:
    keys = set()
    for name, document in stacks.items():
        backend = document["terraform"]["backend"]
        if name.startswith("bootstrap-"):
            assert "local" in backend, "bootstrap stacks start on local state until their bucket exists"
            continue
        s3 = backend["s3"]
        stage = name.split("-")[0] if name != "pipeline" else "beta"
        account = s3["allowed_account_ids"][0]
        assert s3["bucket"] == f"canvalo-tfstate-{account}-eu-west-1"
        assert s3["key"] == f"{name}/terraform.tfstate"
        assert s3["encrypt"] is True and s3["use_lockfile"] is True
        assert s3["dynamodb_table"] == "canvalo-tfstate-lock"
        if stage == "beta":
            assert "assume_role" not in s3
        else:
            assert s3["assume_role"]["role_arn"].endswith(":role/canvalo/canvalo-deploy")
        keys.add((s3["bucket"], s3["key"]))
    assert len(keys) == len([n for n in stacks if not n.startswith("bootstrap-")])


@pytest.mark.req("R6.3")
def test_no_account_id_is_written_in_the_infrastructure_code() -> None:
    code = [*PROJECT_ROOT.glob("stacks/*.py"), *PROJECT_ROOT.glob("modules/*.py"), PROJECT_ROOT / "main.py"]
    # config.py is where configuration lives: it names the placeholder ids to refuse them.
    for path in [p for p in code if p.name != "config.py"]:
        found = re.findall(r"(?<![\d.])\d{12}(?![\d.])", path.read_text())
        assert not found, f"{path.name} hard-codes account ids {found}: take them from StageConfig"


@pytest.mark.req("R2.2")
def test_security_groups_keep_their_rules_only_in_rule_resources(stacks: dict[str, Document]) -> None:
    """terraform-provider-aws: in-line `ingress`/`egress` on aws_security_group, even `[]`, conflict with
    aws_vpc_security_group_*_rule resources, and every other apply revokes those rules."""
    checked = 0
    for name, document in stacks.items():
        groups = resources(document, "aws_security_group")
        for key, group in groups.items():
            assert not {"ingress", "egress"} & set(group), f"{name}: aws_security_group.{key} has in-line rules"
        rules = [
            *resources(document, "aws_vpc_security_group_ingress_rule").values(),
            *resources(document, "aws_vpc_security_group_egress_rule").values(),
        ]
        assert not resources(document, "aws_security_group_rule"), f"{name}: use the aws_vpc_* rule resources"
        ruled = {rule["security_group_id"] for rule in rules}
        assert ruled == {f"${{aws_security_group.{key}.id}}" for key in groups}, (
            f"{name}: every group's rules are rule resources on a group of this stack"
        )
        checked += len(groups)
    assert checked, "no security group was synthesized: the test checks nothing"


def test_no_lifecycle_rule_has_an_empty_filter(stacks: dict[str, Document]) -> None:
    """An empty `filter {}` draws the provider's "Invalid Attribute Combination" warning, an error in a
    future version: a rule for every object says so with `prefix = ""`."""
    checked = 0
    for name, document in stacks.items():
        for key, configuration in resources(document, "aws_s3_bucket_lifecycle_configuration").items():
            for rule in configuration["rule"]:
                filters = rule.get("filter") or []
                assert len(filters) == 1 and filters[0], f"{name}: {key} rule {rule['id']} has no explicit filter"
                checked += 1
    assert checked, "no lifecycle rule was synthesized: the test checks nothing"
