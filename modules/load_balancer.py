"""An Application Load Balancer in front of one HTTP service, with access logs in a private bucket.

Internet-facing in public subnets, or internal in private subnets for a CloudFront VPC origin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdktn_provider_aws.data_aws_ec2_managed_prefix_list import DataAwsEc2ManagedPrefixList
from cdktn_provider_aws.data_aws_elb_service_account import DataAwsElbServiceAccount
from cdktn_provider_aws.lb import Lb, LbAccessLogs
from cdktn_provider_aws.lb_listener import LbListener, LbListenerDefaultAction, LbListenerDefaultActionRedirect
from cdktn_provider_aws.lb_target_group import LbTargetGroup, LbTargetGroupHealthCheck
from cdktn_provider_aws.security_group import SecurityGroup
from cdktn_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from modules.iam import statement
from modules.private_bucket import PrivateBucket

# TLS 1.3 with TLS 1.2 for older clients, forward-secret ciphers only.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
ACCESS_LOG_PREFIX = "alb"
# The AWS-managed prefix list of CloudFront's origin-facing addresses, the same name in every region.
CLOUDFRONT_ORIGIN_FACING = "com.amazonaws.global.cloudfront.origin-facing"


@dataclass(frozen=True)
class TargetHealthCheck:
    """How the ALB decides a target is out of rotation: `unhealthy_threshold` failed checks in a row,
    `interval_seconds` apart, so an unresponsive target stops getting requests within
    `seconds_to_out_of_rotation` (R2.3)."""

    path: str = "/health"
    interval_seconds: int = 10
    timeout_seconds: int = 5
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2

    @property
    def seconds_to_out_of_rotation(self) -> int:
        # The first failed check can start right after the last good one, and the last one may time out.
        return self.interval_seconds * self.unhealthy_threshold + self.timeout_seconds

    @property
    def seconds_to_in_rotation(self) -> int:
        return self.interval_seconds * self.healthy_threshold


@dataclass(frozen=True, kw_only=True)
class Ingress:
    """Who may reach the listener ports: IPv4 CIDR blocks, and AWS-managed prefix lists by name."""

    cidrs: Sequence[str] = ()
    managed_prefix_lists: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not (self.cidrs or self.managed_prefix_lists):
            raise ValueError("Ingress needs at least one CIDR block or managed prefix list")


@dataclass(frozen=True)
class HttpsListener:
    """Terminate TLS with this (validated) certificate on 443; port 80 only redirects to it."""

    certificate_arn: str


class LoadBalancer(Construct):
    """ALB in `subnet_ids` that forwards to an ip target group on `target_port`, round robin (R2.2).

    Without `https` it listens on HTTP 80 (beta/gamma, R8.4); with it, HTTPS 443 with `TLS_POLICY` and
    an HTTP 80 listener that only redirects (R8.5). Invalid header fields are dropped. Access logs go to
    a `PrivateBucket` with SSE-S3, the only encryption ELB log delivery supports, expiring after
    `access_log_days` (R11.2). `protected` turns on deletion protection for the ALB and its log bucket.
    `internal` gives it private addresses only (pass private subnets): nothing on the internet can
    connect to it, and a CloudFront VPC origin reaches it from inside the VPC. The security group
    admits the listener ports from `ingress` only; egress to the targets is added by whoever owns them
    (`security_group`), so the ALB reaches nothing else.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        vpc_id: str,
        subnet_ids: Sequence[str],
        account_id: str,
        access_log_bucket_name: str,
        access_log_days: int = 90,
        target_port: int,
        health_check: TargetHealthCheck,
        deregistration_delay_seconds: int,
        https: HttpsListener | None,
        protected: bool,
        internal: bool,
        ingress: Ingress,
    ) -> None:
        super().__init__(scope, construct_id)
        self.health_check = health_check
        self.access_logs = self._access_log_bucket(
            bucket_name=access_log_bucket_name, account_id=account_id, days=access_log_days, protected=protected
        )
        self.security_group = self._security_group(name=name, vpc_id=vpc_id, internal=internal)
        self._admit(ingress, listener_ports=(80, 443) if https else (80,))
        self.load_balancer = Lb(
            self,
            "load-balancer",
            name=name,
            load_balancer_type="application",
            internal=internal,
            subnets=list(subnet_ids),
            security_groups=[self.security_group.id],
            drop_invalid_header_fields=True,
            enable_deletion_protection=protected,
            access_logs=LbAccessLogs(bucket=access_log_bucket_name, prefix=ACCESS_LOG_PREFIX, enabled=True),
            # ELB checks that it can write to the bucket when logging is turned on.
            depends_on=[self.access_logs.policy],
        )
        self.target_group = self._target_group(
            name=name,
            vpc_id=vpc_id,
            target_port=target_port,
            health_check=health_check,
            deregistration_delay_seconds=deregistration_delay_seconds,
        )
        self.listener = self._listeners(https)

    def _access_log_bucket(self, *, bucket_name: str, account_id: str, days: int, protected: bool) -> PrivateBucket:
        # Regions older than August 2022 deliver logs from a regional ELB account, newer ones as the
        # log delivery service: both may write, and only under this account's log prefix.
        log_writer = DataAwsElbServiceAccount(self, "log-delivery-account")
        log_objects = f"arn:aws:s3:::{bucket_name}/{ACCESS_LOG_PREFIX}/AWSLogs/{account_id}/*"
        return PrivateBucket(
            self,
            "access-logs",
            bucket_name=bucket_name,
            protected=protected,
            expire_after_days=days,
            noncurrent_expire_after_days=7,
            policy_statements=[
                statement(
                    sid="ElbLogDeliveryService",
                    actions=["s3:PutObject"],
                    resources=[log_objects],
                    principals={"Service": ["logdelivery.elasticloadbalancing.amazonaws.com"]},
                ),
                statement(
                    sid="ElbLogDeliveryRegionalAccount",
                    actions=["s3:PutObject"],
                    resources=[log_objects],
                    principals={"AWS": [log_writer.arn]},
                ),
            ],
        )

    def _security_group(self, *, name: str, vpc_id: str, internal: bool) -> SecurityGroup:
        return SecurityGroup(
            self,
            "security-group",
            name=f"{name}-alb",
            # Changing a description replaces the group: the internet-facing wording stays as it was.
            description=f"{name} load balancer: "
            + ("the API listener, for CloudFront's VPC origin only" if internal else "the public API listeners"),
            vpc_id=vpc_id,
            # Rules are separate resources so that other constructs can add theirs without a cycle. No
            # `ingress`/`egress` here, not even empty lists: in-line rules (`[]` included) would revoke
            # the rule resources at every other apply. The provider removes AWS's allow-all egress rule
            # when it creates the group, so the group allows only what the rule resources add.
        )

    def _admit(self, ingress: Ingress, *, listener_ports: Sequence[int]) -> None:
        """One security group rule for each listener port and each of `ingress`'s sources."""
        # Each source as (construct id suffix, who, CIDR block, prefix list id): the CIDR blocks, then the
        # managed prefix lists, looked up by name in the stage's region.
        sources: list[tuple[str, str, str | None, str | None]] = [
            (str(index), "API clients", cidr, None) for index, cidr in enumerate(ingress.cidrs)
        ]
        for index, prefix_list_name in enumerate(ingress.managed_prefix_lists):
            prefix_list = DataAwsEc2ManagedPrefixList(self, f"prefix-list-{index}", name=prefix_list_name)
            sources.append((f"prefix-list-{index}", prefix_list_name, None, prefix_list.id))
        for port in listener_ports:
            for suffix, who, cidr, prefix_list_id in sources:
                VpcSecurityGroupIngressRule(
                    self,
                    f"ingress-{port}-{suffix}",
                    security_group_id=self.security_group.id,
                    description=f"{who} on {port}",
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    cidr_ipv4=cidr,
                    prefix_list_id=prefix_list_id,
                )

    def _target_group(
        self,
        *,
        name: str,
        vpc_id: str,
        target_port: int,
        health_check: TargetHealthCheck,
        deregistration_delay_seconds: int,
    ) -> LbTargetGroup:
        return LbTargetGroup(
            self,
            "targets",
            name=name,
            target_type="ip",
            port=target_port,
            protocol="HTTP",
            vpc_id=vpc_id,
            load_balancing_algorithm_type="round_robin",
            deregistration_delay=str(deregistration_delay_seconds),
            health_check=LbTargetGroupHealthCheck(
                enabled=True,
                path=health_check.path,
                protocol="HTTP",
                port="traffic-port",
                matcher="200",
                interval=health_check.interval_seconds,
                timeout=health_check.timeout_seconds,
                healthy_threshold=health_check.healthy_threshold,
                unhealthy_threshold=health_check.unhealthy_threshold,
            ),
        )

    def _listeners(self, https: HttpsListener | None) -> LbListener:
        """The listener that forwards to the targets: HTTPS 443 (with port 80 redirecting to it), or HTTP 80."""
        forward = LbListenerDefaultAction(type="forward", target_group_arn=self.target_group.arn)
        if not https:
            return LbListener(
                self,
                "http",
                load_balancer_arn=self.load_balancer.arn,
                port=80,
                protocol="HTTP",
                default_action=[forward],
            )
        listener = LbListener(
            self,
            "https",
            load_balancer_arn=self.load_balancer.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=https.certificate_arn,
            default_action=[forward],
        )
        LbListener(
            self,
            "http-redirect",
            load_balancer_arn=self.load_balancer.arn,
            port=80,
            protocol="HTTP",
            default_action=[
                LbListenerDefaultAction(
                    type="redirect",
                    redirect=LbListenerDefaultActionRedirect(protocol="HTTPS", port="443", status_code="HTTP_301"),
                )
            ],
        )
        return listener
