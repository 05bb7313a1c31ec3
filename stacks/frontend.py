"""`<stage>-frontend`: the React app's bucket and CloudFront distribution, `/api/*` to the backend (R3, R8)."""

from __future__ import annotations

from cdktn import TerraformOutput
from cdktn_provider_aws.data_aws_route53_zone import DataAwsRoute53Zone
from constructs import Construct

from modules.static_site import ApiOrigin, CustomDomain, DnsValidatedCertificate, StaticSite, content_security_policy
from stacks.base import StageStack
from stacks.config import ProjectConfig, StageConfig


class FrontendStack(StageStack):
    """`api_origin` is where CloudFront sends `/api/*` (the backend stack's `api_origin`): `api.<domain>`
    on stages with HTTPS, else the ALB, through a VPC origin where the ALB is internal. Where it is, this
    stack declares the stage's `backend_url`: CloudFront's `/api`, the only way to the backend."""

    def __init__(self, scope: Construct, *, project: ProjectConfig, stage: StageConfig, api_origin: ApiOrigin) -> None:
        super().__init__(scope, project=project, stage=stage, component="frontend")
        custom_domain = None
        if stage.domain_name:
            # CloudFront only takes certificates from us-east-1, whatever the stage's region.
            us_east_1 = self.aws_provider("aws-us-east-1", region="us-east-1", alias="us_east_1")
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
        distribution = self.site.distribution
        site_host = stage.domain_name or distribution.domain_name
        # The names pipelines/terraform_stage.py exports to the deploy and test actions.
        TerraformOutput(self, "frontend_url", value=f"https://{site_host}")
        if api_origin.vpc_origin_load_balancer_arn is not None:
            # The backend's app answers under /api/* here (/api/health, /api/v1/...), as it does for the pages.
            TerraformOutput(self, "backend_url", value=f"https://{site_host}/api")
        TerraformOutput(self, "frontend_bucket", value=self.site.bucket.bucket.bucket)
        TerraformOutput(self, "frontend_distribution_id", value=distribution.id)
        TerraformOutput(self, "frontend_distribution_domain_name", value=distribution.domain_name)
