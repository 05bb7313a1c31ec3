"""The React app's bucket and CloudFront distribution, `/api/*` to the backend (R3, R8): a part of the
`<stage>` stack."""

from __future__ import annotations

from collections.abc import Callable

from cdktn_provider_aws.data_aws_route53_zone import DataAwsRoute53Zone
from cdktn_provider_aws.provider import AwsProvider
from constructs import Construct

from modules.static_site import ApiOrigin, CustomDomain, DnsValidatedCertificate, StaticSite, content_security_policy
from stacks.config import ProjectConfig, StageConfig


class Frontend(Construct):
    """`api_origin` is where CloudFront sends `/api/*` (the backend's `api_origin`): `api.<domain>` on
    stages with HTTPS, else the ALB, through a VPC origin where the ALB is internal. `regional_provider`
    makes the AWS provider of another region in this stage's account (CloudFront's certificates live in
    us-east-1). `site_url` is the frontend's URL."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project: ProjectConfig,
        stage: StageConfig,
        api_origin: ApiOrigin,
        regional_provider: Callable[[str, str], AwsProvider],
    ) -> None:
        super().__init__(scope, construct_id)
        custom_domain = None
        if stage.domain_name:
            us_east_1 = regional_provider("us-east-1", "us_east_1")
            zone = DataAwsRoute53Zone(self, "zone", name=stage.domain_name, private_zone=False)
            certificate = DnsValidatedCertificate(
                self, "certificate", domain_name=stage.domain_name, zone_id=zone.zone_id, provider=us_east_1
            )
            custom_domain = CustomDomain(
                names=(stage.domain_name,), certificate_arn=certificate.arn, zone_id=zone.zone_id
            )
        self.site = StaticSite(
            self,
            "site",
            name=stage.resource_name(project.app_name, "frontend"),
            bucket_name=stage.resource_name(project.app_name, f"frontend-{stage.account_id}"),
            region=stage.region,
            protected=stage.deletion_protection,
            api_origin=api_origin,
            price_class=stage.cdn_price_class,
            # Stages without an API domain call /api/* on their own origin, which 'self' covers (R8.2).
            content_security_policy=content_security_policy(connect_sources=[stage.api_url] if stage.api_url else []),
            cors_allowed_origins=stage.frontend_origins,
            custom_domain=custom_domain,
        )
        self.site_url = f"https://{stage.domain_name or self.site.distribution.domain_name}"
