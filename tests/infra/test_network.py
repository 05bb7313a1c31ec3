"""`<stage>-network`: VPC, subnets across zones, NAT by stage, flow logs (R2.5)."""

from __future__ import annotations

import ipaddress

import pytest

from tests.infra.conftest import NETWORK, STAGES, Document, data_sources, one, part, policy_statements, resources

NAT_GATEWAYS = {"beta": 1, "gamma": 1, "prod": 2}


@pytest.mark.req("R2.5")
@pytest.mark.parametrize("stage", STAGES)
def test_public_and_private_subnets_in_at_least_two_zones(stacks: dict[str, Document], stage: str) -> None:
    document = part(stacks[stage], NETWORK)
    vpc = one(document, "aws_vpc")
    subnets = resources(document, "aws_subnet").values()
    public = [s for s in subnets if s["tags"]["tier"] == "public"]
    private = [s for s in subnets if s["tags"]["tier"] == "private"]
    assert len(public) >= 2 and len(private) >= 2
    assert len({s["availability_zone"] for s in public}) == len(public)
    assert {s["availability_zone"] for s in public} == {s["availability_zone"] for s in private}
    network = ipaddress.IPv4Network(vpc["cidr_block"])
    blocks = [ipaddress.IPv4Network(s["cidr_block"]) for s in subnets]
    assert all(block.subnet_of(network) for block in blocks)
    assert not any(a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])


@pytest.mark.req("R2.5")
@pytest.mark.parametrize("stage", STAGES)
def test_private_subnets_reach_out_through_the_stages_nat_gateways(stacks: dict[str, Document], stage: str) -> None:
    document = part(stacks[stage], NETWORK)
    nats = resources(document, "aws_nat_gateway")
    assert len(nats) == NAT_GATEWAYS[stage]
    assert all("public" in nat["subnet_id"] for nat in nats.values())
    routes = resources(document, "aws_route").values()
    to_nat = [r for r in routes if "nat_gateway_id" in r]
    to_internet = [r for r in routes if "gateway_id" in r]
    assert len(to_nat) == 2 and len(to_internet) == 1
    assert {r["nat_gateway_id"] for r in to_nat} == {f"${{aws_nat_gateway.{name}.id}}" for name in nats}
    one(document, "aws_internet_gateway")


@pytest.mark.parametrize("stage", STAGES)
def test_flow_logs_go_to_cloudwatch_through_a_bounded_role(stacks: dict[str, Document], stage: str) -> None:
    document = part(stacks[stage], NETWORK)
    flow_log = one(document, "aws_flow_log")
    assert flow_log["traffic_type"] == "ALL" and flow_log["log_destination_type"] == "cloud-watch-logs"
    group = one(document, "aws_cloudwatch_log_group")
    assert group["retention_in_days"] == 30
    assert ("lifecycle" in group) is (stage == "prod")
    role = one(document, "aws_iam_role")
    assert role["permissions_boundary"].endswith(":policy/canvalo/canvalo-workload-boundary")
    (write,) = policy_statements(document, one(document, "aws_iam_role_policy")["policy"])
    assert all(resource.startswith("${aws_cloudwatch_log_group.") for resource in write["resources"])


@pytest.mark.parametrize("stage", STAGES)
def test_default_security_group_allows_nothing(stacks: dict[str, Document], stage: str) -> None:
    group = one(part(stacks[stage], NETWORK), "aws_default_security_group")
    assert group["ingress"] == [] and group["egress"] == []


@pytest.mark.req("R2.5")
@pytest.mark.parametrize("stage", STAGES)
def test_subnet_zones_come_from_a_list_that_an_impaired_zone_cannot_reorder(
    stacks: dict[str, Document], stage: str
) -> None:
    (zones,) = data_sources(part(stacks[stage], NETWORK), "aws_availability_zones").values()
    assert "state" not in zones, "filtering on state='available' shifts every zone after an impaired one"
    assert zones["filter"] == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]


@pytest.mark.req("R2.5")
def test_nat_gateways_are_bounded_by_the_zones_the_network_spans() -> None:
    """Not a setting: every network spans modules/network.py's ZONES, which config's bound on nat_gateways uses."""
    from modules.network import ZONES
    from stacks.config import NETWORK_ZONES, ConfigError
    from tests.support.config import fixture_project

    assert ZONES == NETWORK_ZONES == 2
    assert fixture_project({"CANVALO_PROD_NAT_GATEWAYS": "2"}).stage("prod").nat_gateways == 2
    with pytest.raises(ConfigError, match="nat_gateways=3 is invalid: use 1 to 2"):
        fixture_project({"CANVALO_PROD_NAT_GATEWAYS": "3"})
