"""A VPC with public and private subnets across availability zones, NAT, and flow logs."""

from __future__ import annotations

import ipaddress

from cdktn import Fn, TerraformResourceLifecycle
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.data_aws_availability_zones import DataAwsAvailabilityZones, DataAwsAvailabilityZonesFilter
from cdktn_provider_aws.default_security_group import DefaultSecurityGroup
from cdktn_provider_aws.eip import Eip
from cdktn_provider_aws.flow_log import FlowLog
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.internet_gateway import InternetGateway
from cdktn_provider_aws.nat_gateway import NatGateway
from cdktn_provider_aws.route import Route
from cdktn_provider_aws.route_table import RouteTable
from cdktn_provider_aws.route_table_association import RouteTableAssociation
from cdktn_provider_aws.subnet import Subnet
from cdktn_provider_aws.vpc import Vpc
from constructs import Construct

from modules.iam import assume_role_document, policy_document, statement
from modules.logs import LOG_RETENTION_DAYS


def subnet_cidrs(vpc_cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """Public and private subnet CIDRs, one of each per zone, cut from the VPC in sixteenths."""
    sixteenths = list(ipaddress.IPv4Network(vpc_cidr).subnets(prefixlen_diff=4))
    public = [str(net) for net in sixteenths[:zones]]
    private = [str(net) for net in sixteenths[8 : 8 + zones]]
    return public, private


# The availability zones a network spans unless told otherwise: stacks/config.py NETWORK_ZONES bounds nat_gateways
# by it (tests/infra/test_network.py holds the two equal).
ZONES = 2


class Network(Construct):
    """VPC across `zones` availability zones; `nat_gateways` NATs, private route tables share them in turn.

    One NAT is cheaper but makes every private subnet depend on one zone; one per zone keeps a zone's
    outage from cutting the others off.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        cidr: str,
        # Two zones is what R2.5 asks (the service survives one zone's loss) and what every stage runs.
        zones: int = ZONES,
        nat_gateways: int,
        flow_log_group_name: str,
        flow_log_retention_days: int = LOG_RETENTION_DAYS,
        role_name: str,
        role_path: str,
        permissions_boundary_arn: str,
        protected: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.zone_names = self._zone_names(zones)
        self.vpc = Vpc(
            self,
            "vpc",
            cidr_block=cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": name},
        )
        # The default security group would otherwise allow all traffic between its members.
        DefaultSecurityGroup(self, "default-security-group", vpc_id=self.vpc.id, ingress=[], egress=[])
        internet_gateway = InternetGateway(self, "internet-gateway", vpc_id=self.vpc.id, tags={"Name": name})

        public_cidrs, private_cidrs = subnet_cidrs(cidr, zones)
        self.public_subnets = self._public_subnets(name, public_cidrs, internet_gateway)
        nats = self._nat_gateways(name, nat_gateways, internet_gateway)
        self.private_subnets = self._private_subnets(name, private_cidrs, nats)

        self.flow_log_group = CloudwatchLogGroup(
            self,
            "flow-log-group",
            name=flow_log_group_name,
            retention_in_days=flow_log_retention_days,
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if protected else None,
        )
        self._flow_log(role_name=role_name, role_path=role_path, permissions_boundary_arn=permissions_boundary_arn)

    def _zone_names(self, zones: int) -> list[str]:
        # The region's own zones whatever their state, so the list (sorted by name) never shifts: with
        # state="available", one impaired zone would move every later index and replace their subnets
        # and NAT gateways. opt-in-not-required leaves out Local and Wavelength Zones.
        regional = DataAwsAvailabilityZones(
            self,
            "zones",
            filter=[DataAwsAvailabilityZonesFilter(name="opt-in-status", values=["opt-in-not-required"])],
        )
        return [Fn.element(regional.names, index) for index in range(zones)]

    def _public_subnets(self, name: str, cidrs: list[str], internet_gateway: InternetGateway) -> list[Subnet]:
        """One public subnet a zone, all routed through one route table to the internet gateway."""
        public_routes = RouteTable(self, "public-routes", vpc_id=self.vpc.id, tags={"Name": f"{name}-public"})
        Route(
            self,
            "public-default-route",
            route_table_id=public_routes.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=internet_gateway.id,
        )
        subnets: list[Subnet] = []
        for index, zone in enumerate(self.zone_names):
            public = Subnet(
                self,
                f"public-{index}",
                vpc_id=self.vpc.id,
                cidr_block=cidrs[index],
                availability_zone=zone,
                tags={"Name": f"{name}-public-{index}", "tier": "public"},
            )
            RouteTableAssociation(self, f"public-{index}-routes", subnet_id=public.id, route_table_id=public_routes.id)
            subnets.append(public)
        return subnets

    def _nat_gateways(self, name: str, count: int, internet_gateway: InternetGateway) -> list[NatGateway]:
        """`count` NAT gateways, each with its own address, in the first `count` public subnets."""
        nats = []
        for index in range(count):
            address = Eip(self, f"nat-{index}-address", domain="vpc", tags={"Name": f"{name}-nat-{index}"})
            nats.append(
                NatGateway(
                    self,
                    f"nat-{index}",
                    allocation_id=address.id,
                    subnet_id=self.public_subnets[index].id,
                    tags={"Name": f"{name}-nat-{index}"},
                    depends_on=[internet_gateway],
                )
            )
        return nats

    def _private_subnets(self, name: str, cidrs: list[str], nats: list[NatGateway]) -> list[Subnet]:
        """One private subnet a zone, each with its own route table out through the NATs in turn."""
        subnets: list[Subnet] = []
        for index, zone in enumerate(self.zone_names):
            private = Subnet(
                self,
                f"private-{index}",
                vpc_id=self.vpc.id,
                cidr_block=cidrs[index],
                availability_zone=zone,
                tags={"Name": f"{name}-private-{index}", "tier": "private"},
            )
            routes = RouteTable(
                self, f"private-{index}-routes", vpc_id=self.vpc.id, tags={"Name": f"{name}-private-{index}"}
            )
            Route(
                self,
                f"private-{index}-default-route",
                route_table_id=routes.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nats[index % len(nats)].id,
            )
            RouteTableAssociation(
                self, f"private-{index}-route-association", subnet_id=private.id, route_table_id=routes.id
            )
            subnets.append(private)
        return subnets

    def _flow_log(self, *, role_name: str, role_path: str, permissions_boundary_arn: str) -> None:
        """All of the VPC's traffic logged to `flow_log_group`, written by a role that may do nothing else."""
        trust = assume_role_document(self, "flow-log-trust", principals={"Service": ["vpc-flow-logs.amazonaws.com"]})
        flow_log_role = IamRole(
            self,
            "flow-log-role",
            name=role_name,
            path=role_path,
            assume_role_policy=trust.json,
            permissions_boundary=permissions_boundary_arn,
        )
        write_logs = policy_document(
            self,
            "flow-log-permissions",
            [
                statement(
                    sid="WriteFlowLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    resources=[self.flow_log_group.arn, f"{self.flow_log_group.arn}:*"],
                )
            ],
        )
        IamRolePolicy(self, "flow-log-policy", role=flow_log_role.name, name="write-flow-logs", policy=write_logs.json)
        FlowLog(
            self,
            "flow-log",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=self.flow_log_group.arn,
            iam_role_arn=flow_log_role.arn,
            max_aggregation_interval=60,
        )
